"""Augmenter: rotation ranges, geometry, image/label alignment, determinism, batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from autoseg.data import AugmentConfig, Augmenter, AugmentParams, intensity
from autoseg.data.sampling import patch_region
from tests.data import label_image

OFF = AugmentConfig(
    p_rotation=0,
    p_scaling=0,
    p_noise=0,
    p_blur=0,
    p_brightness=0,
    p_contrast=0,
    p_lowres=0,
    p_gamma_inverted=0,
    p_gamma=0,
    p_mirror=0,
)
SPATIAL = dataclasses.replace(OFF, p_rotation=1, p_scaling=1, p_mirror=1)
EVERYTHING = AugmentConfig(
    p_rotation=0.5,
    p_scaling=0.5,
    p_noise=0.5,
    p_blur=0.5,
    p_blur_per_channel=1,
    p_brightness=0.5,
    p_contrast=0.5,
    p_lowres=0.5,
    p_lowres_per_channel=1,
    p_gamma_inverted=0.5,
    p_gamma=0.5,
)


# ---------------------------------------------------------------- rotation rules
@pytest.mark.parametrize(
    ("patch", "rotation", "dummy", "mirror"),
    [
        ((40, 56, 40), (30.0, 30.0, 30.0), False, (0, 1, 2)),
        ((128, 128, 128), (30.0, 30.0, 30.0), False, (0, 1, 2)),
        ((12, 192, 160), (180.0,), True, (0, 1, 2)),  # max / first = 16 > 3: dummy 2D
        ((64, 160, 128), (30.0, 30.0, 30.0), False, (0, 1, 2)),  # 160 / 64 = 2.5 <= 3
        ((48, 160, 128), (180.0,), True, (0, 1, 2)),  # 160 / 48 = 3.33 > 3
        ((56, 40), (180.0,), False, (0, 1)),  # aspect 1.4
        ((96, 40), (15.0,), False, (0, 1)),  # aspect 2.4 > 1.5
    ],
)
def test_rotation_ranges_by_patch(
    patch: tuple[int, ...], rotation: tuple[float, ...], dummy: bool, mirror: tuple[int, ...]
) -> None:
    config = AugmentConfig().for_patch(patch)
    assert config.rotation_deg == rotation
    assert config.dummy_2d == dummy
    assert config.mirror_axes == mirror
    assert Augmenter(patch).dummy_2d == dummy


def test_for_patch_keeps_explicit_values() -> None:
    config = AugmentConfig(rotation_deg=(10.0, 0.0, 0.0), mirror_axes=(1, 2), p_noise=0).for_patch(
        (40, 56, 40)
    )
    assert config.rotation_deg == (10.0, 0.0, 0.0) and config.mirror_axes == (1, 2) and config.p_noise == 0
    # on the class: from the defaults
    assert AugmentConfig.for_patch((40, 56, 40)) == AugmentConfig().for_patch((40, 56, 40))


def test_config_and_augmenter_report_problems() -> None:
    with pytest.raises(ValueError, match=r"scaling=\(2, 1\).*p_noise=1.5"):
        AugmentConfig(p_noise=1.5, scaling=(2, 1))
    with pytest.raises(ValueError, match="needs 3"):
        Augmenter((40, 56, 40), AugmentConfig(rotation_deg=(30.0,)))
    with pytest.raises(ValueError, match="mirror_axes"):
        Augmenter((56, 40), AugmentConfig(mirror_axes=(2,)))


def test_crop_size_is_the_patch_without_rotation_and_zoom() -> None:
    assert Augmenter((40, 56, 40), OFF).crop_size == (40, 56, 40)
    aug = Augmenter((40, 56, 40))
    assert all(c > p for c, p in zip(aug.crop_size, aug.patch_size, strict=True))


# ----------------------------------------------------------------- geometry
def _crop_tensors(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    image, label = label_image(shape)
    return torch.from_numpy(image)[None], torch.from_numpy(label)[None]


def test_no_augmentation_is_the_centre_crop_with_labels_as_int64() -> None:
    aug = Augmenter((8, 10, 12), OFF)
    image = torch.randn(2, 13, 14, 16)
    seg = torch.randint(-1, 3, (1, 13, 14, 16), dtype=torch.int8)
    out_image, out_seg = aug.apply(image, seg, aug.draw(np.random.default_rng(0)))
    np.testing.assert_array_equal(out_image.numpy(), image[:, 2:10, 2:12, 2:14].numpy())
    assert out_seg.dtype == torch.int64 and out_seg.min() >= 0
    np.testing.assert_array_equal(out_seg.numpy(), seg[:, 2:10, 2:12, 2:14].clamp(min=0).numpy())
    assert out_image.data_ptr() != image.data_ptr()


def test_mirroring_is_a_flip_of_the_centre_crop() -> None:
    aug = Augmenter((8, 10, 12), OFF)
    image = torch.randn(1, 12, 14, 16)
    seg = torch.randint(0, 3, (1, 12, 14, 16), dtype=torch.int8)
    out_image, out_seg = aug.apply(image, seg, AugmentParams(mirror=(0, 2)))
    expected = image[:, 2:10, 2:12, 2:14].flip((1, 3))
    np.testing.assert_array_equal(out_image.numpy(), expected.numpy())
    # the same flip through the sampling grid (with a zoom of exactly 1: the resampling path)
    grid_image, grid_seg = aug.apply(image, seg, AugmentParams(angles=(0.0, 0.0, 0.0), mirror=(0, 2)))
    np.testing.assert_allclose(grid_image.numpy(), expected.numpy(), atol=1e-5)
    np.testing.assert_array_equal(grid_seg.numpy(), out_seg.numpy())


@pytest.mark.parametrize("patch", [(6, 10, 10), (10, 10)])
def test_quarter_turn_moves_voxels_like_rot90(patch: tuple[int, ...]) -> None:
    aug = Augmenter(patch, OFF)
    crop = tuple(p + 4 for p in patch)
    image = torch.randn(1, *crop)
    seg = torch.randint(0, 5, (1, *crop), dtype=torch.int8)
    angles = (np.pi / 2, 0.0, 0.0) if len(patch) == 3 else (np.pi / 2,)
    out_image, out_seg = aug.apply(image, seg, AugmentParams(angles=angles))
    centre = (slice(None), *(slice(2, 2 + p) for p in patch))
    # a patch voxel (.., y, x) is read at (.., P - 1 - x, y): torch.rot90 with k = -1 in the (y, x) plane
    expected = torch.rot90(image[centre], -1, dims=(-2, -1))
    np.testing.assert_allclose(out_image.numpy(), expected.numpy(), atol=1e-4)
    np.testing.assert_array_equal(out_seg.numpy(), torch.rot90(seg[centre], -1, dims=(-2, -1)).long().numpy())


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


@pytest.mark.parametrize("patch", [(24, 32, 28), (8, 40, 36), (40, 36)])
def test_labels_stay_aligned_with_the_image(patch: tuple[int, ...]) -> None:
    aug = Augmenter(patch, SPATIAL)
    assert aug.dummy_2d == (patch == (8, 40, 36))
    image, seg = _crop_tensors(aug.crop_size)
    rng = np.random.default_rng(0)
    for _ in range(6):
        params = aug.draw(rng)
        assert params.spatial and len(params.mirror) == len(patch)
        out_image, out_seg = aug.apply(image, seg, params)
        assert out_image.shape == (1, *patch) and out_seg.shape == (1, *patch)
        recovered = np.digitize(out_image[0].numpy(), [50.0, 150.0])
        for label in (1, 2):
            assert (out_seg == label).any()
            assert _dice(recovered == label, out_seg[0].numpy() == label) > 0.95


@pytest.mark.parametrize("patch", [(12, 16, 14), (4, 20, 18), (16, 14)])
def test_apply_batch_equals_apply_per_sample(patch: tuple[int, ...]) -> None:
    aug = Augmenter(patch, EVERYTHING, num_channels=2)
    assert aug.dummy_2d == (patch == (4, 20, 18))
    rng = np.random.default_rng(4)
    images = torch.randn(6, 2, *aug.crop_size)
    segs = torch.randint(-1, 3, (6, 1, *aug.crop_size), dtype=torch.int16)
    params = [aug.draw(rng) for _ in range(6)]
    assert any(p.spatial for p in params) and not all(p.spatial for p in params)
    before = images.clone()
    out_images, out_segs = aug.apply_batch(images, segs, params)
    assert out_images.shape == (6, 2, *patch) and out_segs.dtype == torch.int64
    torch.testing.assert_close(images, before)  # inputs untouched
    for b, p in enumerate(params):
        image, seg = aug.apply(images[b], segs[b], p)
        torch.testing.assert_close(out_images[b], image, atol=1e-5, rtol=1e-5)
        assert torch.equal(out_segs[b], seg)


@pytest.mark.parametrize("patch", [(12, 16, 14), (6, 20, 18), (16, 14)])
def test_apply_is_deterministic_and_a_required_crop_is_enough(patch: tuple[int, ...]) -> None:
    aug = Augmenter(patch, EVERYTHING)
    image, seg = _crop_tensors(aug.crop_size)
    rng = np.random.default_rng(5)
    for _ in range(8):
        params = aug.draw(rng)
        first = aug.apply(image, seg, params)
        second = aug.apply(image, seg, params)
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
        size = aug.required_crop(params)
        assert all(p <= s <= c for p, s, c in zip(patch, size, aug.crop_size, strict=True))
        if not params.spatial:
            assert all(s - p <= 1 for s, p in zip(size, patch, strict=True))
        part = (slice(None), *patch_region(aug.crop_size, size))
        sub = aug.apply(image[part], seg[part], params)
        torch.testing.assert_close(sub[0], first[0], atol=1e-3, rtol=1e-4)
        assert (sub[1] != first[1]).float().mean() < 1e-3


def test_draw_fires_with_the_configured_probabilities() -> None:
    aug = Augmenter((40, 56, 40))
    rng = np.random.default_rng(6)
    draws = [aug.draw(rng) for _ in range(2000)]
    rotated = np.mean([bool(p.angles) for p in draws])
    gamma = np.mean([bool(p.gamma) for p in draws])
    mirrored_z = np.mean([0 in p.mirror for p in draws])
    assert abs(rotated - 0.2) < 0.04 and abs(gamma - 0.3) < 0.04 and abs(mirrored_z - 0.5) < 0.04
    angles = np.array([p.angles for p in draws if p.angles])
    assert np.abs(angles).max() <= np.deg2rad(30) + 1e-9
    scales = np.array([p.scale for p in draws if p.scale != 1.0])
    assert scales.min() >= 0.7 and scales.max() <= 1.4
    assert aug.draw(np.random.default_rng(1)) == aug.draw(np.random.default_rng(1))


# ---------------------------------------------------------------- intensity
def test_intensity_transforms_keep_their_invariants() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(12, 14, 16, generator=gen) * 3 - 1
    for invert in (False, True):
        y = intensity.gamma_(x.clone(), 1.4, invert=invert)
        assert abs(float(y.mean() - x.mean())) < 1e-4 and abs(float(y.std() - x.std())) < 1e-4
        assert not torch.allclose(y, x)
    y = intensity.contrast_(x.clone(), 1.25)
    assert float(y.min()) >= float(x.min()) and float(y.max()) <= float(x.max())
    blurred = intensity.gaussian_blur(x, (1.0, 0.5, 0.75))
    assert blurred.shape == x.shape and float(blurred.std()) < float(x.std())
    assert abs(float(blurred.mean() - x.mean())) < 0.02
    const = torch.full((6, 7, 8), 3.0)
    torch.testing.assert_close(intensity.gaussian_blur(const, (1.0, 1.0, 1.0)), const)
    torch.testing.assert_close(intensity.simulate_low_resolution(const, 0.5), const)
    low = intensity.simulate_low_resolution(x, 0.5, keep_axes=(0,))
    assert low.shape == x.shape and float((low - x).abs().mean()) > 0
    noisy = intensity.add_noise_(x.clone()[None], 0.1, seed=3)
    torch.testing.assert_close(noisy, intensity.add_noise_(x.clone()[None], 0.1, seed=3))
    assert 0.08 < float((noisy[0] - x).std()) < 0.12
