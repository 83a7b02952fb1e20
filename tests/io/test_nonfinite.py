"""Non-finite intensities (NIfTI too) and label maps without foreground: refused, or replaced and recorded."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from autoseg.cli import main
from autoseg.io.dataset import load_raw_dataset
from autoseg.io.images import read_image, write_image
from autoseg.io.validation import validate_dataset
from tests.io.helpers import SHAPE, geometry, image_array, label_array, make_dataset


def validate(root: Path) -> list:
    return validate_dataset(load_raw_dataset(root), num_workers=0)


def with_nonfinite(root: Path, case: str = "case_000", ending: str = ".nii.gz") -> Path:
    image = image_array(0)
    image[0, 0, :2] = np.nan
    image[1, 1, :1] = -np.inf
    path = root / "imagesTr" / f"{case}_0000{ending}"
    write_image(image, geometry(), path)
    return path


@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
def test_nifti_reads_keep_nan_and_inf_where_they_are(tmp_path, ending):
    image = image_array(0).astype(np.float64)
    image[2, 3, 4], image[7, 9, 11], image[0, 0, 0] = np.nan, np.inf, -np.inf
    write_image(image, geometry(), tmp_path / f"x{ending}")
    read, _ = read_image(tmp_path / f"x{ending}")  # ITK alone gives 0 at these three voxels
    assert read.dtype == np.float64 and np.array_equal(read, image, equal_nan=True)


def test_nonfinite_nifti_voxels_are_errors_listed_with_every_other_problem(tmp_path):
    root = make_dataset(tmp_path / "Dataset980_Nan")
    with_nonfinite(root, "case_000")
    with_nonfinite(root, "case_002", ".nii.gz")
    write_image(np.full(SHAPE, 7, np.uint8), geometry(), root / "labelsTr" / "case_001.nii.gz")
    problems = validate(root)
    assert [(p.severity, p.path) for p in problems] == [
        ("error", "imagesTr/case_000_0000.nii.gz"),
        ("error", "labelsTr/case_001.nii.gz"),
        ("error", "imagesTr/case_002_0000.nii.gz"),
    ]
    assert problems[0].message.startswith("2 NaN and 1 infinite voxel values (of 960)")
    assert "--allow-nonfinite VALUE" in problems[0].message


def plan_args(root: Path, pre: Path, *extra: str) -> list[str]:
    return ["plan", str(root), f"paths.preprocessed={pre}", "num_folds=2", "-c", "3d_fullres", *extra]


def test_plan_refuses_nonfinite_then_replaces_them_when_allowed(tmp_path, capsys, caplog):
    root = make_dataset(tmp_path / "Dataset981_Nan", num_cases=4)
    with_nonfinite(root, "case_001")
    pre = tmp_path / "pre"
    assert main(plan_args(root, pre, "--num-workers", "1")) == 1
    err = capsys.readouterr().err
    assert "imagesTr/case_001_0000.nii.gz: 2 NaN and 1 infinite voxel values" in err
    assert not (pre / root.name / "fingerprint.json").exists()
    with caplog.at_level(logging.WARNING):
        assert main(plan_args(root, pre, "--num-workers", "1", "--allow-nonfinite", "-5")) == 0
    assert (
        "replaced by -5 in 1 file(s)" in caplog.text
        and "imagesTr/case_001_0000.nii.gz (3 voxels)" in caplog.text
    )
    plans = json.loads((pre / root.name / "default" / "plans.json").read_text())
    record = {"replaced_with": -5.0, "files": {"imagesTr/case_001_0000.nii.gz": 3}}
    assert plans["nonfinite_intensities"] == record
    for data in (pre / root.name / "default" / "3d_fullres").glob("case_*[0-9].npy"):
        assert np.isfinite(np.load(data)).all()


def test_no_foreground_anywhere_is_an_error_and_one_empty_case_a_warning(tmp_path):
    root = make_dataset(tmp_path / "Dataset982_Empty")
    empty = np.zeros(SHAPE, np.uint8)
    write_image(empty, geometry(), root / "labelsTr" / "case_001.nii.gz")
    problems = validate(root)
    assert [(p.severity, p.path) for p in problems] == [("warning", "labelsTr/case_001.nii.gz")]
    assert problems[0].message.startswith("no foreground")
    for case in ("case_000", "case_002"):
        write_image(empty, geometry(), root / "labelsTr" / f"{case}.nii.gz")
    problems = validate(root)
    assert (
        problems[0].severity == "error" and "no foreground in any of the 3 label maps" in problems[0].message
    )
    assert main(plan_args(root, tmp_path / "pre", "--num-workers", "1")) == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_label_files_preprocess_to_the_same_integer_seg(tmp_path, dtype):
    runs = {}
    for kind in ("uint8", "float"):
        root = make_dataset(tmp_path / kind / "Dataset983_Labels", num_cases=4)
        if kind == "float":
            for i in range(4):
                write_image(
                    label_array().astype(dtype), geometry(), root / "labelsTr" / f"case_{i:03d}.nii.gz"
                )
        pre = tmp_path / kind / "pre"
        assert main(plan_args(root, pre, "--num-workers", "1")) == 0
        runs[kind] = np.load(pre / root.name / "default" / "3d_fullres" / "case_002_seg.npy")
    assert runs["float"].dtype == np.int8 and np.array_equal(runs["float"], runs["uint8"])
    assert set(np.unique(runs["float"])) >= {0, 1, 2}
