"""``autoseg evaluate`` and ``autoseg postprocess`` through autoseg.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import autoseg.commands
from autoseg.cli import main
from autoseg.io.images import read_image
from autoseg.postprocessing.components import PostprocessingSpec, apply_postprocessing
from autoseg.utils.files import read_artifact
from tests.evaluation.helpers import SPACING, box, write_masks

SHAPE = (8, 10, 10)


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the module's subcommands in case autoseg.commands does not list it yet."""
    if "autoseg.commands.evaluate" not in autoseg.commands.COMMAND_MODULES:
        modules = (*autoseg.commands.COMMAND_MODULES, "autoseg.commands.evaluate")
        monkeypatch.setattr(autoseg.commands, "COMMAND_MODULES", modules)


def _reference() -> np.ndarray:
    seg = box(SHAPE, np.s_[2:6, 2:6, 2:5], 1)
    return box(SHAPE, np.s_[2:6, 2:6, 5:8], 2, into=seg)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """DatasetX/{dataset.json, labelsTr/} and pred/ with one island of label 1 in case b."""
    root = tmp_path / "DatasetX"
    labels = {"background": 0, "left": 1, "right": 2, "both": [1, 2]}
    root.mkdir()
    (root / "dataset.json").write_text(json.dumps({"labels": labels, "file_ending": ".nii.gz"}))
    write_masks(root / "labelsTr", {"a": _reference(), "b": _reference()})
    island = _reference()
    island[0, 0, 0] = 1
    write_masks(tmp_path / "pred", {"a": _reference(), "b": island})
    return root


def test_evaluate_classes_from_dataset_json(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred = dataset.parent / "pred"
    assert main(["evaluate", str(pred), str(dataset / "labelsTr"), "--num-workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "left" in out and "both" in out and "foreground mean" in out and str(pred / "summary.json") in out
    summary = read_artifact(pred / "summary.json", "evaluation", 1)
    assert summary["classes"] == {"left": [1], "right": [2], "both": [1, 2]}
    assert summary["mean"]["right"]["dice"] == 1.0
    assert summary["mean"]["left"]["dice"] == pytest.approx((1.0 + 96 / 97) / 2)


def test_evaluate_labels_output_and_tolerance(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    code = main(
        [
            "evaluate",
            str(tmp_path / "pred"),
            str(dataset / "labelsTr"),
            "-l",
            "2",
            "-o",
            str(out),
            "--tolerance",
            "2",
        ]
    )
    assert code == 0
    summary = read_artifact(out, "evaluation", 1)
    assert summary["classes"] == {"2": [2]} and summary["tolerance_mm"] == 2.0


def test_evaluate_without_dataset_json_finds_labels(dataset: Path, tmp_path: Path) -> None:
    (dataset / "dataset.json").unlink()
    assert main(["evaluate", str(tmp_path / "pred"), str(dataset / "labelsTr"), "--num-workers", "1"]) == 0
    summary = read_artifact(tmp_path / "pred" / "summary.json", "evaluation", 1)
    assert summary["classes"] == {"1": [1], "2": [2]}


def test_evaluate_errors_are_reported(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pred" / "b.nii.gz").unlink()
    assert main(["evaluate", str(tmp_path / "pred"), str(dataset / "labelsTr")]) == 1
    assert "1 case(s) have no prediction" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "pred"), str(dataset / "labelsTr"), "--predicted-only"]) == 0
    assert (
        main(["evaluate", str(tmp_path / "pred"), str(dataset / "labelsTr"), "--dataset-json", "nope.json"])
        == 1
    )
    assert "nope.json" in capsys.readouterr().err


def test_postprocess_flags_and_spec_file(dataset: Path, tmp_path: Path) -> None:
    pred = tmp_path / "pred"
    assert (
        main(["postprocess", str(pred), str(tmp_path / "fg"), "--foreground-lcc", "--num-workers", "1"]) == 0
    )
    island, geometry = read_image(pred / "b.nii.gz")
    cleaned, cleaned_geometry = read_image(tmp_path / "fg" / "b.nii.gz")
    assert np.array_equal(cleaned, _reference()) and cleaned_geometry == geometry
    assert geometry.spacing == pytest.approx(SPACING)
    selection = tmp_path / "selection.json"
    selection.write_text(json.dumps({"postprocessing": {"foreground_lcc": False, "class_lcc": [1]}}))
    assert main(["postprocess", str(pred), str(tmp_path / "cls"), "--spec", str(selection)]) == 0
    expected = apply_postprocessing(island, PostprocessingSpec(class_lcc=(1,)))
    assert np.array_equal(read_image(tmp_path / "cls" / "b.nii.gz")[0], expected)


def test_postprocess_argument_errors(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pred = str(tmp_path / "pred")
    assert main(["postprocess", pred, str(tmp_path / "o")]) == 1
    assert "nothing to do" in capsys.readouterr().err
    assert main(["postprocess", pred, str(tmp_path / "o"), "--spec", "x.json", "--foreground-lcc"]) == 1
    assert main(["postprocess", pred, pred, "--foreground-lcc"]) == 1
    assert "input folder" in capsys.readouterr().err


def test_broken_files_are_reported_not_raised(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (dataset / "dataset.json").write_text("{not json")
    pred, ref = str(tmp_path / "pred"), str(dataset / "labelsTr")
    assert main(["evaluate", pred, ref, "-l", "1", "--num-workers", "1"]) == 0  # -l: dataset.json unused
    assert main(["evaluate", pred, ref]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    (tmp_path / "pred" / "b.nii.gz").write_bytes(b"truncated")
    assert main(["evaluate", pred, ref, "-l", "1", "--num-workers", "1"]) == 1
    assert "b.nii.gz" in capsys.readouterr().err


def test_evaluate_takes_the_ignore_label_from_dataset_json(tmp_path: Path) -> None:
    root = tmp_path / "DatasetY"
    root.mkdir()
    labels = {"background": 0, "left": 1, "ignore": 2}
    (root / "dataset.json").write_text(json.dumps({"labels": labels, "file_ending": ".nii.gz"}))
    reference = box(SHAPE, np.s_[2:6, 2:6, 2:5], 1)
    reference[:, :, 6:] = 2  # unannotated
    write_masks(root / "labelsTr", {"a": reference})
    predicted = box(SHAPE, np.s_[2:6, 2:6, 2:5], 1)
    predicted[:, :, 7:] = 1  # false positives where nothing is annotated: they do not count
    write_masks(tmp_path / "pred", {"a": predicted})
    assert main(["evaluate", str(tmp_path / "pred"), str(root / "labelsTr"), "--num-workers", "1"]) == 0
    summary = read_artifact(tmp_path / "pred" / "summary.json", "evaluation", 1)
    assert summary["ignore_label"] == 2 and summary["classes"] == {"left": [1]}
    assert summary["mean"]["left"]["dice"] == 1.0
