from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from autoseg.io.dataset import load_raw_dataset
from autoseg.io.images import read_image
from autoseg.synthetic.dataset import SyntheticSpec, generate_case, generate_dataset

SMALL = (20, 32, 32)


def _read_case(root: Path, name: str, channels: int, ending: str = ".nii.gz"):
    images = [read_image(root / "imagesTr" / f"{name}_{c:04d}{ending}") for c in range(channels)]
    label, geom = read_image(root / "labelsTr" / f"{name}{ending}")
    return [a for a, _ in images], label, geom


def _best_balanced_accuracy(pos: np.ndarray, neg: np.ndarray) -> float:
    """Best balanced accuracy of any rule "x > t" or "x <= t" separating pos from neg."""
    values = np.concatenate([pos, neg]).astype(np.float64)
    is_pos = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(values, kind="stable")
    values, is_pos = values[order], is_pos[order]
    # Cut after index i (only where the value changes): predict positive above the cut.
    cut = np.flatnonzero(np.diff(values) > 0)
    pos_below = np.cumsum(is_pos)[cut]
    neg_below = np.cumsum(1 - is_pos)[cut]
    ba = 0.5 * ((pos.size - pos_below) / pos.size + neg_below / neg.size)
    return float(max(ba.max(initial=0.5), 1 - ba.min(initial=0.5)))


@pytest.fixture(scope="module")
def mr_dataset(tmp_path_factory) -> tuple[Path, SyntheticSpec]:
    spec = SyntheticSpec(num_cases=5, channels=2, classes=3, seed=3)
    return generate_dataset(tmp_path_factory.mktemp("mr") / "Dataset901_SynthMR", spec), spec


@pytest.fixture(scope="module")
def ct_dataset(tmp_path_factory) -> tuple[Path, SyntheticSpec]:
    spec = SyntheticSpec(num_cases=3, modality="ct", shape=SMALL, spacing=(2.5, 0.8, 0.8))
    return generate_dataset(tmp_path_factory.mktemp("ct") / "Dataset902_SynthCT", spec), spec


def test_layout_and_dataset_json(mr_dataset):
    root, _ = mr_dataset
    desc = json.loads((root / "dataset.json").read_text())
    assert desc["channel_names"] == {"0": "T1", "1": "T2"}
    assert desc["labels"] == {"background": 0, "class_1": 1, "class_2": 2, "class_3": 3}
    assert desc["numTraining"] == 5
    assert desc["file_ending"] == ".nii.gz"
    assert desc["name"] == "Synthetic"
    assert "synthetic" in desc["description"].lower() and "seed=3" in desc["description"]
    images = sorted(p.name for p in (root / "imagesTr").iterdir())
    labels = sorted(p.name for p in (root / "labelsTr").iterdir())
    assert images == [f"case_{i:03d}_{c:04d}.nii.gz" for i in range(5) for c in range(2)]
    assert labels == [f"case_{i:03d}.nii.gz" for i in range(5)]


def test_load_raw_dataset_pairs_cases(mr_dataset):
    root, _ = mr_dataset
    ds = load_raw_dataset(root)
    assert [c.name for c in ds.cases] == [f"case_{i:03d}" for i in range(5)]
    assert all(sorted(c.channel_files) == [0, 1] and c.label is not None for c in ds.cases)
    assert ds.num_channels == 2 and ds.foreground_labels == [1, 2, 3] and ds.file_ending == ".nii.gz"


def test_mr_files_channels_classes_and_zero_outside(mr_dataset):
    root, spec = mr_dataset
    scales = []
    for i in range(spec.num_cases):
        images, label, geom = _read_case(root, f"case_{i:03d}", 2)
        assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1, 2, 3}
        assert geom.spacing == pytest.approx(spec.spacing) and any(o != 0 for o in geom.origin)
        assert all(abs(n - s) <= 0.1 * s + 1 for n, s in zip(label.shape, spec.shape, strict=True))
        for img in images:
            assert img.dtype == np.float32 and img.shape == label.shape and img.min() >= 0
            body = img > 0
            assert 0.2 < body.mean() < 0.8  # a body with exactly zero around it
            assert body[label > 0].all()
            assert img[0, 0, 0] == img[-1, -1, -1] == 0
        assert not np.allclose(images[0], images[1])  # channels show different contrasts
        scales.append(float(np.median(images[0][images[0] > 0])))
    assert max(scales) / min(scales) > 2  # the MR intensity scale differs between cases


def test_ct_range_dtype_and_anisotropic_spacing(ct_dataset):
    root, spec = ct_dataset
    for i in range(spec.num_cases):
        (img,), label, geom = _read_case(root, f"case_{i:03d}", 1)
        assert img.dtype == np.int16 and img.min() >= -1024 and img.max() <= 3071
        assert geom.spacing == pytest.approx((2.5, 0.8, 0.8))
        assert img[0, 0, 0] < -900  # air
        assert 0 < np.median(img[label == 0][img[label == 0] > -500]) < 100  # soft tissue
        assert set(np.unique(label)) == {0, 1, 2}
    assert json.loads((root / "dataset.json").read_text())["channel_names"] == {"0": "CT"}


