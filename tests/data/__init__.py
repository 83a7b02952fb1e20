"""Helpers for the data-pipeline tests: small preprocessed cases written with save_case."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autoseg.preprocessing.locations import sample_class_locations
from autoseg.preprocessing.storage import save_case
from tests.presets import case_properties


def write_cases(
    folder: Path,
    shapes: Sequence[tuple[int, int, int]],
    channels: int = 1,
    radius: int = 2,
    seed: int = 0,
) -> list[str]:
    """Write cases ``case_000...`` with random images and one small blob of labels 1 and 2.

    The first z slice is -1 (outside the non-zero region), as preprocessing writes it.

    Returns:
        The case names.
    """
    names = []
    for i, shape in enumerate(shapes):
        rng = np.random.default_rng([seed, i])
        data = rng.standard_normal((channels, *shape)).astype(np.float32)
        seg = np.zeros(shape, np.int8)
        grid = np.ogrid[tuple(slice(0, s) for s in shape)]
        for label in (1, 2):
            center = [rng.integers(0, s) for s in shape]
            inside = sum((g - c) ** 2 for g, c in zip(grid, center, strict=True)) <= radius**2
            seg[inside] = label
        seg[0][seg[0] == 0] = -1
        name = f"case_{i:03d}"
        locations = sample_class_locations(np.maximum(seg, 0), [1, 2], seed=1234)
        save_case(folder, name, data, seg, case_properties(name, shape), locations, "test")
        names.append(name)
    return names


def label_image(shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """An image made from its label map: ``100 * (label == 1) + 200 * (label == 2)`` plus a
    smooth ramp; two asymmetric ellipsoids (so that a wrong flip or rotation shows).

    Returns:
        ``(image, label)``: float32 and int8 arrays of ``shape`` (2D or 3D).
    """
    grid = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    shape_a = np.asarray(shape, dtype=np.float32)
    center = shape_a / 2
    label = np.zeros(shape, np.int8)
    radii = shape_a * np.array([0.3, 0.2, 0.35][-len(shape) :])
    r = sum(((g - c) / rr) ** 2 for g, c, rr in zip(grid, center, radii, strict=True))
    label[r < 1] = 1
    center2 = center + shape_a * np.array([0.0, 0.1, 0.08][-len(shape) :])
    radii2 = shape_a * np.array([0.3, 0.12, 0.1][-len(shape) :])
    r2 = sum(((g - c) / rr) ** 2 for g, c, rr in zip(grid, center2, radii2, strict=True))
    label[r2 < 1] = 2
    image = 100.0 * (label == 1) + 200.0 * (label == 2) + 20.0 * sum(grid) / float(sum(shape))
    return image.astype(np.float32), label
