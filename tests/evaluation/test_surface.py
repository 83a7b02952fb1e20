"""HD95 and NSD against hand-computed values and a brute-force reference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from autoseg.evaluation.surface import (
    hausdorff_95,
    image_diagonal_mm,
    normalized_surface_dice,
    surface_distances,
    surface_metrics,
)


def _cube(shape: tuple[int, ...], start: tuple[int, ...], size: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def _brute_surface(mask: np.ndarray) -> np.ndarray:
    """Voxels with a 26-neighbour outside the mask (outside the image counts as outside)."""
    padded = np.pad(mask, 1)
    inner = np.ones_like(mask)
    for offset in itertools.product((-1, 0, 1), repeat=mask.ndim):
        window = tuple(slice(1 + o, 1 + o + n) for o, n in zip(offset, mask.shape, strict=True))
        inner &= padded[window]
    return mask & ~inner


def _brute_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], tol: float) -> tuple:
    p = np.argwhere(_brute_surface(pred)) * np.asarray(spacing)
    r = np.argwhere(_brute_surface(ref)) * np.asarray(spacing)
    pairwise = np.sqrt(((p[:, None, :] - r[None, :, :]) ** 2).sum(-1))
    to_ref, to_pred = pairwise.min(1), pairwise.min(0)
    hd95 = max(np.percentile(to_ref, 95), np.percentile(to_pred, 95))
    nsd = (np.sum(to_ref <= tol) + np.sum(to_pred <= tol)) / (to_ref.size + to_pred.size)
    return hd95, nsd


def test_cubes_offset_by_two_voxels_anisotropic() -> None:
    # 5^3 cubes, 2 voxels apart along z at 0.5 mm; 2 mm in y and x. Each surface has 98 voxels
    # (125 - 27 interior): 48 lie on the other surface (0 mm), 16 are one slice away (0.5 mm) and
    # 34 two slices (1.0 mm), in both directions: HD95 = 1.0 mm, NSD@0.5 mm = 64 / 98.
    shape, spacing = (12, 7, 7), (0.5, 2.0, 2.0)
    ref, pred = _cube(shape, (2, 1, 1), 5), _cube(shape, (4, 1, 1), 5)
    to_ref, to_pred = surface_distances(pred, ref, spacing)
    for d in (to_ref, to_pred):
        assert d.size == 98
        assert [np.sum(d == v) for v in (0.0, 0.5, 1.0)] == [48, 16, 34]
    assert hausdorff_95(pred, ref, spacing) == pytest.approx(1.0)
    assert normalized_surface_dice(pred, ref, spacing, 1.0) == pytest.approx(1.0)
    assert normalized_surface_dice(pred, ref, spacing, 0.5) == pytest.approx(64 / 98)
    assert normalized_surface_dice(pred, ref, spacing, 0.25) == pytest.approx(48 / 98)


def test_parallel_planes_hd95_is_their_distance_in_mm() -> None:
    spacing = (2.5, 0.8, 0.7)
    ref, pred = np.zeros((8, 6, 6), bool), np.zeros((8, 6, 6), bool)
    ref[2, 1:5, 1:5] = True
    pred[4, 1:5, 1:5] = True  # two slices of 2.5 mm above, every voxel is on the surface
    hd95, nsd = surface_metrics(pred, ref, spacing, tolerance_mm=1.0)
    assert hd95 == pytest.approx(5.0)
    assert nsd == 0.0
    assert normalized_surface_dice(pred, ref, spacing, 5.0) == 1.0


def test_identical_masks() -> None:
    mask = _cube((6, 6, 6), (1, 1, 1), 4)
    assert surface_metrics(mask, mask, (3.0, 1.0, 1.0), 0.0) == (0.0, 1.0)


def test_empty_masks_convention() -> None:
    shape, spacing = (4, 5, 6), (2.0, 1.0, 0.5)
    full, empty = _cube(shape, (1, 1, 1), 2), np.zeros(shape, bool)
    diagonal = math.sqrt(8.0**2 + 5.0**2 + 3.0**2)
    assert image_diagonal_mm(shape, spacing) == pytest.approx(diagonal)
    assert surface_metrics(empty, full, spacing) == (pytest.approx(diagonal), 0.0)
    assert surface_metrics(full, empty, spacing) == (pytest.approx(diagonal), 0.0)
    hd95, nsd = surface_metrics(empty, empty, spacing)
    assert math.isnan(hd95) and math.isnan(nsd)
    with pytest.raises(ValueError, match="non-empty"):
        surface_distances(empty, full, spacing)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_random_blobs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape, spacing = (10, 12, 9), (1.7, 0.6, 0.9)
    ref = rng.random(shape) < 0.15
    pred = rng.random(shape) < 0.1
    pred[0, 0, 0] = ref[-1, -1, -1] = True  # the masks touch opposite image corners
    for tol in (0.5, 1.0, 2.0):
        got = surface_metrics(pred, ref, spacing, tol)
        assert got == pytest.approx(_brute_metrics(pred, ref, spacing, tol))


def test_two_dimensional_masks() -> None:
    ref, pred = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    ref[2:5, 2:5] = True
    pred[2:5, 3:6] = True
    assert surface_metrics(pred, ref, (1.0, 2.0), 2.0) == pytest.approx(
        _brute_metrics(pred, ref, (1.0, 2.0), 2.0)
    )


def test_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="do not match"):
        surface_distances(np.ones((2, 2), bool), np.ones((2, 3), bool), (1.0, 1.0))
    with pytest.raises(ValueError, match="do not match"):
        surface_distances(np.ones((2, 2), bool), np.ones((2, 2), bool), (1.0,))
