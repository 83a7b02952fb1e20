"""On-disk format of a preprocessed case, in ``<preprocessed>/<data_identifier>/``.

- ``{case}.npy``: data, float32 (C, Z, Y, X);
- ``{case}_seg.npy``: segmentation, int8 (int16 when labels exceed int8) (1, Z, Y, X);
- ``{case}_locs.npz``: foreground locations, arrays ``class_<k>`` (N, 3) int32 voxel
  coordinates (``np.savez``, no pickle);
- ``{case}.json``: properties (geometry, crop bbox, spacings, ...) plus a ``storage``
  record of the arrays' shapes and dtypes and the ``plan_hash`` they were made with.

Every file is written atomically and the JSON last, so a case is complete exactly when
its JSON exists, matches the plan and the arrays on disk (:func:`is_case_complete`).
Arrays are read memory-mapped: a training patch reads only its own bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from autoseg.contracts.case import CaseProperties
from autoseg.utils.files import atomic_path, write_json

STORAGE_VERSION = 1
LOCATION_PREFIX = "class_"


def case_files(folder: str | os.PathLike[str], case: str) -> dict[str, Path]:
    """The paths of a case's files: keys ``data``, ``seg``, ``locations``, ``properties``."""
    folder = Path(folder)
    return {
        "data": folder / f"{case}.npy",
        "seg": folder / f"{case}_seg.npy",
        "locations": folder / f"{case}_locs.npz",
        "properties": folder / f"{case}.json",
    }


def seg_dtype(seg: np.ndarray) -> np.dtype:
    """int8 when every value fits, else int16."""
    if seg.size == 0:
        return np.dtype(np.int8)
    info = np.iinfo(np.int8)
    return np.dtype(np.int8 if info.min <= int(seg.min()) and int(seg.max()) <= info.max else np.int16)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array, allow_pickle=False)


def save_case(
    folder: str | os.PathLike[str],
    case: str,
    data: np.ndarray,
    seg: np.ndarray,
    properties: CaseProperties,
    locations: Mapping[int, np.ndarray],
    plan_hash: str,
) -> None:
    """Write one preprocessed case (arrays first, properties JSON last).

    Args:
        folder: the configuration's preprocessed folder.
        case: the case identifier.
        data: (C, *spatial) image data (stored as float32).
        seg: (*spatial) or (1, *spatial) label map (stored as int8/int16, (1, *spatial)).
        properties: the case's properties (:func:`autoseg.preprocessing.preprocess.preprocess_case`).
        locations: label -> (N, ndim) voxel coordinates.
        plan_hash: identifies the plan configuration the case was made with.
    """
    files = case_files(folder, case)
    files["properties"].unlink(missing_ok=True)  # the case is incomplete until the JSON is back
    data = np.ascontiguousarray(data, dtype=np.float32)
    seg = seg if seg.ndim == data.ndim else seg[None]
    seg = np.ascontiguousarray(seg, dtype=seg_dtype(seg))
    _save_npy(files["data"], data)
    _save_npy(files["seg"], seg)
    arrays = {f"{LOCATION_PREFIX}{int(k)}": np.asarray(v, dtype=np.int32) for k, v in locations.items()}
    with atomic_path(files["locations"], suffix=".npz") as tmp:
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
    storage = {
        "version": STORAGE_VERSION,
        "plan_hash": plan_hash,
        "data_shape": list(data.shape),
        "data_dtype": str(data.dtype),
        "seg_shape": list(seg.shape),
        "seg_dtype": str(seg.dtype),
        "locations": sorted(arrays),
    }
    write_json(files["properties"], {**properties.to_dict(), "storage": storage})


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Shape, dtype and whether the file holds all the bytes its header announces."""
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
    size = path.stat().st_size
    complete = size >= offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize and not fortran
    return tuple(int(s) for s in shape), dtype, complete


def _record(folder: str | os.PathLike[str], case: str) -> dict[str, Any]:
    return json.loads(case_files(folder, case)["properties"].read_text())


def read_properties(folder: str | os.PathLike[str], case: str) -> CaseProperties:
    """The case's properties (with its ``storage`` record); ContractError naming the file if malformed."""
    path = case_files(folder, case)["properties"]
    return CaseProperties.from_dict(json.loads(path.read_text()), where=str(path))


