"""Raw-layout discovery (imagesTr/labelsTr or dataset.json's "dataset" key) and dataset resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoseg.io.dataset import (
    DatasetNotFoundError,
    RawDataset,
    load_raw_dataset,
    resolve_dataset,
    split_channel,
    strip_ending,
)
from tests.io.helpers import edit_description, make_dataset


def test_discovery_pairs_channels_and_labels(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "Dataset010_Pair", num_cases=2, channels=("T1", "T2"))
    dataset = load_raw_dataset(root)
    assert dataset.name == "Dataset010_Pair" and dataset.root == root
    assert not dataset.explicit_files
    assert dataset.channel_names == {0: "T1", 1: "T2"} and dataset.num_channels == 2
    assert dataset.file_ending == ".nii.gz"
    assert [c.name for c in dataset.cases] == ["case_000", "case_001"]
    case = dataset.cases[1]
    assert case.images == (
        root / "imagesTr" / "case_001_0000.nii.gz",
        root / "imagesTr" / "case_001_0001.nii.gz",
    )
    assert case.label == root / "labelsTr" / "case_001.nii.gz"


def test_discovery_keeps_incomplete_cases_for_validation(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "Dataset010_Pair", num_cases=3)
    (root / "labelsTr" / "case_000.nii.gz").unlink()
    (root / "imagesTr" / "case_002_0000.nii.gz").unlink()
    cases = {c.name: c for c in load_raw_dataset(root).cases}
    assert cases["case_000"].label is None and cases["case_000"].channel_files
    assert cases["case_002"].channel_files == {} and cases["case_002"].label is not None


def test_dataset_key_lists_files_relative_to_the_root(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "Dataset011_Listed", num_cases=2)
    listing = {
        "a": {"images": ["imagesTr/case_000_0000.nii.gz"], "label": "labelsTr/case_000.nii.gz"},
        "b": {"images": [str(root / "imagesTr" / "case_001_0000.nii.gz")]},
        "broken": "not an object",
    }
    edit_description(root, dataset=listing)
    dataset = load_raw_dataset(root)
    assert dataset.explicit_files
    assert [c.name for c in dataset.cases] == ["a", "b"]
    a, b = dataset.cases
    assert a.channel_files == {0: root / "imagesTr" / "case_000_0000.nii.gz"}
    assert a.label == root / "labelsTr" / "case_000.nii.gz"
    assert b.channel_files == {0: root / "imagesTr" / "case_001_0000.nii.gz"} and b.label is None


def test_missing_or_broken_dataset_json_gives_an_empty_description(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "Dataset012_Broken", num_cases=1)
    (root / "dataset.json").write_text("{not json")
    dataset = load_raw_dataset(root)
    assert dataset.description == {} and dataset.cases == () and dataset.file_ending == ""


def test_label_properties_with_regions() -> None:
    labels = {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": 3}
    dataset = RawDataset(Path("x"), "x", {}, {0: "T1"}, labels, ".nii.gz")
    assert dataset.label_values == [0, 1, 2, 3]
    assert dataset.foreground_labels == [1, 2, 3]
    assert dataset.has_regions
    assert not RawDataset(Path("x"), "x", {}, {}, {"background": 0, "a": 1}, "").has_regions


@pytest.mark.parametrize(
    ("stem", "expected"),
    [("case_0001", ("case", 1)), ("a_b_0000", ("a_b", 0)), ("case_001", None), ("case0000", None)],
)
def test_split_channel(stem: str, expected: tuple[str, int] | None) -> None:
    assert split_channel(stem) == expected


def test_strip_ending() -> None:
    assert strip_ending("a_0000.nii.gz", ".nii.gz") == "a_0000"
    assert strip_ending("a_0000.nii", ".nii.gz") is None
    assert strip_ending("a.nii", "") is None


# --- resolve_dataset ------------------------------------------------------------------------------


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    for name in ("Dataset004_Hippocampus", "Dataset012_Liver", "Dataset012_LiverCopy"):
        (tmp_path / "raw" / name).mkdir(parents=True)
        (tmp_path / "raw" / name / "dataset.json").write_text("{}")
    return tmp_path / "raw"


def test_resolve_by_path(raw: Path) -> None:
    assert resolve_dataset(raw / "Dataset004_Hippocampus", None) == (raw / "Dataset004_Hippocampus").resolve()
    assert resolve_dataset(str(raw / "Dataset012_Liver") + "/", None) == (raw / "Dataset012_Liver").resolve()


def test_resolve_by_name(raw: Path) -> None:
    assert resolve_dataset("Dataset004_Hippocampus", raw) == (raw / "Dataset004_Hippocampus").resolve()


@pytest.mark.parametrize("number", ["4", "004"])
def test_resolve_by_number(raw: Path, number: str) -> None:
    assert resolve_dataset(number, raw) == (raw / "Dataset004_Hippocampus").resolve()


def test_resolve_ambiguous_number_lists_the_candidates(raw: Path) -> None:
    with pytest.raises(
        DatasetNotFoundError, match="Dataset012_Liver, Dataset012_LiverCopy; give the full name"
    ):
        resolve_dataset("12", raw)


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("Dataset099_Nothing", "does not exist"),
        ("99", "no folder Dataset099_"),
        ("not a dataset", "expected a folder path, a name like Dataset004_Hippocampus or a number"),
    ],
)
def test_resolve_missing(raw: Path, dataset: str, message: str) -> None:
    with pytest.raises(DatasetNotFoundError, match=message):
        resolve_dataset(dataset, raw)


def test_resolve_without_raw_root_explains_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="AUTOSEG_RAW"):
        resolve_dataset("4", None)
    with pytest.raises(FileNotFoundError):  # DatasetNotFoundError is a FileNotFoundError
        resolve_dataset("Dataset004_Hippocampus", tmp_path / "absent")
