"""Non-finite intensities (NaN, +inf, -inf): found in every format, replaced only when asked.

ITK's NIfTI reader turns NaN and infinite float voxels into 0 without a word (measured with
SimpleITK 2.5 / ITK 5.4; the NRRD and MetaImage readers keep them). :func:`nifti_nonfinite`
reads the voxel bytes of a float NIfTI file itself, in chunks, and finds them, so that
:func:`autoseg.io.images.read_image` can put them back and the validation can report them like
any other file's. The cost is one more pass over the file, for float NIfTI files only (integer
files, the usual CT and label maps, cannot hold non-finite values and are not read again).

:func:`replace_nonfinite` replaces them by a stated value (``autoseg plan --allow-nonfinite VALUE``,
``autoseg predict --allow-nonfinite VALUE``); the replacement is logged and recorded.

Example:
    >>> import numpy as np
    >>> image = np.array([1.0, np.nan, np.inf], dtype=np.float32)
    >>> count_nonfinite(image)
    {'NaN': 1, 'infinite': 1}
    >>> replace_nonfinite(image, 0.0)
    array([1., 0., 0.], dtype=float32)
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

#: NIfTI datatype codes of the float types ITK reads as scalars.
_NIFTI_FLOATS = {16: "f4", 64: "f8"}
_CHUNK_VOXELS = 1 << 22


def count_nonfinite(image: np.ndarray) -> dict[str, int]:
    """``{"NaN": n, "infinite": m}`` of a float array (empty when every voxel is finite or it is integral)."""
    if image.dtype.kind != "f" or np.isfinite(image).all():
        return {}
    counts = {"NaN": int(np.isnan(image).sum()), "infinite": int(np.isinf(image).sum())}
    return {k: n for k, n in counts.items() if n}


def describe(counts: dict[str, int], size: int) -> str:
    """``"3 NaN and 1 infinite voxel values (of 1000)"``."""
    return " and ".join(f"{n} {kind}" for kind, n in counts.items()) + f" voxel values (of {size})"


def replace_nonfinite(image: np.ndarray, value: float) -> np.ndarray:
    """``image`` with NaN and infinite voxels set to ``value`` (the same array when all are finite)."""
    if image.dtype.kind != "f":
        return image
    bad = ~np.isfinite(image)
    if not bad.any():
        return image
    out = image.copy()
    out[bad] = value
    return out


def _nifti_layout(head: bytes) -> tuple[str, int, int, float, float] | None:
    """``(dtype, voxel count, data offset, scl_slope, scl_inter)`` of a float NIfTI-1/2 header, else None."""
    for order in "<>":
        if len(head) >= 348 and struct.unpack(f"{order}i", head[:4])[0] == 348:
            code = struct.unpack(f"{order}h", head[70:72])[0]
            dims = struct.unpack(f"{order}8h", head[40:56])
            offset = int(struct.unpack(f"{order}f", head[108:112])[0])
            slope, inter = struct.unpack(f"{order}2f", head[112:120])
        elif len(head) >= 540 and struct.unpack(f"{order}i", head[:4])[0] == 540:
            code = struct.unpack(f"{order}h", head[12:14])[0]
            dims = struct.unpack(f"{order}8q", head[16:80])
            offset = struct.unpack(f"{order}q", head[168:176])[0]
            slope, inter = struct.unpack(f"{order}2d", head[176:192])
        else:
            continue
        if code not in _NIFTI_FLOATS or not 1 <= dims[0] <= 7:
            return None
        count = int(np.prod(dims[1 : dims[0] + 1], dtype=np.int64))
        return order + _NIFTI_FLOATS[code], count, max(offset, 348), float(slope), float(inter)
    return None


def nifti_nonfinite(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """The NaN and infinite voxels of a float NIfTI file, read from its bytes (ITK hides them).

    Returns:
        ``(flat indices, values)`` in the order of the voxel data (x fastest, which is the C order
        of the (z, y, x) array SimpleITK gives), with the header's scaling applied; None for a
        file that is not a float NIfTI file. Both arrays are empty when every voxel is finite.
    """
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        layout = _nifti_layout(f.read(544))
    if layout is None:
        return None
    dtype, count, offset, slope, inter = layout
    indices, values = [], []
    itemsize = np.dtype(dtype).itemsize
    with opener(path, "rb") as f:
        f.read(offset)
        done = 0
        while done < count:
            chunk = f.read(min(_CHUNK_VOXELS, count - done) * itemsize)
            if len(chunk) < itemsize:
                break  # a file cut short: autoseg.io.integrity reports it
            voxels = np.frombuffer(chunk[: len(chunk) // itemsize * itemsize], dtype=dtype)
            bad = np.flatnonzero(~np.isfinite(voxels))
            indices.append(bad + done)
            values.append(voxels[bad].astype(np.float64))
            done += voxels.size
    found = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    vals = np.concatenate(values) if values else np.zeros(0)
    if slope not in (0.0, 1.0) and np.isfinite(slope):
        vals = vals * slope + (inter if np.isfinite(inter) else 0.0)
    return found, vals


def restore_nifti_nonfinite(path: str | os.PathLike[str], array: np.ndarray) -> np.ndarray:
    """Put back into ``array`` (read by SimpleITK from ``path``) the non-finite voxels ITK set to 0."""
    if array.dtype.kind != "f":
        return array
    found = nifti_nonfinite(path)
    if found is None or found[0].size == 0:
        return array
    indices, values = found
    keep = indices < array.size
    array.flat[indices[keep]] = values[keep].astype(array.dtype)
    return array
