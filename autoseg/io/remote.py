"""Models from a URL or a model hub: ``resolve_source`` turns a source into a local path.

A *source* is what ``autoseg predict -m`` and ``autoseg train --init-from`` accept:

- a local path (a results folder, a model archive, a checkpoint): returned unchanged;
- ``https://host/.../model.zip#sha256=HEX``: downloaded once into the cache and checked against the
  sha256 (``autoseg export-model --hub DIR`` writes it beside the archive, in ``model.zip.sha256``).
  The checksum is required: a URL's content can change, and a model must be the one that was meant.
  Plain ``http://`` is refused except for a loopback host (127.0.0.1, localhost, ::1), so that a
  test can serve a model without TLS while a real download is always encrypted;
- ``hf://owner/name[@revision]``: the repository snapshot, through ``huggingface_hub``
  (``pip install 'autoseg[hub]'``), which honours ``HF_ENDPOINT`` (a mirror or a private hub) and
  ``HF_HUB_OFFLINE=1``; the hub checks each file by its ETag, and a ``model.zip.sha256`` in the
  repository is checked too. The path returned is the repository's ``model.zip`` when it has one,
  else the snapshot folder (an unpacked model).

Downloads go to ``$AUTOSEG_CACHE`` (default ``$XDG_CACHE_HOME/autoseg``, i.e. ``~/.cache/autoseg``):
``url/<sha256>/<file name>`` and ``hf/`` (huggingface_hub's own cache layout). A cached file is used
without the network, so a model fetched once keeps working offline; ``AUTOSEG_OFFLINE=1`` or
``HF_HUB_OFFLINE=1`` forbid any download. Every failure (no network, a wrong checksum, a missing
repository) is a :class:`RemoteSourceError` whose one line says what to do.

Example:
    >>> resolve_source("results/Dataset004_Hippocampus")  # doctest: +SKIP
    PosixPath('results/Dataset004_Hippocampus')
    >>> resolve_source("hf://my-lab/hippocampus@v1")  # doctest: +SKIP
    PosixPath('/home/me/.cache/autoseg/hf/models--my-lab--hippocampus/snapshots/3f2c.../model.zip')
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from autoseg.utils.files import atomic_path

__all__ = [
    "RemoteSourceError",
    "cache_root",
    "file_sha256",
    "is_remote",
    "offline",
    "resolve_source",
]

HUB_SCHEME = "hf://"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ARCHIVE = "model.zip"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = ("1", "true", "yes", "on")
TIMEOUT_S = 60.0


class RemoteSourceError(ValueError):
    """A model source that cannot be fetched or verified; the message says what to do."""


def is_remote(source: str) -> bool:
    """Whether ``source`` is a URL or a hub reference rather than a local path."""
    return source.startswith((HUB_SCHEME, "https://", "http://"))


def cache_root() -> Path:
    """``$AUTOSEG_CACHE``, else ``$XDG_CACHE_HOME/autoseg``, else ``~/.cache/autoseg``."""
    if os.environ.get("AUTOSEG_CACHE"):
        return Path(os.environ["AUTOSEG_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "autoseg"


def offline() -> bool:
    """Whether downloads are forbidden (``AUTOSEG_OFFLINE`` or ``HF_HUB_OFFLINE`` set to 1/true)."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("AUTOSEG_OFFLINE", "HF_HUB_OFFLINE"))


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_source(source: str) -> Path:
    """The local path of a model ``source`` (module docstring): a path unchanged, a URL or
    ``hf://`` reference fetched into the cache (or found there) and verified.

    Raises:
        RemoteSourceError: a malformed source, no network and nothing cached, offline mode with
            nothing cached, a checksum that does not match, or a repository that does not exist.
    """
    if source.startswith(HUB_SCHEME):
        return _from_hub(source)
    if source.startswith(("https://", "http://")):
        return _from_url(source)
    return Path(source)


# ---------------------------------------------------------------------------------------------
# https://.../model.zip#sha256=HEX


def _parse_url(source: str) -> tuple[str, str, str]:
    """(URL without the fragment, expected sha256, file name); malformed sources refused."""
    url, _, fragment = source.partition("#")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise RemoteSourceError(
            f"{url}: plain http is accepted only from this machine (127.0.0.1); use an https:// URL"
        )
    expected = fragment.removeprefix("sha256=").lower() if fragment.startswith("sha256=") else ""
    if not _SHA256.match(expected):
        raise RemoteSourceError(
            f"{source}: add the archive's checksum as {url}#sha256=<64 hex digits> (export-model --hub "
            "writes it to model.zip.sha256; or `sha256sum model.zip`)"
        )
    name = Path(urllib.parse.unquote(parts.path)).name or ARCHIVE
    return url, expected, name