def is_case_complete(folder: str | os.PathLike[str], case: str, plan_hash: str) -> bool:
    """Whether a case was fully written with the plan ``plan_hash`` (headers only: cheap).

    False when a file is missing, the JSON is unreadable or of another plan, an array's
    header disagrees with the JSON, an .npy file is shorter than its header says, or the
    locations archive is unreadable.
    """
    files = case_files(folder, case)
    try:
        storage = _record(folder, case)["storage"]
        if storage.get("plan_hash") != plan_hash or storage.get("version") != STORAGE_VERSION:
            return False
        for key in ("data", "seg"):
            shape, dtype, complete = _npy_header(files[key])
            if (
                not complete
                or list(shape) != storage[f"{key}_shape"]
                or str(dtype) != storage[f"{key}_dtype"]
            ):
                return False
        with np.load(files["locations"], allow_pickle=False) as npz:
            return sorted(npz.files) == storage["locations"]
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return False


def case_damage(folder: str | os.PathLike[str], case: str) -> tuple[Path, str] | None:
    """(the file, why) when a preprocessed case cannot be read (headers only: cheap), or None.

    Names the first missing or damaged file of the case: a missing file, unreadable properties, an
    array header that disagrees with the properties or an .npy shorter than its header says, an
    unreadable locations archive.
    """
    files = case_files(folder, case)
    for key in ("properties", "data", "seg", "locations"):
        if not files[key].is_file():
            return files[key], "is missing"
    try:
        storage = read_properties(folder, case).storage
    except (OSError, ValueError, KeyError, TypeError) as err:
        return files["properties"], f"is not readable ({type(err).__name__}: {err})"
    if storage is None:
        return files["properties"], "has no storage record (written by an older autoseg)"
    for key in ("data", "seg"):
        try:
            shape, dtype, complete = _npy_header(files[key])
        except (OSError, ValueError, EOFError) as err:
            return files[key], f"is not a readable .npy file ({err})"
        if not complete:
            return files[key], "is shorter than its header says (truncated)"
        if list(shape) != storage.get(f"{key}_shape") or str(dtype) != storage.get(f"{key}_dtype"):
            return files[key], f"holds {dtype} {list(shape)}, not what {files['properties'].name} records"
    try:
        with np.load(files["locations"], allow_pickle=False) as npz:
            npz.files  # noqa: B018 - reads the archive's directory
    except (OSError, ValueError, EOFError) as err:
        return files["locations"], f"is not readable ({err})"
    return None


def load_case(
    folder: str | os.PathLike[str], case: str, mmap: bool = True
) -> tuple[np.ndarray, np.ndarray, CaseProperties, dict[int, np.ndarray]]:
    """Read a preprocessed case.

    Args:
        folder: the configuration's preprocessed folder.
        case: the case identifier.
        mmap: memory-map the arrays (read-only ``np.memmap``) instead of reading them.

    Returns:
        ``(data, seg, properties, locations)``: data (C, *spatial) float32, seg
        (1, *spatial) int8/int16, the case's properties, label -> (N, ndim) int32.
    """
    files = case_files(folder, case)
    mode: Literal["r"] | None = "r" if mmap else None
    data = np.load(files["data"], mmap_mode=mode, allow_pickle=False)
    seg = np.load(files["seg"], mmap_mode=mode, allow_pickle=False)
    properties = read_properties(folder, case)
    with np.load(files["locations"], allow_pickle=False) as npz:
        locations = {int(k[len(LOCATION_PREFIX) :]): npz[k] for k in npz.files}
    return data, seg, properties, dict(sorted(locations.items()))
