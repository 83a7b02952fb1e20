"""Dataset validation: one test per bad input, each on a small dataset broken in one place."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.io.dataset import load_raw_dataset
from autoseg.io.images import read_image, write_image
from autoseg.io.validation import (
    DatasetValidationError,
    LoadedCase,
    Problem,
    check_case_content,
    check_case_headers,
    check_structure,
    format_problems,
    load_and_check_case,
    raise_for_problems,
    validate_dataset,
)
from tests.io.helpers import SHAPE, edit_description, geometry, image_array, make_dataset

REAL_DATASET = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "Dataset004_Hippocampus"


def validate(root: Path, **kwargs) -> list[Problem]:
    return validate_dataset(load_raw_dataset(root), num_workers=1, **kwargs)


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def warnings(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "warning"]


def only_error(problems: list[Problem]) -> Problem:
    """The single error found; fails listing every problem otherwise."""
    found = errors(problems)
    assert len(found) == 1, format_problems(problems)
    return found[0]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "Dataset999_Test")


# --- valid datasets -----------------------------------------------------------------------------


def test_valid_dataset_has_no_problems(root: Path) -> None:
    assert validate(root) == []
    assert format_problems([]) == "0 errors, 0 warnings"


def test_valid_multichannel_dataset_loads_channels_in_order(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "Dataset998_Multi", channels=("T1", "T2", "FLAIR"))
    dataset = load_raw_dataset(root)
    loaded, problems = load_and_check_case(dataset.cases[1], dataset)
    assert problems == []
    assert isinstance(loaded, LoadedCase)
    assert loaded.name == "case_001"
    assert loaded.images.shape == (3, *SHAPE) and loaded.images.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(loaded.images[c], image_array(10 + c))
    assert loaded.label is not None and loaded.label.dtype == np.uint8  # as stored: 1 byte a voxel
    assert sorted(np.unique(loaded.label).tolist()) == [0, 1, 2]
    assert loaded.geometry == read_image(dataset.cases[1].images[0])[1]


def test_2d_dataset_is_valid_and_loads_with_a_unit_z_axis(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "Dataset997_Flat", shape=(10, 12))
    dataset = load_raw_dataset(root)
    assert validate(root) == []
    loaded, _ = load_and_check_case(dataset.cases[0], dataset)
    assert loaded is not None
    assert loaded.images.shape == (1, 1, 10, 12)
    assert loaded.label is not None and loaded.label.shape == (1, 10, 12)
    assert loaded.geometry.ndim == 2


def test_float_label_with_integer_values_is_accepted_and_loaded_as_int16(root: Path) -> None:
    path = root / "labelsTr" / "case_000.nii.gz"
    label, geom = read_image(path)
    write_image(label.astype(np.float32), geom, path)
    dataset = load_raw_dataset(root)
    loaded, problems = load_and_check_case(dataset.cases[0], dataset)
    assert problems == []
    assert loaded is not None and loaded.label is not None
    assert loaded.label.dtype == np.int16
    np.testing.assert_array_equal(loaded.label, label)


@pytest.mark.realdata
def test_real_hippocampus_dataset_validates_without_errors_in_parallel() -> None:
    if not REAL_DATASET.is_dir():
        pytest.skip(f"{REAL_DATASET} is absent")
    problems = validate_dataset(load_raw_dataset(REAL_DATASET), num_workers=4)
    assert errors(problems) == [], format_problems(problems)


# --- dataset.json ---------------------------------------------------------------------------------


def test_missing_dataset_json(root: Path) -> None:
    (root / "dataset.json").unlink()
    problem = only_error(validate(root))
    assert problem.path == "dataset.json"
    assert "not found" in problem.message and "file_ending" in problem.message


def test_unparsable_dataset_json(root: Path) -> None:
    (root / "dataset.json").write_text('{"labels": {"background": 0,}')
    problem = only_error(validate(root))
    assert problem.path == "dataset.json"
    assert "not valid JSON" in problem.message and "line 1" in problem.message


def test_dataset_json_not_an_object(root: Path) -> None:
    (root / "dataset.json").write_text("[1, 2, 3]")
    problem = only_error(validate(root))
    assert "must be a JSON object" in problem.message and "list" in problem.message


@pytest.mark.parametrize("key", ["channel_names", "labels", "file_ending"])
def test_missing_required_key(root: Path, key: str) -> None:
    edit_description(root, **{key: None})
    problem = only_error(check_structure(load_raw_dataset(root)))
    assert problem.path == "dataset.json"
    assert f'missing "{key}"' in problem.message


def test_missing_num_training_is_a_warning(root: Path) -> None:
    edit_description(root, numTraining=None)
    problems = validate(root)
    assert errors(problems) == []
    assert ['"numTraining"' in p.message for p in problems] == [True]


def test_num_training_mismatch_is_only_a_warning(root: Path) -> None:
    edit_description(root, numTraining=5)
    problems = validate(root)
    assert errors(problems) == []
    [problem] = warnings(problems)
    assert problem.path == "dataset.json"
    assert '"numTraining" is 5 but 3 cases were found' in problem.message


@pytest.mark.parametrize(
    ("labels", "extra", "expected"),
    [
        ({"liver": 1, "tumor": 2}, {}, 'add "background": 0'),
        ({"background": 0, "liver": "one"}, {}, "label \"liver\" has value 'one'"),
        ({"background": 0, "liver": 1.5}, {}, "must be integers"),
        ({"background": 0, "liver": 1, "tumor": 3}, {}, "[2] missing"),
        ({"background": 0, "ignore": 1, "liver": 2}, {}, "label 'ignore' = 1 must be the highest value"),
        ({"0": "background", "1": "liver"}, {}, "invert it to name -> value"),
        ({"background": 0, "whole": [1, 2], "core": [2]}, {}, "need 'regions_class_order'"),
        ({"background": 0, "liver": -1}, {}, "negative label values [-1]"),
    ],
)
def test_bad_labels(root: Path, labels: dict, extra: dict, expected: str) -> None:
    edit_description(root, labels=labels, **extra)
    problems = check_structure(load_raw_dataset(root))
    assert any(p.path == "dataset.json" and expected in p.message for p in errors(problems)), problems


def test_regions_and_ignore_label_are_accepted(root: Path) -> None:
    labels = {"background": 0, "whole": [1, 2], "core": [2], "ignore": 3}
    edit_description(root, labels=labels, regions_class_order=[1, 2])
    assert check_structure(load_raw_dataset(root)) == []


def test_unsupported_file_ending_suggests_the_nearest(root: Path) -> None:
    edit_description(root, file_ending="nii.gz")
    problems = check_structure(load_raw_dataset(root))
    assert any("\"file_ending\" 'nii.gz' is not supported" in p.message for p in problems)
    assert any('did you mean ".nii.gz"?' in p.message for p in problems)


@pytest.mark.parametrize("folder", ["imagesTr", "labelsTr"])
def test_missing_folder(root: Path, folder: str) -> None:
    for f in (root / folder).iterdir():
        f.unlink()
    (root / folder).rmdir()
    problems = check_structure(load_raw_dataset(root))
    assert any(p.path == folder and "folder not found" in p.message for p in errors(problems))


# --- case completeness and naming ----------------------------------------------------------------


def test_missing_channel(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "Dataset996_Two", channels=("T1", "T2"))
    (root / "imagesTr" / "case_001_0001.nii.gz").unlink()
    problem = only_error(validate(root))
    assert problem.path == "imagesTr/case_001_0001.nii.gz"
    assert 'missing channel 1 (T2) of case "case_001"' in problem.message


def test_channel_not_declared(root: Path) -> None:
    write_image(image_array(5), geometry(), root / "imagesTr" / "case_002_0001.nii.gz")
    problem = only_error(validate(root))
    assert problem.path == "imagesTr/case_002_0001.nii.gz"
    assert (
        'channel index 1 is not declared in dataset.json "channel_names" (declared: 0 (MRI))'
        in problem.message
    )


def test_label_without_images(root: Path) -> None:
    (root / "imagesTr" / "case_002_0000.nii.gz").unlink()
    edit_description(root, numTraining=3)
    problem = only_error(validate(root))
    assert problem.path == "labelsTr/case_002.nii.gz"
    assert "label without images" in problem.message and "imagesTr/case_002_0000.nii.gz" in problem.message


def test_image_without_label(root: Path) -> None:
    (root / "labelsTr" / "case_000.nii.gz").unlink()
    problem = only_error(validate(root))
    assert problem.path == "imagesTr/case_000_0000.nii.gz"
    assert "image without label" in problem.message and "labelsTr/case_000.nii.gz" in problem.message


def test_misnamed_files_are_warnings_naming_the_file(root: Path) -> None:
    write_image(image_array(1), geometry(), root / "imagesTr" / "case_009.nii.gz")
    (root / "imagesTr" / "notes.txt").write_text("scanner protocol")
    (root / "labelsTr" / "case_007.nii").write_bytes(b"")
    (root / "imagesTr" / ".DS_Store").write_bytes(b"")
    problems = validate(root)
    assert errors(problems) == []
    assert {p.path for p in warnings(problems)} == {
        "imagesTr/case_009.nii.gz",
        "imagesTr/notes.txt",
        "labelsTr/case_007.nii",
    }
    assert any("rename it, e.g. to case_009_0000.nii.gz" in p.message for p in problems)


def test_a_nii_file_beside_the_nii_gz_file_is_an_error(root: Path) -> None:
    # ITK would read labelsTr/case_000.nii.gz's voxels from the empty case_000.nii (all background)
    (root / "labelsTr" / "case_000.nii").write_bytes(b"")
    problem = only_error(validate(root))
    assert problem.path == "labelsTr/case_000.nii.gz"
    assert "case_000.nii lies beside it" in problem.message and "remove or rename" in problem.message


# --- headers --------------------------------------------------------------------------------------


def test_shape_mismatch_between_image_and_label(root: Path) -> None:
    write_image(
        np.zeros((8, 10, 11), np.uint8), geometry(shape=(8, 10, 11)), root / "labelsTr" / "case_001.nii.gz"
    )
    problem = only_error(validate(root))
    assert problem.path == "labelsTr/case_001.nii.gz"
    assert (
        "shape (8, 10, 11) (z, y, x) differs from imagesTr/case_001_0000.nii.gz (8, 10, 12)"
        in problem.message
    )


def test_spacing_mismatch_between_image_and_label(root: Path) -> None:
    label, _ = read_image(root / "labelsTr" / "case_001.nii.gz")
    write_image(label, geometry(spacing=(3.0, 0.8, 0.7)), root / "labelsTr" / "case_001.nii.gz")
    problem = only_error(validate(root))
    assert problem.path == "labelsTr/case_001.nii.gz"
    assert (
        "spacing (3, 0.8, 0.7) mm differs from imagesTr/case_001_0000.nii.gz (2.5, 0.8, 0.7)"
        in problem.message
    )


def test_tiny_spacing_difference_is_tolerated(root: Path) -> None:
    label, _ = read_image(root / "labelsTr" / "case_001.nii.gz")
    write_image(label, geometry(spacing=(2.5 * (1 + 1e-6), 0.8, 0.7)), root / "labelsTr" / "case_001.nii.gz")
    assert validate(root) == []


def test_channel_vs_channel_mismatch(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "Dataset996_Two", channels=("T1", "T2"))
    path = root / "imagesTr" / "case_000_0001.nii.gz"
    write_image(image_array(1, (8, 10, 13)), geometry(shape=(8, 10, 13)), path)
    problems = validate(root)
    problem = only_error(problems)
    assert problem.path == "imagesTr/case_000_0001.nii.gz"
    assert "differs from imagesTr/case_000_0000.nii.gz" in problem.message


@pytest.mark.parametrize(
    ("changed", "word"),
    [
        ({"origin": (-10.0, 20.0, 9.0)}, "origin"),
        ({"direction": (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)}, "direction"),
    ],
)
def test_origin_or_direction_mismatch_is_a_warning(root: Path, changed: dict, word: str) -> None:
    label, _ = read_image(root / "labelsTr" / "case_002.nii.gz")
    write_image(label, geometry(**changed), root / "labelsTr" / "case_002.nii.gz")
    problems = validate(root)
    assert errors(problems) == []
    [problem] = problems
    assert problem.path == "labelsTr/case_002.nii.gz"
    assert problem.message.startswith(f"{word} (")


def test_4d_image(root: Path) -> None:
    volume = sitk.GetImageFromArray(np.zeros(SHAPE, np.float32))
    sitk.WriteImage(sitk.JoinSeries([volume, volume]), str(root / "imagesTr" / "case_000_0000.nii.gz"))
    problems = validate(root)
    problem = only_error(problems)
    assert problem.path == "imagesTr/case_000_0000.nii.gz"
    assert "4D image of shape (2, 8, 10, 12)" in problem.message and "one file per channel" in problem.message


def test_vector_image(root: Path) -> None:
    image = sitk.GetImageFromArray(np.zeros((*SHAPE, 3), np.float32), isVector=True)
    image.SetSpacing((0.7, 0.8, 2.5))
    sitk.WriteImage(image, str(root / "imagesTr" / "case_000_0000.nii.gz"))
    problem = only_error(validate(root))
    assert "vector image with 3 components" in problem.message


# --- unreadable files -----------------------------------------------------------------------------


def test_unreadable_file_is_a_problem_not_an_exception(root: Path) -> None:
    (root / "imagesTr" / "case_001_0000.nii.gz").write_bytes(b"this is not an image" * 10)
    dataset = load_raw_dataset(root)
    loaded, problems = load_and_check_case(dataset.cases[1], dataset)
    assert loaded is None
    problem = only_error(problems)
    assert problem.path == "imagesTr/case_001_0000.nii.gz"
    assert problem.message.startswith("cannot read the image header")
    assert only_error(check_case_headers(dataset.cases[1], dataset)) == problem


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_file_is_a_problem_not_an_exception(tmp_path: Path, ending: str) -> None:
    root = make_dataset(tmp_path / "Dataset995_Cut", ending=ending)
    path = root / "imagesTr" / f"case_001_0000{ending}"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    dataset = load_raw_dataset(root)
    assert check_case_headers(dataset.cases[1], dataset) == []  # the header alone is intact
    loaded, problems = load_and_check_case(dataset.cases[1], dataset)
    assert loaded is None
    problem = only_error(problems)
    assert problem.path == f"imagesTr/case_001_0000{ending}"
    assert problem.message.startswith("cannot read the image data") and "truncated" in problem.message


def test_file_cut_by_a_few_bytes_is_truncated(root: Path) -> None:
    path = root / "labelsTr" / "case_002.nii.gz"
    data = path.read_bytes()
    assert gzip.decompress(data)  # complete to begin with
    path.write_bytes(data[:-6])
    problem = only_error(validate(root))
    assert problem.path == "labelsTr/case_002.nii.gz" and "truncated" in problem.message


# --- content --------------------------------------------------------------------------------------


def test_undeclared_label_values_are_listed(root: Path) -> None:
    label = np.zeros(SHAPE, np.uint8)
    label[0, 0, :3] = [1, 3, 7]
    write_image(label, geometry(), root / "labelsTr" / "case_002.nii.gz")
    problem = only_error(validate(root))
    assert str(problem) == (
        'error: labelsTr/case_002.nii.gz: label values [3, 7] are not declared in dataset.json "labels" '
        '(declared: 0, 1, 2); add them to "labels" or fix the label file'
    )


def test_non_integer_label_values(root: Path) -> None:
    label = np.zeros(SHAPE, np.float32)
    label[1, 1, 1:3] = [0.5, 1.25]
    label[2, 2, 2] = 1.0
    write_image(label, geometry(), root / "labelsTr" / "case_000.nii.gz")
    problem = only_error(validate(root))
    assert problem.path == "labelsTr/case_000.nii.gz"
    assert "2 voxels have non-integer label values (e.g. [0.5, 1.25])" in problem.message
    assert "nearest neighbour" in problem.message


@pytest.mark.parametrize("ending", [".nrrd", ".mha"])
@pytest.mark.parametrize(("value", "word"), [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite")])
def test_non_finite_intensities_name_the_file_and_count(
    tmp_path: Path, ending: str, value: float, word: str
) -> None:
    # NIfTI cannot carry them to autoseg: ITK's NIfTI reader turns non-finite floats into 0.
    root = make_dataset(tmp_path / "Dataset994_Nan", ending=ending)
    image = image_array(0)
    image[0, 0, :4] = value
    write_image(image, geometry(), root / "imagesTr" / f"case_000_0000{ending}")
    problem = only_error(validate(root))
    assert problem.path == f"imagesTr/case_000_0000{ending}"
    assert problem.message.startswith(f"4 {word} voxel values (of 960)")


def test_nan_and_inf_together_are_counted_separately(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "Dataset994_Nan", ending=".mha")
    image = image_array(0)
    image[0, 0, :2] = np.nan
    image[1, 1, :3] = np.inf
    write_image(image, geometry(), root / "imagesTr" / "case_000_0000.mha")
    assert only_error(validate(root)).message.startswith("2 NaN and 3 infinite voxel values")


def test_check_case_content_directly(root: Path) -> None:
    dataset = load_raw_dataset(root)
    case = dataset.cases[0]
    image = image_array(0)
    image[0, 0, 0] = np.nan
    label = np.full(SHAPE, 5, np.int16)
    problems = check_case_content(case, dataset, [image], label)
    assert [p.path for p in problems] == ["imagesTr/case_000_0000.nii.gz", "labelsTr/case_000.nii.gz"]
    assert check_case_content(case, dataset, [image_array(0)], None) == []


def test_check_content_false_reads_headers_only(root: Path) -> None:
    image = image_array(0)
    image[0, 0, 0] = np.nan
    write_image(image, geometry(), root / "imagesTr" / "case_000_0000.nii.gz")
    write_image(
        np.zeros((8, 10, 11), np.uint8), geometry(shape=(8, 10, 11)), root / "labelsTr" / "case_001.nii.gz"
    )
    problem = only_error(validate(root, check_content=False))
    assert problem.path == "labelsTr/case_001.nii.gz"


# --- files outside the dataset folder -------------------------------------------------------------


def _listing(root: Path, case: str, images: list[str], label: str) -> None:
    dataset = {
        f"case_{i:03d}": {
            "images": [f"imagesTr/case_{i:03d}_0000.nii.gz"],
            "label": f"labelsTr/case_{i:03d}.nii.gz",
        }
        for i in range(3)
    }
    dataset[case] = {"images": images, "label": label}
    edit_description(root, dataset=dataset)


def test_dataset_key_listing_inside_the_folder_is_valid(root: Path) -> None:
    _listing(root, "case_002", ["imagesTr/case_002_0000.nii.gz"], str(root / "labelsTr" / "case_002.nii.gz"))
    assert validate(root) == []


def test_dataset_key_with_parent_path_escapes(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "scan_0000.nii.gz"
    write_image(image_array(0), geometry(), outside)
    _listing(root, "case_001", ["../elsewhere/scan_0000.nii.gz"], "labelsTr/case_001.nii.gz")
    dataset = load_raw_dataset(root)
    problems = validate_dataset(dataset, num_workers=1)
    problem = only_error(problems)
    assert problem.path == "dataset.json"
    assert '"dataset" entry "case_001": images[0] points outside the dataset folder' in problem.message
    assert load_and_check_case(dataset.cases[1], dataset)[0] is None


def test_dataset_key_with_absolute_path_outside_escapes(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "case_000.nii.gz"
    write_image(np.zeros(SHAPE, np.uint8), geometry(), outside)
    _listing(root, "case_000", ["imagesTr/case_000_0000.nii.gz"], str(outside))
    problem = only_error(validate(root))
    assert '"dataset" entry "case_000": label points outside the dataset folder' in problem.message


def test_dataset_key_with_missing_file_and_bad_entry(root: Path) -> None:
    _listing(root, "case_001", ["imagesTr/nope_0000.nii.gz"], "labelsTr/case_001.nii.gz")
    desc_changes = load_raw_dataset(root).description["dataset"]
    desc_changes["case_003"] = {"images": "imagesTr/case_003_0000.nii.gz"}
    edit_description(root, dataset=desc_changes, numTraining=4)
    problems = validate(root)
    paths = {p.path for p in errors(problems)}
    assert "imagesTr/nope_0000.nii.gz" in paths
    assert any('"case_003": "images" must be a list of file paths' in p.message for p in problems)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_symlink_to_outside_the_folder_escapes(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "case_001.nii.gz"
    outside.parent.mkdir()
    (root / "labelsTr" / "case_001.nii.gz").rename(outside)
    (root / "labelsTr" / "case_001.nii.gz").symlink_to(outside)
    problem = only_error(validate(root))
    assert problem.path == "labelsTr/case_001.nii.gz"
    assert "symbolic link to a file outside the dataset folder" in problem.message
    assert str(outside) not in problem.message


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_symlink_inside_the_folder_is_fine(root: Path) -> None:
    (root / "store").mkdir()
    (root / "labelsTr" / "case_001.nii.gz").rename(root / "store" / "case_001.nii.gz")
    (root / "labelsTr" / "case_001.nii.gz").symlink_to(Path("..") / "store" / "case_001.nii.gz")
    assert validate(root) == []


# --- several problems, reporting, raising ---------------------------------------------------------


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A .nrrd dataset with six problems in four cases (one of them added)."""
    root = make_dataset(tmp_path / "Dataset993_Broken", ending=".nrrd")
    image = image_array(0)
    image[1, 1, 1] = np.nan
    write_image(image, geometry(), root / "imagesTr" / "case_000_0000.nrrd")
    write_image(np.full(SHAPE, 4, np.uint8), geometry(), root / "labelsTr" / "case_001.nrrd")
    (root / "labelsTr" / "case_002.nrrd").unlink()
    flipped = geometry(direction=(-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    write_image(image_array(3), flipped, root / "imagesTr" / "case_003_0000.nrrd")
    write_image(np.zeros(SHAPE, np.uint8), geometry(), root / "labelsTr" / "case_003.nrrd")
    return root


def test_several_problems_are_all_reported_errors_first(broken: Path) -> None:
    problems = validate(broken)
    assert [(p.severity, p.path) for p in problems] == [
        ("error", "imagesTr/case_000_0000.nrrd"),
        ("error", "labelsTr/case_001.nrrd"),
        ("error", "imagesTr/case_002_0000.nrrd"),
        ("warning", "dataset.json"),
        ("warning", "labelsTr/case_003.nrrd"),  # direction
        ("warning", "labelsTr/case_003.nrrd"),  # no foreground
    ], format_problems(problems)
    report = format_problems(problems)
    assert report.splitlines()[0] == "3 errors, 3 warnings"
    assert len(report.splitlines()) == 7
    assert str(broken) not in report  # paths are relative to the dataset folder


def test_parallel_validation_matches_serial(broken: Path) -> None:
    dataset = load_raw_dataset(broken)
    assert validate_dataset(dataset, num_workers=2) == validate_dataset(dataset, num_workers=1)


def test_raise_for_problems(broken: Path) -> None:
    problems = validate(broken)
    with pytest.raises(DatasetValidationError) as info:
        raise_for_problems(problems)
    assert info.value.problems == problems
    assert str(info.value).splitlines() == [str(p) for p in errors(problems)]
    assert isinstance(info.value, ValueError)
    raise_for_problems(warnings(problems))  # warnings alone pass
    raise_for_problems([])


def test_problem_str_and_format() -> None:
    problem = Problem("warning", "dataset.json", "something odd")
    assert str(problem) == "warning: dataset.json: something odd"
    report = format_problems([problem, Problem("error", "imagesTr/a_0000.nii.gz", "broken")])
    assert report.splitlines() == [
        "1 error, 1 warning",
        "  error: imagesTr/a_0000.nii.gz: broken",
        "  warning: dataset.json: something odd",
    ]


def test_label_values_are_counted_in_chunks_across_their_boundaries(monkeypatch):
    """The distinct label values come from bincounts of bounded chunks (a 512 x 512 x 400 label is
    not copied to int64); values that sit only at a chunk's edge are still found."""
    from autoseg.io import case_checks

    monkeypatch.setattr(case_checks, "BINCOUNT_CHUNK", 7)
    label = np.zeros((3, 5, 4), dtype=np.uint8)
    label.flat[6], label.flat[7], label.flat[59] = 3, 9, 200  # last of chunk 0, first of chunk 1, last voxel
    assert case_checks._unique_ints(label) == [0, 3, 9, 200]
    assert case_checks._unique_ints(label.astype(np.int16) - 1) == [-1, 2, 8, 199]  # negatives: np.unique


def test_crop_keeps_a_view_of_the_label_when_nothing_is_outside_the_mask():
    """A CT (no zero voxel): no hole filling, the whole image is the box, and the label is cast once
    (uint8 -> int16) instead of copied and masked; with zeros at the border, -1 marks them."""
    from autoseg.preprocessing.crop import crop_with_mask, nonzero_bbox

    images = np.full((1, 4, 5, 6), -1000.0, dtype=np.float32)
    label = np.arange(120, dtype=np.uint8).reshape(4, 5, 6) % 3
    bbox, mask = nonzero_bbox(images)
    assert bbox == [[0, 4], [0, 5], [0, 6]] and mask.all()
    _, cropped, _ = crop_with_mask(images, label, bbox, mask)
    assert cropped.dtype == np.int16 and np.array_equal(cropped, label)
    images[0, 0] = 0  # the first slice is zero: outside the mask, cropped away
    bbox, mask = nonzero_bbox(images)
    _, cropped, mask = crop_with_mask(images, label, bbox, mask)
    assert bbox[0] == [1, 4] and cropped.dtype == np.int16 and np.array_equal(cropped, label[1:])
