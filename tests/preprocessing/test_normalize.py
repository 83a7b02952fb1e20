from __future__ import annotations

import numpy as np
import pytest

from autoseg.preprocessing.normalize import NORMALIZERS, get_normalizer, normalize

CT_PROPS = {"mean": 10.0, "std": 5.0, "percentile_00_5": -20.0, "percentile_99_5": 40.0}


def test_ct_clips_to_percentiles_and_uses_global_stats() -> None:
    image = np.array([[[-100.0, 0.0, 10.0, 100.0]]], np.float32)
    out = normalize(image[None], ["CT"], [False], None, {"0": CT_PROPS})
    np.testing.assert_allclose(out[0, 0, 0], [-6.0, -2.0, 0.0, 6.0])
    assert out.dtype == np.float32


def test_ct_needs_intensity_properties() -> None:
    with pytest.raises(ValueError, match="intensity properties"):
        normalize(np.ones((1, 2, 2, 2), np.float32), ["ct"], [False], None, {})


def test_zscore_without_mask_uses_the_whole_image() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(50, 7, (1, 10, 12, 14)).astype(np.float32)
    before = image.copy()
    out = normalize(image, ["zscore"], [False], None)
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-4
    np.testing.assert_array_equal(image, before)  # the input is not modified


def test_zscore_with_mask_uses_the_mask_and_zeroes_outside() -> None:
    rng = np.random.default_rng(1)
    image = np.zeros((1, 10, 10, 10), np.float32)
    mask = np.zeros((10, 10, 10), bool)
    mask[2:8, 2:8, 2:8] = True
    image[0][mask] = rng.normal(300, 40, mask.sum())
    out = normalize(image, ["zscore"], [True], mask)
    inside = out[0][mask]
    assert abs(inside.mean()) < 1e-4 and abs(inside.std() - 1) < 1e-4
    assert (out[0][~mask] == 0).all()


def test_nonorm_and_rescale() -> None:
    image = np.array([[[[2.0, 4.0, 6.0]]], [[[-1.0, 0.0, 3.0]]]], np.float32)
    out = normalize(image, ["nonorm", "rescale_to_0_1"], [False, False], None)
    np.testing.assert_array_equal(out[0], image[0])
    np.testing.assert_allclose(out[1, 0, 0], [0.0, 0.25, 1.0])


def test_unknown_scheme_lists_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        get_normalizer("percentile")
    for name in NORMALIZERS:
        assert name in str(info.value)


def test_scheme_count_must_match_channels() -> None:
    with pytest.raises(ValueError, match="2 channels"):
        normalize(np.ones((2, 2, 2, 2), np.float32), ["zscore"], [False], None)