def test_blobs_are_defined_in_mm():
    """With 5 mm slices and 0.7 mm pixels a blob spans far more pixels in-plane than slices."""
    spec = SyntheticSpec(spacing=(5.0, 0.7, 0.7))
    ratios, mm_ratios = [], []
    for i in range(4):
        _, label, _ = generate_case(spec, i)
        idx = np.argwhere(label == 1)
        extent = idx.max(0) - idx.min(0) + 1
        ratios.append(extent[1] / extent[0])
        mm_ratios.append(extent[1] * 0.7 / (extent[0] * 5.0))
    assert np.mean(ratios) > 2.5
    assert 0.3 < np.mean(mm_ratios) < 3  # roughly round in physical space


def test_deterministic_per_seed(tmp_path):
    spec = SyntheticSpec(num_cases=2, shape=SMALL, modality="ct", channels=2)
    a = generate_dataset(tmp_path / "a", spec)
    b = generate_dataset(tmp_path / "b", spec, num_workers=2)
    c = generate_dataset(
        tmp_path / "c", SyntheticSpec(num_cases=2, shape=SMALL, modality="ct", channels=2, seed=1)
    )
    for name in [
        "imagesTr/case_001_0001.nii.gz",
        "labelsTr/case_000.nii.gz",
        "imagesTr/case_000_0000.nii.gz",
    ]:
        arr_a, geom_a = read_image(a / name)
        arr_b, geom_b = read_image(b / name)
        assert geom_a == geom_b and np.array_equal(arr_a, arr_b)
        arr_c, _ = read_image(c / name)
        assert arr_a.shape != arr_c.shape or not np.array_equal(arr_a, arr_c)
    first, second = generate_case(spec, 0), generate_case(spec, 1)
    assert not np.array_equal(first[1], second[1])


def test_shape_jitter_zero_gives_exact_shape():
    images, label, geom = generate_case(SyntheticSpec(shape=SMALL, shape_jitter=0.0), 7)
    assert label.shape == images[0].shape == geom.shape == SMALL


def test_every_class_present_and_varying():
    spec = SyntheticSpec(classes=2, shape_jitter=0.0)
    centroids, sizes = [], []
    for i in range(8):
        _, label, _ = generate_case(spec, i)
        counts = np.bincount(label.ravel(), minlength=3)
        assert counts[1] >= 200 and counts[2] >= 200
        centroids.append([np.argwhere(label == k).mean(0) for k in (1, 2)])
        sizes.append(counts[1:])
    assert np.std(centroids, axis=0).mean() > 2.0  # voxels
    assert (np.std(sizes, axis=0) / np.mean(sizes, axis=0)).min() > 0.1


@pytest.mark.parametrize("modality", ["mr", "ct"])
def test_not_separable_by_threshold_but_learnable(modality):
    """No intensity threshold isolates a class, yet each class stands out from the tissue around it.

    Balanced accuracy (mean of sensitivity and specificity) is used: plain accuracy is
    dominated by the far more numerous background voxels.
    """
    spec = SyntheticSpec(classes=2, modality=modality)
    best: dict[int, list[float]] = {1: [], 2: []}
    contrast: dict[int, list[float]] = {1: [], 2: []}
    for i in range(4):
        (img,), label, _ = generate_case(spec, i)
        body = img > 0 if modality == "mr" else img > -500
        background = img[body & (label == 0)]
        for k in (1, 2):
            voxels = img[label == k].astype(np.float64)
            best[k].append(_best_balanced_accuracy(voxels, background))
            ring = img[binary_dilation(label == k, iterations=2) & (label == 0) & body].astype(np.float64)
            spread = 1.4826 * np.median(np.abs(ring - np.median(ring)))
            contrast[k].append(abs(np.median(voxels) - np.median(ring)) / spread)
    assert min(max(v) for v in best.values()) < 0.95
    for k in (1, 2):
        assert min(contrast[k]) > 0.5 and np.mean(contrast[k]) > 1.0, contrast


def test_class_scale_makes_structures_of_different_sizes():
    plain = SyntheticSpec(shape=(24, 40, 40), distractors=False)
    scaled = SyntheticSpec(shape=(24, 40, 40), distractors=False, class_scale=(1.2, 1.8))
    ratios = []
    for i in range(4):
        a, b = generate_case(plain, i)[1], generate_case(scaled, i)[1]
        assert (b == 1).sum() > (a == 1).sum()  # both grew ...
        ratios.append((b == 2).sum() / (b == 1).sum())
    assert np.median(ratios) > 1.5  # ... class 2 to be the larger structure
    with pytest.raises(ValueError, match="class_scale"):
        SyntheticSpec(class_scale=(1.0, 0.0))
