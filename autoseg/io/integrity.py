"""Detect image files cut short, which some SimpleITK readers accept without complaint.

ITK's NIfTI (``.nii``, ``.nii.gz``) and GIPL readers return the missing tail of a truncated file
as zeros instead of failing (measured with SimpleITK 2.5 / ITK 5.4; the NRRD and MetaImage
readers do fail). :func:`truncation` compares the file with what its header promises:

- uncompressed files: the file size against header + voxel data;
- gzip files: the size stored in the gzip trailer (read in O(1)); only when it disagrees is
  the stream inflated, to tell a truncated or corrupt file from an unusual but complete one.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from autoseg.io.endings import file_ending

CHECKED_ENDINGS = (".nii", ".nii.gz", ".gipl", ".gipl.gz")
GIPL_HEADER_BYTES = 256
_HEAD_BYTES = 544  # the NIfTI-2 header and its 4-byte extension flag


def _nifti_extent(head: bytes) -> int | None:
    """Header + voxel bytes a NIfTI-1/2 header promises; None if ``head`` is not a NIfTI header."""
    for order in "<>":
        if len(head) >= 348 and struct.unpack(f"{order}i", head[:4])[0] == 348:
            dims = struct.unpack(f"{order}8h", head[40:56])
            bitpix = struct.unpack(f"{order}h", head[72:74])[0]
            offset = int(struct.unpack(f"{order}f", head[108:112])[0])
        elif len(head) >= 540 and struct.unpack(f"{order}i", head[:4])[0] == 540:
            bitpix = struct.unpack(f"{order}h", head[14:16])[0]
            dims = struct.unpack(f"{order}8q", head[16:80])
            offset = struct.unpack(f"{order}q", head[168:176])[0]
        else:
            continue
        if not 1 <= dims[0] <= 7:
            return None
        return max(offset, 348) + int(np.prod(dims[1 : dims[0] + 1], dtype=np.int64)) * bitpix // 8
    return None


def _inflated_size(path: Path) -> tuple[int, bool]:
    """Inflate a gzip file (all members) without keeping the output: its size, and whether it ends cleanly.

    Raises:
        zlib.error: the compressed data is corrupt.
    """
    total, inflater = 0, zlib.decompressobj(wbits=31)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            while chunk:
                if inflater.eof:
                    if not chunk.strip(b"\0"):  # zero padding after the last member
                        break
                    inflater = zlib.decompressobj(wbits=31)
                total += len(inflater.decompress(chunk))
                chunk = inflater.unused_data if inflater.eof else b""
    return total, inflater.eof


def truncation(path: str | Path, array: np.ndarray) -> str | None:
    """Why an image file that was read into ``array`` is incomplete, or None if it is complete.

    Formats whose readers detect truncation themselves (NRRD, MetaImage) are not checked.

    Args:
        path: the image file.
        array: what SimpleITK read from it (gives the voxel bytes of GIPL files).

    Returns:
        A short reason, e.g. ``"the file has 2000 bytes, its header needs 4192"``; None if complete.
    """
    path = Path(path)
    ending = file_ending(path)
    if ending not in CHECKED_ENDINGS:
        return None
    compressed = ending.endswith(".gz")
    try:
        with gzip.open(path, "rb") if compressed else path.open("rb") as f:
            head = f.read(_HEAD_BYTES)
    except (OSError, EOFError, zlib.error) as err:
        return f"the header cannot be decompressed ({err})"
    needed = _nifti_extent(head) if ending.startswith(".nii") else GIPL_HEADER_BYTES + array.nbytes
    if needed is None:
        return None
    if not compressed:
        size = path.stat().st_size
        return None if size >= needed else f"the file has {size} bytes, its header needs {needed}"
    with path.open("rb") as f:
        f.seek(-4, 2)
        if int.from_bytes(f.read(4), "little") == needed % (1 << 32):
            return None
    try:
        size, complete = _inflated_size(path)
    except zlib.error as err:
        return f"the compressed data is corrupt ({err})"
    if not complete:
        return f"the compressed data ends early ({size} of {needed} bytes)"
    return None if size >= needed else f"it holds {size} bytes, its header needs {needed}"
