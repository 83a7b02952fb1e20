"""Foreground locations of a case, for the trainer's foreground oversampling.

As in nnU-Net: per foreground label with n voxels, ``max(min(10000, n), ceil(0.01 n))``
voxel coordinates drawn without replacement, so small structures keep every voxel and
large ones 1% of them.

With an ignore label, the key :data:`ANNOTATED` (-1) holds locations of annotated voxels
(background included, ignore excluded), drawn the same way: the sampler centres a forced
crop on one of them when a case has no foreground, so patches are drawn where there are
annotations (nnU-Net's "annotated classes" key).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAX_LOCATIONS_PER_CLASS = 10_000
MIN_LOCATION_FRACTION = 0.01
#: Key of the annotated-voxel locations (datasets with an ignore label).
ANNOTATED = -1


def _draw(voxels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(voxels)
    count = max(min(MAX_LOCATIONS_PER_CLASS, n), math.ceil(MIN_LOCATION_FRACTION * n))
    return np.sort(voxels[rng.choice(n, count, replace=False)]) if count < n else voxels


def sample_class_locations(
    seg: np.ndarray, labels: Sequence[int], seed: int, ignore_label: int | None = None
) -> dict[int, np.ndarray]:
    """Voxel coordinates of each foreground label, for foreground oversampling.

    Per label with n voxels, ``max(min(10000, n), ceil(0.01 n))`` of them, drawn without
    replacement (all of them when n <= 10000), sorted in memory order.

    Args:
        seg: (*spatial) label map.
        labels: the foreground labels (> 0); absent ones get an empty (0, ndim) array.
        seed: seed of ``np.random.default_rng``.
        ignore_label: with an ignore label, also key :data:`ANNOTATED`: voxels that are neither
            ignore nor padding (< 0); ``labels`` must not contain it.

    Returns:
        label -> (N, ndim) int32 coordinates.
    """
    if ignore_label is not None and ignore_label in labels:
        raise ValueError(f"the ignore label {ignore_label} is not a foreground label ({list(labels)})")
    if any(int(k) <= 0 for k in labels):
        raise ValueError(f"class locations are for foreground labels (> 0), got {list(labels)}")
    rng = np.random.default_rng(seed)
    flat = seg.reshape(-1)
    voxels = np.flatnonzero(flat > 0)
    values = flat[voxels]
    order = np.argsort(values, kind="stable")
    voxels, values = voxels[order], values[order]
    out: dict[int, np.ndarray] = {}
    for k in sorted(int(v) for v in labels):
        lo, hi = np.searchsorted(values, k, "left"), np.searchsorted(values, k, "right")
        out[k] = _coords(_draw(voxels[lo:hi], rng), seg.shape)
    if ignore_label is not None:
        out[ANNOTATED] = _coords(_draw(np.flatnonzero((flat >= 0) & (flat != ignore_label)), rng), seg.shape)
    return out


def _coords(flat_indices: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if not len(flat_indices):
        return np.zeros((0, len(shape)), np.int32)
    return np.stack(np.unravel_index(flat_indices, shape), axis=1).astype(np.int32)
