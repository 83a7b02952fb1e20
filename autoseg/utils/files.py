"""Atomic file writing and JSON artifacts with a schema version.

Every artifact autoseg writes goes through :func:`atomic_path`: the data is written to a
temporary file in the same folder, flushed to disk (``fsync``), renamed over the target, and the
folder is flushed too, so an interrupted stage or a power cut leaves either the old file or the
new one, never half of one. Files get the mode an ordinary ``open()`` would give (``0666`` minus
the process umask: ``0644`` by default), so colleagues and other containers can read the results.
A failed write (a full disk, a read-only folder) raises :class:`WriteError` naming the file, and
leaves the previous version untouched.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.utils.faults import reached

log = logging.getLogger(__name__)


class ArtifactError(ValueError):
    """An artifact file is missing, unreadable or of an unknown schema version."""


class WriteError(OSError):
    """A file could not be written (disk full, no permission, ...); its previous version is intact."""

    def __str__(self) -> str:
        return str(self.strerror)


_HINTS = {
    errno.ENOSPC: "free some disk space and run the stage again",
    errno.EDQUOT: "free some of your disk quota and run the stage again",
    errno.EACCES: "make the folder writable (or choose another one) and run the stage again",
    errno.EROFS: "the file system is read-only: choose another folder",
}


#: Errors of writing itself (the others, e.g. a missing file the writer reads, pass unchanged).
_WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.EIO,
    errno.EFBIG,
    errno.ENAMETOOLONG,
    errno.EISDIR,
    errno.ENOTDIR,
}


def process_umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def fsync_path(path: Path, directory: bool = False) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError as err:  # some file systems cannot fsync a folder; the data itself is synced
        if not directory or err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; fsync it and rename it over ``target`` on success.

    The file gets mode ``0666 & ~umask`` (``0644`` under the usual umask 022).

    Args:
        target: the final file path.
        suffix: the temporary file's ending (some writers pick the format from it,
            e.g. ``.nii.gz`` for SimpleITK or ``.npy`` for numpy).

    Raises:
        WriteError: the data could not be written or renamed (an ``OSError`` such as
            ``ENOSPC``); the message names ``target`` and the fix, and ``target`` is unchanged.

    Example:
        >>> with atomic_path("/tmp/x.json") as tmp:
        ...     _ = tmp.write_text("{}")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.{_owner()}.", suffix=f".tmp{suffix}", dir=target.parent
    )
    tmp = Path(name)
    try:
        try:
            os.fchmod(fd, 0o666 & ~process_umask())
        finally:
            os.close(fd)
        yield tmp
        fsync_path(tmp)
        reached("write", str(target))
        os.replace(tmp, target)
        fsync_path(target.parent, directory=True)
    except OSError as err:
        if isinstance(err, WriteError) or err.errno not in _WRITE_ERRNOS:
            raise  # e.g. a missing input the writer reads: its own message says it best
        raise write_error(target, err) from err
    finally:
        if tmp.exists():
            tmp.unlink()


def _owner() -> str:
    """``<host>-<pid>`` of this process, for temporary file names (so a dead writer's can be told)."""
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
    return f"{host}-{os.getpid()}"


_TEMPORARY = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)\.[^.]+\.tmp")


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that writers on this host which are no longer running left in ``folder``.

    A process killed between writing and renaming leaves its temporary file (the target itself is
    intact); the stage that writes the folder calls this when it starts again.

    Returns:
        The files removed.
    """
    removed = []
    host = _owner().rsplit("-", 1)[0]
    for path in Path(folder).glob(".*.tmp*"):
        match = _TEMPORARY.match(path.name)
        if match is None or match["host"] != host or pid_alive(int(match["pid"])):
            continue
        path.unlink(missing_ok=True)
        log.warning("removed %s, a file left half-written by an interrupted run", path.name)
        removed.append(path)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one of another user's counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_error(target: Path, err: OSError) -> WriteError:
    """A :class:`WriteError` for ``target`` that says what went wrong and what to do."""
    what = err.strerror or str(err) or type(err).__name__
    hint = _HINTS.get(err.errno or 0, "check the folder and run the stage again")
    msg = f"{target}: could not write the file ({what}); the previous version, if any, is unchanged: {hint}"
    return WriteError(err.errno or errno.EIO, msg)


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically. numpy scalars and arrays are converted."""
    path = Path(path)
    text = json.dumps(data, indent=2, default=_to_jsonable, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return path


def write_artifact(
    path: str | os.PathLike[str], kind: str, schema_version: int, body: dict[str, Any]
) -> Path:
    """Write a pipeline artifact: ``{"kind", "schema_version", **body}`` as JSON, atomically."""
    return write_json(path, {"kind": kind, "schema_version": schema_version, **body})


#: The command that writes each kind of artifact (what an error about a missing one tells the user).
WRITTEN_BY = {
    "splits": "autoseg plan DATASET",
    "plans": "autoseg plan DATASET",
    "fingerprint": "autoseg plan DATASET",
    "validation_summary": "autoseg train DATASET CONFIG FOLD (--val-only when trained)",
    "cv_summary": "autoseg find-best DATASET",
    "selection": "autoseg find-best DATASET",
    "evaluation": "autoseg evaluate PRED REF",
}


def read_artifact(path: str | os.PathLike[str], kind: str, schema_version: int) -> dict[str, Any]:
    """Read an artifact written by :func:`write_artifact` and check its kind and version.

    Raises:
        ArtifactError: the file is missing, is not JSON, or has another kind or version.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(
            f"{path}: not found; write it first: {WRITTEN_BY.get(kind, 'the stage that writes the ' + kind)}"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        again = WRITTEN_BY.get(kind, "the stage that writes it")
        raise ArtifactError(f"{path}: not valid JSON ({err}); delete it and write it again: {again}") from err
    if not isinstance(data, dict):
        raise ArtifactError(
            f"{path}: not a JSON object; delete it and write it again: {WRITTEN_BY.get(kind, kind)}"
        )
    if data.get("kind") != kind or data.get("schema_version") != schema_version:
        raise ArtifactError(
            f"{path}: expected a {kind} of schema_version {schema_version}, found "
            f"kind={data.get('kind')!r} schema_version={data.get('schema_version')!r}. "
            f"Write it again with this version of autoseg: {WRITTEN_BY.get(kind, 'the stage that writes it')}"
        )
    return data
