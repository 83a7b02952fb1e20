"""Image file endings: which SimpleITK reads and writes, and the ending of a path."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SUPPORTED_ENDINGS", "file_ending"]

#: File endings SimpleITK reads and writes losslessly, as accepted in dataset.json.
SUPPORTED_ENDINGS: tuple[str, ...] = (
    ".nii.gz",
    ".nii",
    ".nrrd",
    ".nhdr",
    ".mha",
    ".mhd",
    ".gipl",
    ".gipl.gz",
)


def file_ending(path: str | os.PathLike[str]) -> str:
    """The image ending of ``path`` (``.nii.gz`` counts as one ending)."""
    name = Path(path).name.lower()
    for ending in sorted(SUPPORTED_ENDINGS, key=len, reverse=True):
        if name.endswith(ending):
            return ending
    return Path(path).suffix
