"""Atomic file writing and JSON artifacts with a schema version.

Every artifact autoseg writes goes through :func:`atomic_path`: the data is written to a
temporary file in the same folder and renamed over the target, so an interrupted stage
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


class ArtifactError(ValueError):
    """An artifact file is missing, unreadable or of an unknown schema version."""


@contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` on success.

    Args:
        target: the final file path.
        suffix: the temporary file's ending (some writers pick the format from it,
            e.g. ``.nii.gz`` for SimpleITK or ``.npy`` for numpy).

    Example:
        >>> with atomic_path("/tmp/x.json") as tmp:
        ...     _ = tmp.write_text("{}")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


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


def read_artifact(path: str | os.PathLike[str], kind: str, schema_version: int) -> dict[str, Any]:
    """Read an artifact written by :func:`write_artifact` and check its kind and version.

    Raises:
        ArtifactError: the file is missing, is not JSON, or has another kind or version.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: not found. Run the stage that writes the {kind} first.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path}: not valid JSON ({err}). Delete it and run the stage again.") from err
    if data.get("kind") != kind or data.get("schema_version") != schema_version:
        raise ArtifactError(
            f"{path}: expected a {kind} of schema_version {schema_version}, found "
            f"kind={data.get('kind')!r} schema_version={data.get('schema_version')!r}. "
            "Re-run the stage that writes it with this version of autoseg."
        )
    return data
