"""Label maps written as NIfTI into a temporary folder, for the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoseg.io.images import Geometry, write_image

SPACING = (2.0, 1.0, 0.5)
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def write_masks(
    folder: Path, masks: dict[str, np.ndarray], spacing: tuple[float, ...] = SPACING, ending: str = ".nii.gz"
) -> Path:
    """Write ``{case: label map}`` as ``folder/{case}{ending}`` and return ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for case, array in masks.items():
        geometry = Geometry(shape=array.shape, spacing=spacing, origin=(0.0, 0.0, 0.0), direction=IDENTITY)
        write_image(array.astype(np.uint8), geometry, folder / f"{case}{ending}")
    return folder


def box(
    shape: tuple[int, ...], slices: tuple[slice, ...], label: int = 1, into: np.ndarray | None = None
) -> np.ndarray:
    """A label map of ``shape`` (or ``into``, modified) with ``label`` in ``slices``."""
    out = np.zeros(shape, dtype=np.uint8) if into is None else into
    out[slices] = label
    return out
