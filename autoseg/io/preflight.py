"""Pre-flight checks of what a command after ``plan`` will read: cheap, and all problems at once.

Every function returns a list of :class:`autoseg.io.problems.Problem` (errors and warnings), each
naming the user's file, the problem and the fix or the command to run; the commands gather them
(:mod:`autoseg.commands.preflight`) and raise :class:`autoseg.io.problems.InputError` before any
work, so nothing is written. The checks read headers only (image headers, zip directories, JSON),
never whole images or networks.

Example:
    >>> case_sets({"pred": {"a", "b"}, "ref": {"a"}}, "predict the missing cases")[0].path
    'ref'
"""

from __future__ import annotations

import gzip
import importlib
import json
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autoseg.io.problems import Problem, error, warning

__all__ = [
    "case_sets",
    "folder",
    "gzip_damage",
    "image_headers",
    "json_file",
    "listing",
    "optional_package",
    "unused_files",
    "zip_archive",
]

#: The optional extras of autoseg: Python module -> the extra that installs it.
EXTRAS = {"onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx", "openvino": "openvino"}


def listing(names: Sequence[str], limit: int = 20) -> str:
    """``names`` joined by commas, the first ``limit`` of them and how many more.

    Example:
        >>> listing(["a", "b", "c"], 2)
        'a, b and 1 more'
    """
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def folder(path: str | Path, what: str, fix: str) -> list[Problem]:
    """An error when ``path`` is not an existing folder (``what`` says whose, ``fix`` what to do)."""
    path = Path(path)
    if path.is_dir():
        return []
    state = "is a file, not a folder" if path.exists() else "does not exist"
    return [error(path, f"{what} {state}; {fix}")]


def json_file(
    path: str | Path, fix: str, kind: str | None = None, container: type = dict
) -> tuple[Any, list[Problem]]:
    """(the parsed JSON or None, problems): missing, unreadable, not JSON, not a ``container``
    (an object; ``list`` for an array), or (with ``kind``) of another kind than ``kind``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [error(path, f"missing; {fix}")]
    except (OSError, UnicodeDecodeError) as err:
        return None, [error(path, f"not readable ({_reason(err)}); {fix}")]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        return None, [error(path, f"not valid JSON ({err.msg} at line {err.lineno}); {fix}")]
    if not isinstance(data, container):
        names: dict[type, str] = {dict: "object", list: "array"}
        found = names.get(type(data), type(data).__name__)
        return None, [
            error(path, f"not a JSON {names.get(container, container.__name__)} but {found}; {fix}")
        ]
    if kind is not None and isinstance(data, dict) and data.get("kind", kind) != kind:
        return None, [error(path, f"is a {data.get('kind')!r} file, expected {kind!r}; {fix}")]
    return data, []


def _reason(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return str(text).splitlines()[0][:200] if text else type(err).__name__


def image_headers(files: Iterable[str | Path], fix: str, whole: bool = False) -> list[Problem]:
    """An error per file whose image header cannot be read (missing, truncated, not an image).

    With ``whole``, a gzip-compressed file (.nii.gz) is also decompressed to its end, without
    keeping the data, so a truncated or damaged stream is found here (label maps: milliseconds).
    """
    from autoseg.io.images import ImageReadError, read_geometry

    problems = []
    for path in files:
        try:
            read_geometry(path)
        except (ImageReadError, OSError, ValueError) as err:
            message = str(err).removeprefix(f"{path}: ")
            problems.append(error(path, f"{message}; {fix}"))
            continue
        damage = gzip_damage(Path(path)) if whole and str(path).endswith(".gz") else None
        if damage:
            problems.append(error(path, f"the file is truncated or corrupt ({damage}); {fix}"))
    return problems


def gzip_damage(path: Path) -> str | None:
    """Why the gzip stream of ``path`` is damaged (truncated, bad checksum), or None when it is whole."""
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 22):
                pass
    except (OSError, EOFError, zlib.error) as err:
        return _reason(err)
    return None


def zip_archive(path: str | Path, fix: str, what: str = "archive") -> list[Problem]:
    """An error when ``path`` (a torch checkpoint, an .npz, a model .zip) is missing or damaged.

    The zip directory is read and every member's CRC checked (no decompression into memory beyond
    one block at a time): a truncated or byte-flipped file is found here, not half-way through a run.
    """
    path = Path(path)
    if not path.is_file():
        return [error(path, f"missing; {fix}")]
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, zlib.error) as err:
        return [error(path, f"cannot be read as a {what} (truncated or corrupted: {_reason(err)}); {fix}")]
    if bad is not None:
        return [
            error(
                path, f"cannot be read as a {what} (truncated or corrupted: {bad} fails its checksum); {fix}"
            )
        ]
    return []


def case_sets(members: Mapping[str, Iterable[str]], fix: str) -> list[Problem]:
    """An error per folder that lacks cases another folder has, listing them (folders in order).

    Example:
        >>> [str(p) for p in case_sets({"A": ["x", "y"], "B": ["x"]}, "fix it")]
        ['error: B: 1 case(s) of A missing here: y; fix it']
    """
    sets = {name: set(cases) for name, cases in members.items()}
    every = set().union(*sets.values()) if sets else set()
    problems = []
    for name, cases in sets.items():
        missing = sorted(every - cases)
        if not missing:
            continue
        where = [other for other, theirs in sets.items() if other != name and set(missing) & theirs]
        problems.append(
            error(
                name, f"{len(missing)} case(s) of {', '.join(where)} missing here: {listing(missing)}; {fix}"
            )
        )
    return problems


def unused_files(files: Iterable[Path], reason: str) -> list[Problem]:
    """A warning per file that a command will not read (``reason`` says why and how to name it)."""
    return [warning(path, f"not used: {reason}") for path in sorted(files)]


def optional_package(module: str, what: str) -> list[Problem]:
    """An error when the optional package ``module`` cannot be imported, with its ``pip install``."""
    try:
        importlib.import_module(module)
    except ImportError as err:
        extra = EXTRAS.get(module)
        hint = f"pip install 'autoseg[{extra}]'" if extra else f"pip install {module}"
        return [
            error(
                what, f"needs the Python package {module!r}, which is not installed ({_reason(err)}): {hint}"
            )
        ]
    return []
