"""The cascade's previous-stage channels: one-hot, and nnU-Net's corruption of them."""

from __future__ import annotations

import numpy as np
import pytest

from autoseg.cascade.encoding import _morphology, ball, corrupt_previous, one_hot_previous


def _two_blobs() -> np.ndarray:
    seg = np.zeros((24, 24, 24), dtype=np.int16)
    seg[4:12, 4:12, 4:12] = 1
    seg[15:18, 15:18, 15:18] = 2  # small: removable
    seg[16, 16, 5] = 2
    return seg


def test_one_hot_per_class_and_region() -> None:
    seg = _two_blobs()
    onehot = one_hot_previous(seg, [[1], [2], [1, 2]])
    assert onehot.shape == (3, 24, 24, 24) and onehot.dtype == np.float32
    np.testing.assert_array_equal(onehot[0], seg == 1)
    np.testing.assert_array_equal(onehot[2], seg > 0)


@pytest.mark.parametrize("operation", ["dilation", "erosion", "opening", "closing"])
def test_each_binary_operation_moves_the_mask_the_right_way(operation: str) -> None:
    mask = _two_blobs() == 1
    out = _morphology(mask, operation, 2)
    if operation in ("dilation", "closing"):
        assert np.all(out >= mask)
    else:
        assert np.all(out <= mask)
    if operation == "dilation":
        assert out.sum() > mask.sum()
    if operation == "erosion":
        assert out.sum() < mask.sum()
    with pytest.raises(ValueError, match="valid: dilation"):
        _morphology(mask, "thinning", 1)


def test_ball() -> None:
    assert ball(1, 3).sum() == 7 and ball(2, 2).shape == (5, 5)


def test_corruption_is_a_function_of_the_generator_and_binary() -> None:
    onehot = one_hot_previous(_two_blobs(), [[1], [2]])
    runs = [corrupt_previous(onehot, np.random.default_rng([7, k])) for k in range(20)]
    again = [corrupt_previous(onehot, np.random.default_rng([7, k])) for k in range(20)]
    for a, b in zip(runs, again, strict=True):
        np.testing.assert_array_equal(a, b)
        assert set(np.unique(a)) <= {0.0, 1.0}
    changed = sum(not np.array_equal(r, onehot) for r in runs)
    assert 0 < changed < 20  # some samples corrupted, some left alone (p 0.4 and 0.2 per channel)
    np.testing.assert_array_equal(onehot, one_hot_previous(_two_blobs(), [[1], [2]]))  # input kept


def test_component_removal_removes_one_small_component_whole() -> None:
    onehot = one_hot_previous(_two_blobs(), [[1], [2]])
    out = corrupt_previous(
        onehot, np.random.default_rng(0), p_morphology=0.0, p_remove=1.0, max_fraction=0.01
    )
    np.testing.assert_array_equal(out[0], onehot[0])  # the 512-voxel cube is > 1 % of 13824 voxels
    removed = onehot[1].sum() - out[1].sum()
    assert removed in (1, 27)  # the single voxel or the 3x3x3 cube, never part of one
    assert np.all(out[1] <= onehot[1])
