from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from autoseg.preprocessing.resample import (
    axis_orders,
    compute_new_shape,
    resample_data,
    resample_data_to_shape,
    resample_seg,
    resample_seg_to_shape,
)


def _centres(shape: tuple[int, ...], spacing: tuple[float, ...]) -> list[np.ndarray]:
    """Physical voxel-centre coordinates (pixel-centre convention: (i + 0.5) * spacing)."""
    return np.meshgrid(
        *[(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij"
    )


def _effective(shape: tuple[int, ...], spacing: tuple[float, ...], new_shape: tuple[int, ...]) -> tuple:
    """The output's true voxel size: resampling keeps the image's extent (shape * spacing)."""
    return tuple(n * s / m for n, s, m in zip(shape, spacing, new_shape, strict=True))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())


def test_compute_new_shape() -> None:
    assert compute_new_shape((10, 20, 30), (2.0, 1.0, 1.0), (1.0, 1.0, 2.0)) == (20, 20, 15)
    assert compute_new_shape((150, 512, 512), (2.5, 0.8, 0.8), (3.125, 1.0, 1.0)) == (120, 410, 410)
    assert compute_new_shape((3, 3), (0.1, 1.0), (10.0, 1.0)) == (1, 3)  # never 0


def test_same_shape_returns_the_input_itself() -> None:
    data = np.ones((1, 4, 5, 6), np.float32)
    seg = np.zeros((4, 5, 6), np.int16)
    assert resample_data(data, (1, 1, 1), (1, 1, 1)) is data
    assert resample_data_to_shape(data, (4, 5, 6), (1, 1, 1), (2, 2, 2)) is data
    assert resample_seg(seg, (1, 2, 3), (1, 2, 3)) is seg


def test_constant_image_stays_constant() -> None:
    data = np.full((2, 7, 9, 11), 3.5, np.float32)
    out = resample_data(data, (1.0, 1.0, 1.0), (0.6, 1.7, 1.3))
    assert out.shape == (2, 12, 5, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out, 3.5, rtol=1e-6)


@pytest.mark.parametrize("new_spacing", [(0.5, 0.7, 0.6), (1.6, 2.1, 1.5)])
def test_linear_ramp_is_preserved_up_and_down(new_spacing: tuple[float, float, float]) -> None:
    spacing = (1.0, 1.2, 0.9)
    shape = (20, 18, 22)
    z, y, x = _centres(shape, spacing)
    data = (2.0 * z - 1.0 * y + 0.5 * x)[None].astype(np.float32)
    out = resample_data(data, spacing, new_spacing, order=3)
    new_shape = compute_new_shape(shape, spacing, new_spacing)
    assert out.shape == (1, *new_shape)
    z2, y2, x2 = _centres(new_shape, _effective(shape, spacing, new_shape))
    expected = 2.0 * z2 - 1.0 * y2 + 0.5 * x2
    # edge mode extends the image by its edge values: the spline bends within ~6 input voxels of it
    margins = [int(np.ceil(6 * m / n)) for n, m in zip(shape, new_shape, strict=True)]
    inner = tuple(slice(k, m - k) for k, m in zip(margins, new_shape, strict=True))
    np.testing.assert_allclose(out[0][inner], expected[inner], atol=2e-3)


def test_matches_scipy_zoom_with_pixel_centres() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(1, 9, 13, 11)).astype(np.float32)
    new_shape = (14, 8, 17)
    for order in (1, 3):
        out = resample_data_to_shape(data, new_shape, (1, 1, 1), (1, 1, 1), order=order)
        ref = ndimage.zoom(
            data[0], np.divide(new_shape, data.shape[1:]), order=order, mode="nearest", grid_mode=True
        )
        ref = np.clip(ref, data.min(), data.max())
        np.testing.assert_allclose(out[0], ref, atol=1e-5)


def test_seg_has_no_new_label_values() -> None:
    rng = np.random.default_rng(0)
    seg = rng.choice(np.array([-1, 0, 2, 5], np.int16), size=(10, 12, 14))
    for new_shape in ((17, 7, 20), (5, 25, 9)):
        out = resample_seg_to_shape(seg, new_shape, (1, 1, 1), (1, 1, 1))
        assert out.shape == new_shape and out.dtype == seg.dtype
        assert set(np.unique(out)) <= {-1, 0, 2, 5}


