"""evaluate_arrays and evaluate_folders on crafted label maps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from autoseg.evaluation.evaluate import (
    METRICS,
    classes_from_labels,
    evaluate_arrays,
    evaluate_folders,
    pair_cases,
)
from autoseg.evaluation.surface import image_diagonal_mm
from autoseg.utils.files import read_artifact
from tests.evaluation.helpers import SPACING, box, write_masks

SHAPE = (6, 8, 10)
CLASSES = {"a": [1], "b": [2], "a+b": [1, 2]}


def _two_labels() -> np.ndarray:
    seg = box(SHAPE, np.s_[1:4, 1:4, 1:5], 1)
    return box(SHAPE, np.s_[1:4, 4:7, 1:5], 2, into=seg)


def test_classes_from_labels() -> None:
    labels: dict[str, int | list[int]] = {"background": 0, "edema": 1, "enhancing": 2, "whole": [1, 2]}
    labels["ignore"] = 3
    assert classes_from_labels(labels) == {"edema": [1], "enhancing": [2], "whole": [1, 2]}
    assert classes_from_labels({"bg": 0, "x": [2, 1, 2]}) == {"x": [1, 2]}


def test_identical_and_region_and_empty_prediction() -> None:
    ref = _two_labels()
    pred = ref.copy()
    pred[pred == 2] = 0  # label 2 missed entirely
    m = evaluate_arrays(pred, ref, SPACING, CLASSES, tolerance_mm=1.0)
    assert list(m["a"]) == list(METRICS)
    assert m["a"]["dice"] == 1.0 and m["a"]["hd95"] == 0.0 and m["a"]["nsd"] == 1.0
    assert m["b"]["dice"] == 0.0 and m["b"]["iou"] == 0.0 and m["b"]["nsd"] == 0.0
    assert m["b"]["hd95"] == pytest.approx(image_diagonal_mm(SHAPE, SPACING))
    assert (m["b"]["tp"], m["b"]["fn"], m["b"]["n_pred"], m["b"]["n_ref"]) == (0, 36, 0, 36)
    assert m["a+b"]["dice"] == pytest.approx(2 * 36 / 108)
    assert sum(int(m["a+b"][k] or 0) for k in ("tp", "fp", "fn", "tn")) == pred.size


def test_both_empty_is_none_and_empty_reference() -> None:
    ref = _two_labels()
    m = evaluate_arrays(ref, ref, SPACING, {"absent": [5]})
    assert all(m["absent"][k] is None for k in ("dice", "iou", "hd95", "nsd"))
    assert m["absent"]["tn"] == ref.size
    pred = box(SHAPE, np.s_[0:1, 0:1, 0:1], 5)  # a label that the reference does not have
    m = evaluate_arrays(pred, ref, SPACING, {"absent": [5]})
    assert m["absent"]["dice"] == 0.0 and m["absent"]["nsd"] == 0.0 and m["absent"]["fp"] == 1


def test_ignore_label_hides_voxels() -> None:
    ref = _two_labels()
    pred = ref.copy()
    pred[4, 1:4, 1:5] = 1  # a false-positive slab on top of label 1 ...
    ref[4, :, :] = 255  # ... where the reference is ignored
    m = evaluate_arrays(pred, ref, SPACING, {"a": [1]}, ignore_label=255)
    assert m["a"]["dice"] == 1.0 and m["a"]["fp"] == 0 and m["a"]["hd95"] == 0.0
    assert m["a"]["tn"] == pred.size - 80 - 36
    unignored = evaluate_arrays(pred, ref, SPACING, {"a": [1]})
    assert unignored["a"]["fp"] == 12


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    ref = _two_labels()
    missed_b = ref.copy()
    missed_b[missed_b == 2] = 0
    only_a = ref.copy()
    only_a[only_a == 2] = 0
    refs = {"case_a": ref, "case_b": ref, "case_c": only_a}
    preds = {"case_a": ref, "case_b": missed_b, "case_c": only_a}
    return write_masks(tmp_path / "pred", preds), write_masks(tmp_path / "ref", refs)


def test_evaluate_folders_summary(tmp_path: Path) -> None:
    pred, ref = _folders(tmp_path)
    out = tmp_path / "summary.json"
    summary = evaluate_folders(pred, ref, CLASSES, num_workers=1, output=out)
    assert [c["case"] for c in summary["cases"]] == ["case_a", "case_b", "case_c"]
    assert summary["cases"][1]["prediction"].endswith("case_b.nii.gz")
    b = [c["metrics"]["b"]["dice"] for c in summary["cases"]]
    assert b == [1.0, 0.0, None]  # case_c has label 2 in neither: skipped by the mean
    assert summary["mean"]["b"]["dice"] == 0.5
    assert summary["mean"]["a"]["dice"] == 1.0
    assert summary["mean"]["b"]["hd95"] == pytest.approx(image_diagonal_mm(SHAPE, SPACING) / 2)
    a_b = summary["mean"]["a+b"]["dice"]
    assert summary["foreground_mean"]["dice"] == pytest.approx((1.0 + 0.5 + a_b) / 3)
    written = read_artifact(out, "evaluation", 1)
    assert written["cases"][2]["metrics"]["b"]["dice"] is None
    assert written["mean"] == json.loads(json.dumps(summary["mean"]))
    assert written["classes"] == CLASSES


def test_evaluate_folders_in_parallel_matches(tmp_path: Path) -> None:
    pred, ref = _folders(tmp_path)
    one = evaluate_folders(pred, ref, CLASSES, num_workers=1)
    two = evaluate_folders(pred, ref, CLASSES, num_workers=2, cases=["case_b", "case_a"])
    assert two["cases"] == one["cases"][:2]


def test_unpaired_files_are_all_listed(tmp_path: Path) -> None:
    pred, ref = _folders(tmp_path)
    (pred / "case_b.nii.gz").rename(pred / "case_x.nii.gz")
    (pred / "case_c.nii.gz").unlink()
    with pytest.raises(ValueError) as err:
        evaluate_folders(pred, ref, CLASSES, num_workers=1)
    message = str(err.value)
    assert "2 case(s) have no prediction" in message and "case_b, case_c" in message
    assert "1 case(s) have no reference" in message and "case_x" in message
    with pytest.raises(ValueError, match=r"no prediction .*case_c"):
        pair_cases(pred, ref, cases=["case_a", "case_c"])
    assert [c for c, _, _ in pair_cases(pred, ref, cases=["case_a"])] == ["case_a"]


def test_mismatched_shape_or_spacing_names_the_files(tmp_path: Path) -> None:
    pred, ref = _folders(tmp_path)
    write_masks(pred, {"case_a": np.zeros((6, 8, 9), np.uint8)})
    write_masks(pred, {"case_b": _two_labels()}, spacing=(2.0, 1.0, 0.6))
    with pytest.raises(ValueError) as err:
        evaluate_folders(pred, ref, CLASSES, num_workers=1)
    message = str(err.value)
    assert "2 prediction(s) do not match" in message
    assert "case_a.nii.gz: shape (6, 8, 9)" in message and "case_b.nii.gz: spacing" in message


def test_spacing_within_tolerance_is_accepted(tmp_path: Path) -> None:
    pred, ref = _folders(tmp_path)
    write_masks(pred, {"case_a": _two_labels()}, spacing=(2.0005, 1.0, 0.5))
    summary = evaluate_folders(pred, ref, {"a": [1]}, num_workers=1)
    assert not math.isnan(summary["mean"]["a"]["dice"])