def _from_url(source: str) -> Path:
    url, expected, name = _parse_url(source)
    target = cache_root() / "url" / expected / name
    if target.is_file():
        if file_sha256(target) == expected:
            return target
        target.unlink()  # a damaged cache entry: fetched again below
    if offline():
        raise RemoteSourceError(
            f"{url} is not in the cache ({target.parent}) and downloads are off (AUTOSEG_OFFLINE / "
            "HF_HUB_OFFLINE): run once with the network, or pass the archive's local path"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, suffix=".part") as tmp:
        digest = _download(url, tmp)
        if digest != expected:
            raise RemoteSourceError(
                f"{url}: sha256 {digest} does not match the expected {expected}; nothing was kept. The "
                "file changed or the checksum is wrong: ask its publisher for the current model.zip.sha256"
            )
    return target


def _download(url: str, out: Path) -> str:
    """Write the body of ``url`` to ``out``; return its sha256."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "autoseg"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, out.open("wb") as f:
            for block in iter(lambda: response.read(2**20), b""):
                digest.update(block)
                f.write(block)
    except urllib.error.HTTPError as err:
        raise RemoteSourceError(
            f"{url}: the server answered {err.code} {err.reason}; check the URL"
        ) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise RemoteSourceError(
            f"{url}: cannot download ({reason}); check the network or proxy, or download it yourself "
            "and pass the local path"
        ) from None
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# hf://owner/name[@revision]


def _parse_hub(source: str) -> tuple[str, str | None]:
    repo, _, revision = source.removeprefix(HUB_SCHEME).partition("@")
    if not _REPO.match(repo) or (revision == "" and source.endswith("@")):
        raise RemoteSourceError(f"{source}: a hub model is hf://OWNER/NAME or hf://OWNER/NAME@REVISION")
    return repo, revision or None


def _from_hub(source: str) -> Path:
    repo, revision = _parse_hub(source)
    try:
        import huggingface_hub
        from huggingface_hub.errors import (
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise RemoteSourceError(
            f"{source}: hf:// models need huggingface_hub: pip install 'autoseg[hub]'"
        ) from None
    where = os.environ.get("HF_ENDPOINT") or "the hub"
    try:
        folder = huggingface_hub.snapshot_download(
            repo,
            revision=revision,
            cache_dir=str(cache_root() / "hf"),
            local_files_only=offline(),
            endpoint=os.environ.get("HF_ENDPOINT") or None,
        )
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        what = "revision" if isinstance(err, RevisionNotFoundError) else "repository"
        raise RemoteSourceError(
            f"{source}: {where} has no such {what} (or it is private: log in with `hf auth login`)"
        ) from None
    except LocalEntryNotFoundError:
        raise RemoteSourceError(
            f"{source} is not in the cache ({cache_root() / 'hf'}) and {where} cannot be reached or "
            "downloads are off (HF_HUB_OFFLINE / AUTOSEG_OFFLINE): run once with the network"
        ) from None
    except (OSError, huggingface_hub.errors.HfHubHTTPError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise RemoteSourceError(
            f"{source}: download from {where} failed ({first}); retry, or check HF_ENDPOINT"
        ) from None
    return _hub_model(Path(folder), source)


def _hub_model(folder: Path, source: str) -> Path:
    """The snapshot's model.zip (checked against model.zip.sha256 when present), else the folder."""
    archive = folder / ARCHIVE
    if not archive.is_file():
        if (folder / "model.json").is_file():
            return folder
        raise RemoteSourceError(
            f"{source}: the repository has neither {ARCHIVE} nor model.json; not an autoseg model"
        )
    actual = file_sha256(archive)
    blob = archive.resolve().name  # the hub cache names a blob by its ETag: an LFS file's sha256
    if _SHA256.match(blob) and blob != actual:
        archive.resolve().unlink()  # not kept: the next try downloads it again
        archive.unlink()
        raise RemoteSourceError(
            f"{source}: the downloaded {ARCHIVE} has sha256 {actual} but the hub's ETag says {blob}; it was "
            "removed from the cache: retry, and if it happens again tell the hub's operator"
        )
    checksum = folder / f"{ARCHIVE}.sha256"
    if checksum.is_file():
        expected = (checksum.read_text().split() or [""])[0].lower()
        if actual != expected:
            raise RemoteSourceError(
                f"{source}: {ARCHIVE} has sha256 {actual} but the repository's {ARCHIVE}.sha256 says "
                f"{expected}; tell the publisher, or pin a revision whose checksum matches (@REVISION)"
            )
    return archive
