"""PatchSampler, CropSpec, enlarged_crop_size and PreprocessedCases."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest

from autoseg.data import PatchSampler, PreprocessedCases, enlarged_crop_size
from autoseg.data.sampling import patch_region
from tests.data import write_cases
from tests.presets import case_properties


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> PreprocessedCases:
    """6 cases of 20x40x36 with small blobs (a few % foreground) and one smaller than the patch."""
    folder = tmp_path_factory.mktemp("cases")
    names = write_cases(folder, [(20, 40, 36)] * 5 + [(6, 10, 9)], radius=2)
    return PreprocessedCases(folder, names)


# ---------------------------------------------------------------- enlarged_crop_size
def test_enlarged_crop_without_rotation_or_zoom_is_the_patch() -> None:
    assert enlarged_crop_size((40, 56, 40), (0, 0, 0), 1.0) == (40, 56, 40)
    assert enlarged_crop_size((56, 40), (0,), 1.0) == (56, 40)


@pytest.mark.parametrize(
    ("patch", "rotations", "dummy"),
    [
        ((40, 56, 40), [(0, 0, 0), (5, 5, 5), (15, 15, 15), (30, 30, 30), (90, 90, 90)], False),
        ((56, 40), [(0,), (15,), (45,), (180,)], False),
        ((12, 96, 80), [(0,), (15,), (180,)], True),
    ],
)
def test_enlarged_crop_covers_the_patch_and_grows_with_rotation(
    patch: tuple[int, ...], rotations: list[tuple[float, ...]], dummy: bool
) -> None:
    sizes = [np.array(enlarged_crop_size(patch, r, 0.85, dummy_2d=dummy)) for r in rotations]
    for size in sizes:
        assert (size >= np.array(patch)).all()
        assert ((size - np.array(patch)) % 2 == 0).all()  # the patch sits exactly in the middle
    for smaller, larger in itertools.pairwise(sizes):
        assert (larger >= smaller).all() and (larger > smaller).any()
    if dummy:
        assert all(s[0] == patch[0] for s in sizes)  # no rotation or zoom across slices


def test_enlarged_crop_contains_every_rotated_corner() -> None:
    from autoseg.data.spatial import rotation_matrices

    patch = np.array([40, 56, 40])
    crop = np.array(enlarged_crop_size(patch, (30, 30, 30), 1.0))
    rng = np.random.default_rng(0)
    matrices = rotation_matrices(np.deg2rad(rng.uniform(-30, 30, (2000, 3))))
    extents = np.abs(matrices) @ patch
    assert (extents <= crop + 1e-6).all()
    # nnU-Net's get_patch_size (73, 80, 64 at 0.85) is smaller: combined rotations reach further
    assert (np.array(enlarged_crop_size(patch, (30, 30, 30), 0.85)) >= (73, 80, 64)).all()


def test_enlarged_crop_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="3 value"):
        enlarged_crop_size((40, 56, 40), (30,), 0.85)
    with pytest.raises(ValueError, match="scale_min"):
        enlarged_crop_size((56, 40), (15,), 0)


# ----------------------------------------------------------------------- cases
def test_cases_load_is_cached_and_not_pickled(cases: PreprocessedCases) -> None:
    data, seg, locations = cases.load("case_000")
    assert data.shape == (1, 20, 40, 36) and data.dtype == np.float32
    assert seg.shape == (1, 20, 40, 36) and seg.min() == -1
    assert sorted(locations) == [1, 2] and locations[1].shape[1] == 3
    assert cases.load("case_000")[0] is data
    assert cases.num_channels == 1
    clone = pickle.loads(pickle.dumps(cases))
    assert clone._cache == {} and clone.names == cases.names
    np.testing.assert_array_equal(clone.load("case_000")[0], data)


def test_cases_report_every_missing_case(tmp_path: Path) -> None:
    write_cases(tmp_path, [(4, 4, 4)])
    with pytest.raises(ValueError, match=r"2 case\(s\) not preprocessed.*nope, gone"):
        PreprocessedCases(tmp_path, ["case_000", "nope", "gone"])


# ------------------------------------------------------------------------ crop
def test_crop_pads_with_zero_and_minus_one(cases: PreprocessedCases) -> None:
    sampler = PatchSampler(cases, (8, 16, 16), 2, crop_size=(12, 20, 18))
    from autoseg.data import CropSpec

    data, seg, _ = cases.load("case_000")
    image, labels = sampler.crop(CropSpec("case_000", (-3, 30, -5), False))
    assert image.shape == (1, 12, 20, 18) and labels.shape == (1, 12, 20, 18)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image[:, 3:, :10, 5:], data[:, :9, 30:, :13])
    np.testing.assert_array_equal(labels[:, 3:, :10, 5:], seg[:, :9, 30:, :13])
    assert (image[:, :3] == 0).all() and (image[:, :, 10:] == 0).all() and (image[..., :5] == 0).all()
    assert (labels[:, :3] == -1).all() and (labels[:, :, 10:] == -1).all() and (labels[..., :5] == -1).all()
    # a centred part of the crop is the same part of the full crop
    part_image, part_labels = sampler.crop(CropSpec("case_000", (-3, 30, -5), False), (8, 16, 16))
    np.testing.assert_array_equal(part_image, image[:, 2:10, 2:18, 1:17])
    np.testing.assert_array_equal(part_labels, labels[:, 2:10, 2:18, 1:17])


def test_case_smaller_than_the_patch_is_centred_and_padded(cases: PreprocessedCases) -> None:
    sampler = PatchSampler(cases, (8, 16, 16), 1, crop_size=(12, 20, 20))
    data, _, _ = cases.load("case_005")  # (6, 10, 9)
    rng = np.random.default_rng(0)
    for _ in range(20):
        spec = sampler._draw_one("case_005", False, rng)
        image, labels = sampler.crop(spec)
        assert image.shape == (1, 12, 20, 20)
        region = (slice(None), *patch_region((12, 20, 20), (8, 16, 16)))
        # the whole (small) case lies inside the patch region
        assert np.isclose(np.abs(image[region]).sum(), np.abs(data).sum(), rtol=1e-5)
        assert (labels == -1).sum() >= labels.size - data[0].size


def test_2d_sampling_takes_one_slice(cases: PreprocessedCases) -> None:
    sampler = PatchSampler(cases, (16, 16), 4, crop_size=(20, 22))
    rng = np.random.default_rng(1)
    data_slices = set()
    for _ in range(10):
        for spec in sampler.draw(rng):
            assert spec.slice_index is not None and len(spec.start) == 2
            image, labels = sampler.crop(spec)
            assert image.shape == (1, 20, 22) and labels.shape == (1, 20, 22)
            data, _, _ = cases.load(spec.case)
            z = spec.slice_index
            y, x = spec.start
            ys, xs = slice(max(y, 0), y + 20), slice(max(x, 0), x + 22)
            window = data[:, z, ys, xs]
            np.testing.assert_array_equal(
                image[:, ys.start - y :, xs.start - x :][:, : window.shape[1], : window.shape[2]], window
            )
            data_slices.add(z)
    assert len(data_slices) > 3


# ----------------------------------------------------------------- oversampling
def _patch_has_foreground(sampler: PatchSampler, spec: object, label: int | None = None) -> bool:
    _, labels = sampler.crop(spec)  # type: ignore[arg-type]
    patch = labels[(slice(None), *patch_region(sampler.crop_size, sampler.patch_size))]
    return bool((patch == label).any()) if label is not None else bool((patch > 0).any())


@pytest.mark.parametrize(("batch_size", "forced"), [(2, 1), (9, 3)])
def test_forced_samples_contain_foreground(cases: PreprocessedCases, batch_size: int, forced: int) -> None:
    sampler = PatchSampler(cases, (8, 12, 12), batch_size, crop_size=(12, 18, 16))
    assert sampler.num_forced == forced
    rng = np.random.default_rng(2)
    shares = []
    for _ in range(40):
        specs = sampler.draw(rng)
        assert [s.force_foreground for s in specs] == [False] * (batch_size - forced) + [True] * forced
        has = [_patch_has_foreground(sampler, s) for s in specs]
        for spec, h in zip(specs, has, strict=True):
            if spec.force_foreground:
                assert spec.label in (1, 2)
                assert _patch_has_foreground(sampler, spec, spec.label)
            assert h or not spec.force_foreground
        shares.append(np.mean(has))
    assert np.mean(shares) >= forced / batch_size


def test_without_oversampling_the_share_is_that_of_random_crops(cases: PreprocessedCases) -> None:
    rng = np.random.default_rng(3)
    random = PatchSampler(cases, (6, 8, 8), 9, oversample_foreground=0.0)
    forced = PatchSampler(cases, (6, 8, 8), 9, oversample_foreground=0.33)
    assert random.num_forced == 0
    share_random = np.mean([_patch_has_foreground(random, s) for _ in range(30) for s in random.draw(rng)])
    share_forced = np.mean([_patch_has_foreground(forced, s) for _ in range(30) for s in forced.draw(rng)])
    assert share_random < 1 / 3 <= share_forced
    assert share_forced > share_random + 0.2


def test_draw_is_reproducible(cases: PreprocessedCases) -> None:
    sampler = PatchSampler(cases, (8, 12, 12), 3)
    assert sampler.draw(np.random.default_rng(7)) == sampler.draw(np.random.default_rng(7))


def test_sampler_rejects_bad_arguments(cases: PreprocessedCases) -> None:
    with pytest.raises(ValueError, match=r"crop_size.*batch_size.*oversample"):
        PatchSampler(cases, (8, 12, 12), 0, oversample_foreground=2, crop_size=(4, 12, 12))


# ---------------------------------------------------------------- ignore label and regions
def _one_case(folder: Path, seg: np.ndarray, ignore: int | None) -> PreprocessedCases:
    from autoseg.preprocessing.locations import sample_class_locations
    from autoseg.preprocessing.storage import save_case

    labels = [v for v in (1, 2, 3) if v != ignore]
    locations = sample_class_locations(seg, labels, seed=1234, ignore_label=ignore)
    data = np.zeros((1, *seg.shape), np.float32)
    save_case(
        folder,
        "case_000",
        data,
        seg.astype(np.int8),
        case_properties("case_000", seg.shape),
        locations,
        "test",
    )
    return PreprocessedCases(folder, ["case_000"])


def test_forced_crops_hold_annotations_without_foreground(tmp_path: Path) -> None:
    from autoseg.preprocessing.locations import ANNOTATED

    seg = np.full((20, 40, 36), 3, np.int8)  # unannotated but for a background corner
    seg[:4, :6, :6] = 0
    sampler = PatchSampler(_one_case(tmp_path, seg, ignore=3), (4, 6, 6), 2, oversample_foreground=1.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        for spec in sampler.draw(rng):
            assert spec.label == ANNOTATED
            _, crop = sampler.crop(spec)
            assert (crop == 0).any()


def test_forced_crops_choose_a_region_first(tmp_path: Path) -> None:
    seg = np.zeros((20, 40, 36), np.int8)
    seg[2:18, 2:38, 2:34] = 1  # a large region 1 ...
    seg[9:11, 19:21, 17:19] = 3  # ... with a tiny region 3 inside: chosen half of the time all the same
    regions = [(1, 2, 3), (3,)]
    sampler = PatchSampler(_one_case(tmp_path, seg, None), (4, 6, 6), 1, 1.0, regions=regions)
    rng = np.random.default_rng(0)
    chosen = [sampler.draw(rng)[0].label for _ in range(200)]
    assert 0.35 < chosen.count(1) / len(chosen) < 0.65 and set(chosen) == {0, 1}
