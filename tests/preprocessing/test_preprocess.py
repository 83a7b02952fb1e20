from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autoseg.contracts import Plans
from autoseg.io.dataset import load_raw_dataset
from autoseg.io.images import Geometry, read_geometry, read_image, write_image
from autoseg.io.problems import DatasetValidationError
from autoseg.io.validation import LoadedCase, load_and_check_case
from autoseg.preprocessing.plan import plan_hash
from autoseg.preprocessing.preprocess import (
    preprocess_case,
    preprocess_dataset,
    revert_preprocessing,
    sample_class_locations,
)
from autoseg.preprocessing.storage import case_files, is_case_complete, load_case

ORIGIN = (12.5, -30.0, 7.25)
C, S = np.cos(0.3), np.sin(0.3)
DIRECTION = (C, -S, 0.0, S, C, 0.0, 0.0, 0.0, 1.0)  # rotated 0.3 rad about z


def make_plans(
    spacing: list[float],
    transpose: list[int],
    configuration: str = "3d_fullres",
    schemes: tuple[str, ...] = ("zscore",),
) -> dict[str, Any]:
    backward = [int(a) for a in np.argsort(transpose)]
    return {
        "kind": "plans",
        "schema_version": 1,
        "dataset_name": "Dataset950_Pre",
        "plans_name": "default",
        "transpose_forward": transpose,
        "transpose_backward": backward,
        "foreground_intensity_properties_per_channel": {
            str(c): {
                "mean": 100.0,
                "median": 100.0,
                "std": 20.0,
                "min": 0.0,
                "max": 300.0,
                "percentile_00_5": 20.0,
                "percentile_99_5": 250.0,
            }
            for c in range(len(schemes))
        },
        "configurations": {
            configuration: {
                "data_identifier": f"autoseg_{configuration}",
                "spacing": spacing,
                "patch_size": [16, 16, 16],
                "batch_size": 2,
                "normalization_schemes": list(schemes),
                "use_mask_for_norm": [False] * len(schemes),
                "resampling": {
                    "data_order": 3,
                    "data_order_z": 0,
                    "seg_order": 1,
                    "seg_order_z": 0,
                    "probabilities_order": 1,
                    "separate_z_anisotropy_threshold": 3.0,
                },
                "architecture": {
                    "network": "plain",
                    "n_stages": 3,
                    "features_per_stage": [8, 16, 32],
                    "kernel_sizes": [[3, 3, 3]] * 3,
                    "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                },
            }
        },
    }


def make_case(
    shape: tuple[int, int, int], spacing: tuple[float, ...], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A body (non-zero ellipsoid with a zero border around it) holding two labelled blobs."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(
        *[(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij"
    )
    extent = [n * s for n, s in zip(shape, spacing, strict=True)]
    cz, cy, cx = [e / 2 for e in extent]
    body = ((z - cz) / (0.42 * extent[0])) ** 2 + ((y - cy) / (0.42 * extent[1])) ** 2 + (
        (x - cx) / (0.42 * extent[2])
    ) ** 2 < 1
    label = np.zeros(shape, np.int16)
    r1 = (
        ((z - cz) / (0.2 * extent[0])) ** 2
        + ((y - cy + 2) / (0.2 * extent[1])) ** 2
        + ((x - cx) / (0.2 * extent[2])) ** 2
    )
    label[r1 < 1] = 1
    r2 = (
        ((z - cz * 0.8) / (0.15 * extent[0])) ** 2
        + ((y - cy * 1.3) / (0.15 * extent[1])) ** 2
        + ((x - cx * 1.25) / (0.22 * extent[2])) ** 2
    )
    label[r2 < 1] = 2
    image = np.where(body, 100 + 40 * label + rng.normal(0, 5, shape), 0).astype(np.float32)
    label[~body] = 0
    return image, label


def write_dataset(root: Path, n: int, shape: tuple[int, int, int], spacing: tuple[float, ...]) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    desc = {
        "channel_names": {"0": "MR"},
        "labels": {"background": 0, "a": 1, "b": 2},
        "numTraining": n,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(desc))
    for i in range(n):
        image, label = make_case(shape, spacing, seed=i)
        geom = Geometry(shape=shape, spacing=spacing, origin=ORIGIN, direction=DIRECTION)
        write_image(image, geom, root / "imagesTr" / f"case_{i:03d}_0000.nii.gz")
        write_image(label.astype(np.uint8), geom, root / "labelsTr" / f"case_{i:03d}.nii.gz")
    return root


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float(np.logical_and(a, b).sum()) / max(1.0, float(a.sum() + b.sum()))


@pytest.fixture()
def aniso_dataset(tmp_path: Path) -> Path:
    # x is the coarse axis: the plan puts it first (transpose_forward [2, 0, 1])
    return write_dataset(tmp_path / "Dataset950_Pre", 3, (40, 36, 12), (0.8, 0.9, 3.0))


def test_round_trip_to_native_geometry(aniso_dataset: Path, tmp_path: Path) -> None:
    dataset = load_raw_dataset(aniso_dataset)
    loaded, problems = load_and_check_case(dataset.cases[0], dataset)
    assert loaded is not None, problems
    plans = make_plans([2.0, 1.1, 1.2], [2, 0, 1])
    data, seg, props = preprocess_case(loaded, Plans.from_dict(plans), "3d_fullres")
    assert seg is not None
    # transposed spacing (3.0, 0.8, 0.9), cropped, resampled to (2.0, 1.1, 1.2)
    assert props.spacing == pytest.approx((3.0, 0.8, 0.9)) and props.target_spacing == (2.0, 1.1, 1.2)
    cropped = props.shape_after_cropping_and_before_resampling
    assert cropped[0] < 12 and cropped[1] < 40  # the zero border was cropped
    expected = [
        round(n * s / t) for n, s, t in zip(cropped, props.spacing, props.target_spacing, strict=True)
    ]
    assert list(data.shape) == [1, *expected] and list(seg.shape) == expected
    assert data.dtype == np.float32 and set(np.unique(seg)) <= {-1, 0, 1, 2}
    assert type(props).from_dict(json.loads(json.dumps(props.to_dict()))) == props  # JSON round trip

    native = revert_preprocessing(seg, props)
    assert native.shape == loaded.label.shape == (40, 36, 12)
    out = tmp_path / "reverted.nii.gz"
    write_image(native, Geometry.from_json(dict(props.geometry)), out)
    geom, _ = read_geometry(out)
    original, _ = read_geometry(dataset.cases[0].label)
    assert geom.shape == original.shape
    np.testing.assert_allclose(geom.spacing, original.spacing, rtol=1e-6)
    np.testing.assert_allclose(geom.origin, original.origin, atol=1e-5)
    np.testing.assert_allclose(geom.direction, original.direction, atol=1e-6)
    recovered, _ = read_image(out)
    for k in (1, 2):
        assert dice(recovered == k, loaded.label == k) > 0.9, k
    assert set(np.unique(recovered)) <= {0, 1, 2}

    # probabilities (K, ...) come back as probabilities on the native grid
    probs = np.stack([(seg == k) | ((k == 0) & (seg < 0)) for k in range(3)]).astype(np.float32)
    native_probs = revert_preprocessing(probs, props)
    assert native_probs.shape == (3, 40, 36, 12)
    np.testing.assert_allclose(native_probs.sum(axis=0), 1.0, atol=1e-5)
    assert dice(native_probs.argmax(0) == 1, loaded.label == 1) > 0.9


def test_identity_transpose_and_ct_normalization(tmp_path: Path) -> None:
    image, label = make_case((10, 30, 28), (3.0, 0.8, 0.9), seed=3)
    geom = Geometry(shape=image.shape, spacing=(3.0, 0.8, 0.9), origin=ORIGIN, direction=DIRECTION)
    loaded = LoadedCase("c", image[None], label, geom)
    plans = make_plans([2.0, 1.0, 1.0], [0, 1, 2], schemes=("ct",))
    data, seg, props = preprocess_case(loaded, Plans.from_dict(plans), "3d_fullres")
    assert data.min() >= (20.0 - 100.0) / 20.0 - 1e-5 and data.max() <= (250.0 - 100.0) / 20.0 + 1e-5
    assert seg is not None
    native = revert_preprocessing(seg, props)
    assert native.shape == label.shape
    for k in (1, 2):
        assert dice(native == k, label == k) > 0.9


def test_two_d_configuration_keeps_axis_zero_spacing(tmp_path: Path) -> None:
    image, label = make_case((8, 30, 28), (3.0, 0.8, 0.9), seed=4)
    geom = Geometry(shape=image.shape, spacing=(3.0, 0.8, 0.9), origin=ORIGIN, direction=DIRECTION)
    plans = make_plans([1.0, 1.0], [0, 1, 2], configuration="2d")
    data, seg, props = preprocess_case(
        LoadedCase("c", image[None], label, geom), Plans.from_dict(plans), "2d"
    )
    assert props.target_spacing == (3.0, 1.0, 1.0)
    assert data.shape[1] == props.shape_after_cropping_and_before_resampling[0]
    assert seg is not None and revert_preprocessing(seg, props).shape == label.shape


def test_two_d_images(tmp_path: Path) -> None:
    image, label = make_case((1, 30, 28), (1.0, 0.8, 0.9), seed=5)
    geom = Geometry(shape=(30, 28), spacing=(0.8, 0.9), origin=(1.0, 2.0), direction=(1.0, 0.0, 0.0, 1.0))
    image[0, 10:20, 10:20] = 50.0  # make sure something is non-zero
    plans = make_plans([1.0, 1.0], [0, 1], configuration="2d")
    data, seg, props = preprocess_case(
        LoadedCase("c", image[None], label, geom), Plans.from_dict(plans), "2d"
    )
    assert data.shape[1] == 1 and seg is not None
    assert revert_preprocessing(seg, props).shape == (30, 28)


def test_sample_class_locations() -> None:
    seg = np.zeros((60, 60, 60), np.int8)
    seg[:30] = 1  # 108000 voxels: 10000 of them
    seg[40:42, :10, :10] = 2  # 200 voxels: all
    locs = sample_class_locations(seg, [1, 2, 3], seed=1234)
    assert locs[1].shape == (10000, 3) and locs[2].shape == (200, 3) and locs[3].shape == (0, 3)
    assert locs[1].dtype == np.int32
    assert (seg[tuple(locs[1].T)] == 1).all() and (seg[tuple(locs[2].T)] == 2).all()
    assert len({tuple(c) for c in locs[1]}) == 10000  # without replacement
    again = sample_class_locations(seg, [1, 2, 3], seed=1234)
    np.testing.assert_array_equal(locs[1], again[1])
    big = np.ones((120, 100, 100), np.int8)  # 1.2M voxels: 1% of them
    assert sample_class_locations(big, [1], seed=0)[1].shape == (12000, 3)


def test_plan_hash_ignores_training_keys() -> None:
    plans = make_plans([2.0, 1.0, 1.0], [0, 1, 2])
    base = plan_hash(Plans.from_dict(plans), "3d_fullres", [1, 2], 1234)
    plans["configurations"]["3d_fullres"]["batch_size"] = 7
    assert plan_hash(Plans.from_dict(plans), "3d_fullres", [1, 2], 1234) == base
    plans["configurations"]["3d_fullres"]["spacing"] = [2.0, 1.0, 0.9]
    assert plan_hash(Plans.from_dict(plans), "3d_fullres", [1, 2], 1234) != base


def _stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(folder.iterdir())}


def test_preprocess_dataset_is_resumable(aniso_dataset: Path, tmp_path: Path) -> None:
    dataset = load_raw_dataset(aniso_dataset)
    plans = make_plans([2.0, 1.1, 1.2], [2, 0, 1])
    out_root = tmp_path / "preprocessed"
    folder = preprocess_dataset(dataset, Plans.from_dict(plans), "3d_fullres", out_root, num_workers=2)
    assert folder == out_root / "autoseg_3d_fullres"
    digest = plan_hash(Plans.from_dict(plans), "3d_fullres", [1, 2], 1234)
    names = [c.name for c in dataset.cases]
    assert all(is_case_complete(folder, n, digest) for n in names)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    data, seg, _, locs = load_case(folder, names[0])
    assert data.shape[1:] == seg.shape[1:] and sorted(locs) == [1, 2] and len(locs[1]) > 0
    assert (np.asarray(seg[0])[tuple(locs[2].T)] == 2).all()

    first = _stamps(folder)
    preprocess_dataset(dataset, Plans.from_dict(plans), "3d_fullres", out_root, num_workers=1)
    assert _stamps(folder) == first  # nothing rewritten

    case_files(folder, names[1])["properties"].unlink()  # a half-written case
    preprocess_dataset(dataset, Plans.from_dict(plans), "3d_fullres", out_root, num_workers=1)
    second = _stamps(folder)
    changed = {name for name in first if second.get(name) != first[name]}
    assert changed == {p.name for p in case_files(folder, names[1]).values()}


def test_preprocess_dataset_reports_a_broken_case(aniso_dataset: Path, tmp_path: Path) -> None:
    broken = aniso_dataset / "imagesTr" / "case_002_0000.nii.gz"
    broken.write_bytes(broken.read_bytes()[:100])
    dataset = load_raw_dataset(aniso_dataset)
    plans = make_plans([2.0, 1.1, 1.2], [2, 0, 1])
    with pytest.raises(DatasetValidationError, match="case_002"):
        preprocess_dataset(dataset, Plans.from_dict(plans), "3d_fullres", tmp_path / "pp", num_workers=1)
    folder = tmp_path / "pp" / "autoseg_3d_fullres"
    digest = plan_hash(Plans.from_dict(plans), "3d_fullres", [1, 2], 1234)
    assert is_case_complete(folder, "case_000", digest) and not is_case_complete(folder, "case_002", digest)
    assert os.path.exists(folder)
