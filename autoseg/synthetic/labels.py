"""Synthetic datasets for the label conventions beyond plain classes: BraTS-like nested regions,
and sparse annotation with an ignore label. For tests and demos; no real patients.

- :func:`generate_regions_dataset`: two MR-like channels and three nested structures (labels 1
  "edema" outside 2 "necrosis" outside 3 "enhancing"), declared as BraTS's regions: whole tumour
  ``[1, 2, 3]``, tumour core ``[2, 3]``, enhancing ``[3]`` with ``regions_class_order [1, 2, 3]``.
  Channel 0 (FLAIR-like) shows the whole tumour, channel 1 (T1ce-like) the core and, brighter,
  the enhancing part, so every region boundary is visible in one channel.
- :func:`add_ignore_label`: a copy of a raw dataset where every other slab of ``slab`` slices
  along z is unannotated (label ``ignore``, the highest value): half of the label voxels.

Example:
    >>> generate_regions_dataset("/tmp/raw/Dataset930_Brats", num_cases=8)  # doctest: +SKIP
    PosixPath('/tmp/raw/Dataset930_Brats')
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from autoseg.io.images import Geometry, read_image, write_image
from autoseg.utils.files import write_json

__all__ = ["BRATS_LABELS", "add_ignore_label", "generate_regions_dataset", "regions_case"]

#: dataset.json labels of the BraTS convention (regions as lists of values).
BRATS_LABELS: dict[str, Any] = {
    "background": 0,
    "whole tumor": [1, 2, 3],
    "tumor core": [2, 3],
    "enhancing tumor": [3],
}
#: Per channel, the intensity of background, edema (1), necrosis (2), enhancing (3).
_LEVELS = np.array([[1.0, 2.0, 2.0, 2.0], [1.0, 1.0, 2.0, 3.0]], dtype=np.float32)


def regions_case(
    shape: tuple[int, int, int], seed: int, noise: float = 0.1
) -> tuple[list[np.ndarray], np.ndarray, Geometry]:
    """One case: two float32 channels (0 outside a spherical head), the uint8 label map, 1 mm voxels.

    The three structures are nested ellipsoids sharing a random centre: radii about a third of the
    volume, then about 80 % and 60 % of that (edema > necrosis-with-enhancing > enhancing).
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))
    size = np.asarray(shape, dtype=np.float32)
    centre = size / 2 + rng.uniform(-0.12, 0.12, 3) * size
    whole = rng.uniform(0.30, 0.36, 3) * size
    label = np.zeros(shape, np.uint8)
    nested = ((1, whole), (2, whole * rng.uniform(0.78, 0.82)), (3, whole * rng.uniform(0.58, 0.62)))
    for value, radii in nested:
        inside = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1
        label[inside] = value
    head = (((grid - size[:, None, None, None] / 2) / (0.48 * size[:, None, None, None])) ** 2).sum(0) <= 1
    images = []
    for channel in range(2):
        image = gaussian_filter(_LEVELS[channel][label], 0.6)
        image += rng.standard_normal(shape).astype(np.float32) * np.float32(noise)
        images.append((np.maximum(image, 0) * head).astype(np.float32))
    origin = tuple(-(n - 1) / 2 for n in reversed(shape))
    return images, label, Geometry(shape, (1.0, 1.0, 1.0), origin, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))


def generate_regions_dataset(
    out_folder: str | Path, num_cases: int = 8, shape: tuple[int, int, int] = (24, 32, 32), seed: int = 0
) -> Path:
    """Write a BraTS-like region dataset (module docstring) in the nnU-Net v2 raw layout."""
    out = Path(out_folder)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    for index in range(num_cases):
        images, label, geometry = regions_case(shape, seed * 1000 + index)
        name = f"case_{index:03d}"
        for channel, image in enumerate(images):
            write_image(image, geometry, out / "imagesTr" / f"{name}_{channel:04d}.nii.gz")
        write_image(label, geometry, out / "labelsTr" / f"{name}.nii.gz")
    write_json(
        out / "dataset.json",
        {
            "name": "SyntheticBraTS",
            "description": "Synthetic nested regions (no real patients), autoseg.synthetic_labels",
            "channel_names": {"0": "FLAIR", "1": "T1ce"},
            "labels": BRATS_LABELS,
            "regions_class_order": [1, 2, 3],
            "numTraining": num_cases,
            "file_ending": ".nii.gz",
        },
    )
    return out


def add_ignore_label(source: str | Path, out_folder: str | Path, slab: int = 4) -> Path:
    """Copy the raw dataset ``source`` to ``out_folder`` with every other slab of ``slab`` z-slices
    of each label map replaced by a new ``ignore`` label (one above the highest value).

    Returns:
        ``out_folder``; its dataset.json declares ``"ignore"``.
    """
    src, out = Path(source), Path(out_folder)
    description = json.loads((src / "dataset.json").read_text())
    values = [v for x in description["labels"].values() for v in (x if isinstance(x, list) else [x])]
    ignore = max(values) + 1
    shutil.copytree(src / "imagesTr", out / "imagesTr", dirs_exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    for path in sorted((src / "labelsTr").iterdir()):
        label, geometry = read_image(path)
        label = label.astype(np.uint8)
        z = np.arange(label.shape[0]) // slab % 2 == 1
        label[z] = ignore
        write_image(label, geometry, out / "labelsTr" / path.name)
    description["labels"] = {**description["labels"], "ignore": ignore}
    write_json(out / "dataset.json", description)
    return out
