"""Foreground locations of a case, for the trainer's foreground oversampling.

As in nnU-Net: per foreground label with n voxels, ``max(min(10000, n), ceil(0.01 n))``
voxel coordinates drawn without replacement, so small structures keep every voxel and
large ones 1% of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAX_LOCATIONS_PER_CLASS = 10_000
MIN_LOCATION_FRACTION = 0.01


def sample_class_locations(seg: np.ndarray, labels: Sequence[int], seed: int) -> dict[int, np.ndarray]:
    """Voxel coordinates of each foreground label, for foreground oversampling.

    Per label with n voxels, ``max(min(10000, n), ceil(0.01 n))`` of them, drawn without
    replacement (all of them when n <= 10000), sorted in memory order.

    Args:
        seg: (*spatial) label map.
        labels: the foreground labels (> 0); absent ones get an empty (0, ndim) array.
        seed: seed of ``np.random.default_rng``.

    Returns:
        label -> (N, ndim) int32 coordinates.
    """
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
        n = int(hi - lo)
        count = max(min(MAX_LOCATIONS_PER_CLASS, n), math.ceil(MIN_LOCATION_FRACTION * n))
        chosen = voxels[lo:hi]
        if count < n:
            chosen = np.sort(chosen[rng.choice(n, count, replace=False)])
        coords = np.unravel_index(chosen, seg.shape)
        out[k] = np.stack(coords, axis=1).astype(np.int32) if n else np.zeros((0, seg.ndim), np.int32)
    return out
