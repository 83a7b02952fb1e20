from __future__ import annotations

import numpy as np
import pytest

from autoseg.io.dataset import load_raw_dataset
from autoseg.io.images import read_image
from autoseg.io.validation import DatasetValidationError
from autoseg.planning.fingerprint import compute_fingerprint, intensity_statistics


def test_fingerprint_measures_each_case(tiny_mr_dataset):
    dataset = load_raw_dataset(tiny_mr_dataset)
    fp = compute_fingerprint(dataset, num_workers=1)
    assert fp["num_cases"] == len(dataset.cases) == 8
    for case, entry in zip(dataset.cases, fp["cases"], strict=True):
        image, geom = read_image(case.images[0])
        assert entry["spacing"] == list(geom.spacing)
        assert entry["shape_before_crop"] == list(image.shape)
        # MR background is exactly 0: cropping to the non-zero region shrinks the case
        nz = np.argwhere(image != 0)
        assert entry["shape_after_crop"] == (nz.max(0) - nz.min(0) + 1).tolist()
        assert 0 < entry["relative_size_after_cropping"] < 1
    stats = fp["foreground_intensity_properties_per_channel"]["0"]
    assert stats["percentile_00_5"] <= stats["median"] <= stats["percentile_99_5"]
    assert stats["min"] <= stats["percentile_00_5"] and stats["max"] >= stats["percentile_99_5"]


def test_pooled_intensities_are_foreground_only(tiny_ct_aniso_dataset):
    dataset = load_raw_dataset(tiny_ct_aniso_dataset)
    fp = compute_fingerprint(dataset, num_workers=1)
    fg = []
    for case in dataset.cases:
        image, _ = read_image(case.images[0])
        label, _ = read_image(case.label)
        fg.append(image[label > 0])
    fg = np.concatenate(fg).astype(np.float64)
    stats = fp["foreground_intensity_properties_per_channel"]["0"]
    assert stats["min"] >= fg.min() and stats["max"] <= fg.max()
    # air (-1000 HU) is outside every structure, so it never enters the statistics
    assert stats["percentile_00_5"] > -500
    assert abs(stats["median"] - np.median(fg)) < 0.1 * fg.std() + 1


def test_same_result_with_any_number_of_workers(tiny_mr_dataset):
    dataset = load_raw_dataset(tiny_mr_dataset)
    assert compute_fingerprint(dataset, num_workers=1) == compute_fingerprint(dataset, num_workers=2)


def test_errors_stop_the_fingerprint(tiny_mr_dataset, tmp_path):
    import shutil

    broken = tmp_path / "Dataset903_Broken"
    shutil.copytree(tiny_mr_dataset, broken)
    (broken / "labelsTr" / "case_000.nii.gz").unlink()
    (broken / "imagesTr" / "case_001_0000.nii.gz").write_bytes(b"not an image")
    with pytest.raises(DatasetValidationError) as err:
        compute_fingerprint(load_raw_dataset(broken), num_workers=1)
    text = str(err.value)
    assert "case_000" in text and "case_001_0000.nii.gz" in text  # both problems listed


def test_intensity_statistics_of_known_samples():
    stats = intensity_statistics(np.arange(1001, dtype=np.float32))
    assert stats["mean"] == pytest.approx(500) and stats["median"] == pytest.approx(500)
    assert stats["percentile_00_5"] == pytest.approx(5) and stats["percentile_99_5"] == pytest.approx(995)