def test_sphere_stays_a_sphere() -> None:
    spacing, new_spacing = (1.0, 1.0, 1.0), (1.3, 0.7, 0.9)
    shape = (40, 40, 40)
    centre, radius = 20.0, 12.0
    z, y, x = _centres(shape, spacing)
    seg = ((z - centre) ** 2 + (y - centre) ** 2 + (x - centre) ** 2 < radius**2).astype(np.int16)
    seg[(z - centre) ** 2 + (y - centre) ** 2 + (x - centre) ** 2 < 5**2] = 2
    out = resample_seg(seg, spacing, new_spacing)
    new_shape = compute_new_shape(shape, spacing, new_spacing)
    z2, y2, x2 = _centres(new_shape, _effective(shape, spacing, new_shape))
    r2 = (z2 - centre) ** 2 + (y2 - centre) ** 2 + (x2 - centre) ** 2
    assert _dice(out >= 1, r2 < radius**2) > 0.95
    assert _dice(out == 2, r2 < 5**2) > 0.9


def test_axis_orders_separate_z_rule() -> None:
    assert axis_orders((5.0, 0.7, 0.7), (5.0, 1.0, 1.0), 3, 0) == (0, 3, 3)
    assert axis_orders((1.0, 1.0, 1.0), (1.0, 4.0, 1.0), 3, 0) == (3, 0, 3)  # target decides
    assert axis_orders((1.0, 1.0, 1.0), (1.2, 1.0, 1.0), 3, 0) == (3, 3, 3)
    assert axis_orders((5.0, 5.0, 0.7), (1.0, 1.0, 1.0), 3, 0) == (3, 3, 3)  # two coarse axes: no
    assert axis_orders((1.0, 1.0), (5.0, 1.0), 3, 0) == (3, 3)  # only 3D


def test_anisotropic_data_takes_z_slices_nearest() -> None:
    rng = np.random.default_rng(2)
    spacing, new_spacing = (5.0, 0.7, 0.7), (1.5, 1.0, 1.0)
    data = rng.normal(size=(1, 6, 20, 22)).astype(np.float32)
    out = resample_data(data, spacing, new_spacing)
    new_shape = compute_new_shape(data.shape[1:], spacing, new_spacing)
    assert out.shape == (1, *new_shape) and new_shape[0] == 20
    in_plane = resample_data_to_shape(data, (6, *new_shape[1:]), spacing, new_spacing)
    for k in range(new_shape[0]):  # each output slice is one in-plane-resampled input slice
        errors = np.abs(in_plane[0] - out[0, k]).max(axis=(1, 2))
        assert errors.min() < 1e-5
    seg = (data[0] > 0).astype(np.int8)
    seg_out = resample_seg(seg, spacing, new_spacing)
    seg_in_plane = resample_seg_to_shape(seg, (6, *new_shape[1:]), spacing, new_spacing)
    for k in range(new_shape[0]):
        assert any((seg_in_plane[j] == seg_out[k]).all() for j in range(6))


def test_two_dimensional_arrays() -> None:
    data = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    out = resample_data(data, (1.0, 1.0), (0.5, 0.5), order=1)
    assert out.shape == (1, 6, 8)
    seg = (data[0] > 5).astype(np.int16)
    assert set(np.unique(resample_seg(seg, (1.0, 1.0), (0.5, 0.5)))) == {0, 1}


@pytest.mark.parametrize(
    ("new_shape", "spacing"), [((17, 40, 25), (1.0, 1.0, 1.0)), ((40, 30, 20), (5.0, 1.0, 1.0))]
)
def test_seg_equals_argmax_of_linearly_resampled_one_hot(new_shape: tuple, spacing: tuple) -> None:
    rng = np.random.default_rng(0)
    seg = np.roll(ndimage.zoom(rng.integers(-1, 4, (6, 7, 8)), 4, order=0), 2, axis=1).astype(np.int16)
    out = resample_seg_to_shape(seg, new_shape, spacing, (1.0, 1.0, 1.0))
    values = np.unique(seg)
    zoom = np.divide(new_shape, seg.shape)
    separate_z = [((1.0, *zoom[1:]), 1), ((zoom[0], 1.0, 1.0), 0)]  # linear in-plane, nearest z
    steps = separate_z if spacing[0] > 3 else [(zoom, 1)]
    probs = []
    for v in values:
        p = (seg == v).astype(np.float64)
        for factors, order in steps:
            p = ndimage.zoom(p, factors, order=order, mode="nearest", grid_mode=True)
        probs.append(p)
    stacked = np.stack(probs)
    reference = values[stacked.argmax(0)]
    top2 = np.sort(stacked, axis=0)[-2:]
    ties = np.isclose(top2[1], top2[0], atol=1e-5)
    assert ((reference == out) | ties).all()
    assert (reference == out).mean() > 0.9
