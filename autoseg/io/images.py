"""Image I/O through SimpleITK, with the geometry kept beside the array.

Conventions used everywhere in autoseg:

- arrays are numpy, axis order (z, y, x) as SimpleITK's ``GetArrayFromImage`` gives them;
- ``Geometry.spacing`` and ``Geometry.shape`` follow the array's axis order (z, y, x);
- ``Geometry.origin`` and ``Geometry.direction`` keep ITK's physical order (x, y, z) and
  row-major direction matrix, exactly as read, so a mask written back with the same
  geometry lands on the scan voxel for voxel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from autoseg.io.endings import SUPPORTED_ENDINGS, file_ending
from autoseg.io.integrity import truncation
from autoseg.utils.files import atomic_path

__all__ = [
    "SUPPORTED_ENDINGS",
    "Geometry",
    "ImageReadError",
    "file_ending",
    "read_geometry",
    "read_image",
    "write_image",
]


class ImageReadError(OSError):
    """A file could not be read as an image (missing, truncated, unknown format)."""


@dataclass(frozen=True)
class Geometry:
    """Where an image's voxels lie in physical space.

    Attributes:
        shape: voxels per axis, (z, y, x) for 3D.
        spacing: voxel size in mm per axis, (z, y, x) for 3D.
        origin: physical position of voxel (0, 0, 0), ITK order (x, y, z).
        direction: direction cosines, ITK row-major (9 values in 3D).
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def to_json(self) -> dict[str, list[float] | list[int]]:
        return {
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
        }

    @classmethod
    def from_json(cls, data: dict[str, list]) -> Geometry:
        return cls(
            shape=tuple(int(v) for v in data["shape"]),
            spacing=tuple(float(v) for v in data["spacing"]),
            origin=tuple(float(v) for v in data["origin"]),
            direction=tuple(float(v) for v in data["direction"]),
        )


def _geometry_of(image: sitk.Image) -> Geometry:
    return Geometry(
        shape=tuple(int(v) for v in reversed(image.GetSize())),
        spacing=tuple(float(v) for v in reversed(image.GetSpacing())),
        origin=tuple(float(v) for v in image.GetOrigin()),
        direction=tuple(float(v) for v in image.GetDirection()),
    )


def _refuse_shadowed(path: str | os.PathLike[str]) -> None:
    """ITK reads ``x.nii.gz``'s voxels from ``x.nii`` when both exist (SimpleITK 2.5): refuse to guess."""
    name = str(path)
    if name.lower().endswith(".nii.gz") and Path(name[:-3]).exists():
        raise ImageReadError(
            f"{path}: a file {Path(name[:-3]).name} lies beside it, and ITK would read this image's voxels "
            "from that file; remove or rename one of the two"
        )


def read_geometry(path: str | os.PathLike[str]) -> tuple[Geometry, int]:
    """Read only the header of an image file.

    Returns:
        The geometry and the number of components per voxel (1 for a scalar image).

    Raises:
        ImageReadError: naming the file and the reason.
    """
    _refuse_shadowed(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise ImageReadError(f"{path}: cannot read image header ({_short(err)})") from err
    geom = Geometry(
        shape=tuple(int(v) for v in reversed(reader.GetSize())),
        spacing=tuple(float(v) for v in reversed(reader.GetSpacing())),
        origin=tuple(float(v) for v in reader.GetOrigin()),
        direction=tuple(float(v) for v in reader.GetDirection()),
    )
    return geom, int(reader.GetNumberOfComponents())


def read_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, Geometry]:
    """Read an image file into a numpy array (z, y, x) and its geometry.

    The array keeps the file's dtype (uint8 labels stay uint8, float images stay float), and NaN
    and infinite voxels stay as they are in every format (NIfTI too: see :mod:`autoseg.io.nonfinite`).

    Raises:
        ImageReadError: the file is missing, truncated or not an image.

    Example:
        >>> arr, geom = read_image("case_0000.nii.gz")  # doctest: +SKIP
        >>> arr.shape == geom.shape  # doctest: +SKIP
        True
    """
    _refuse_shadowed(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise ImageReadError(f"{path}: cannot read image ({_short(err)})") from err
    array = sitk.GetArrayFromImage(image)
    reason = truncation(Path(path), array)
    if reason is not None:
        raise ImageReadError(f"{path}: the file is truncated or corrupt ({reason})")
    if file_ending(path) in (".nii", ".nii.gz") and array.dtype.kind == "f":
        from autoseg.io.nonfinite import restore_nifti_nonfinite

        array = restore_nifti_nonfinite(path, array)  # ITK's NIfTI reader turns NaN and inf into 0
    return array, _geometry_of(image)


def write_image(array: np.ndarray, geometry: Geometry, path: str | os.PathLike[str]) -> Path:
    """Write ``array`` (z, y, x) with ``geometry`` to ``path``, atomically.

    The format follows the file ending (``.nii.gz``, ``.nrrd``, ``.mha``, ...).

    Raises:
        ValueError: the array's shape differs from ``geometry.shape``.
    """
    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"{path}: array shape {array.shape} differs from geometry shape {geometry.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(tuple(reversed(geometry.spacing)))
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    path = Path(path)
    ending = file_ending(path)
    with atomic_path(path, suffix=ending) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=ending.endswith(".gz") or ending in (".nrrd", ".mha"))
    return path


def _short(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__
