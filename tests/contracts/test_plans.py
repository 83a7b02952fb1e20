"""Typed plans: schema versions refused with what to do, every problem listed, one reader."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from autoseg.contracts import PLANS_SCHEMA_VERSION, Architecture, LabelError, LabelManager, Plans, PlansError
from autoseg.planning.plans import build_plans
from autoseg.planning.presets import PlannerConfig
from tests.planning.helpers import make_fingerprint

PACKAGE = Path(__file__).resolve().parents[2] / "autoseg"


def _plans_dict() -> dict[str, Any]:
    arch = {
        "network": "plain",
        "n_stages": 3,
        "features_per_stage": [8, 16, 32],
        "kernel_sizes": [[3, 3, 3]] * 3,
        "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
    }
    full = {
        "data_identifier": "3d_fullres",
        "spacing": [1.0, 1.0, 1.0],
        "patch_size": [16, 16, 16],
        "batch_size": 2,
        "normalization_schemes": ["zscore"],
        "use_mask_for_norm": [False],
        "architecture": arch,
    }
    return {
        "kind": "plans",
        "schema_version": PLANS_SCHEMA_VERSION,
        "dataset_name": "Dataset999_T",
        "plans_name": "default",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "a": 1, "b": 2},
        "configurations": {
            "3d_fullres": full,
            "3d_lowres": {**full, "data_identifier": "3d_lowres", "next_stage": "3d_cascade_fullres"},
            "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
        },
    }


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(data))
    return path


def test_reads_a_valid_plan_with_the_cascade_resolved(tmp_path: Path) -> None:
    plans = Plans.load(_write(tmp_path, _plans_dict()))
    assert plans.planned == ("3d_fullres", "3d_lowres")
    cascade = plans.configuration("3d_cascade_fullres")
    assert cascade.patch_size == (16, 16, 16) and cascade.data_identifier == "3d_fullres"
    assert cascade.previous_stage == "3d_lowres" and cascade.next_stage is None
    assert plans.configuration("3d_lowres").next_stage == "3d_cascade_fullres"
    assert plans.num_channels == 1 and plans.labels.num_outputs == 3
    assert plans.configuration("3d_fullres").resampling.data_order == 3  # nnU-Net's default filled in
    with pytest.raises(KeyError, match="planned: 3d_fullres, 3d_lowres"):
        plans.configuration("2d")


@pytest.mark.parametrize(("version", "advice"), [(0, "older autoseg.*autoseg plan"), (99, "newer.*Upgrade")])
def test_refuses_other_schema_versions_with_what_to_do(tmp_path: Path, version: int, advice: str) -> None:
    path = _write(tmp_path, {**_plans_dict(), "schema_version": version})
    with pytest.raises(PlansError, match=advice) as err:
        Plans.load(path)
    assert str(path) in str(err.value)


def test_lists_every_problem_at_once(tmp_path: Path) -> None:
    data = _plans_dict()
    del data["dataset_name"]
    data["transpose_forward"] = [0, 0, 2]
    data["configurations"]["3d_fullres"]["batch_size"] = "two"
    data["configurations"]["3d_lowres"]["architecture"]["n_stages"] = 5
    data["configurations"]["3d_lowres"]["normalization_schemes"] = ["zscore", "ct"]
    with pytest.raises(PlansError) as err:
        Plans.load(_write(tmp_path, data))
    text = str(err.value)
    for expected in (
        "missing 'dataset_name'",
        "transpose_forward [0, 0, 2] is not a permutation",
        "3d_fullres.batch_size: expected int, got 'two'",
        "n_stages is 5",
        "3d_lowres: 2 normalization scheme(s) for 1 channel(s)",
    ):
        assert expected in text


def test_missing_and_broken_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PlansError, match=r"not found\. Run `autoseg plan"):
        Plans.load(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(PlansError, match=r"broken\.json: not valid JSON"):
        Plans.load(broken)


def test_built_plans_read_back_and_round_trip(tmp_path: Path) -> None:
    fingerprint = make_fingerprint([1.0, 1.0, 1.0], [64, 64, 64], num_cases=10)
    raw, _ = build_plans(fingerprint, PlannerConfig())
    plans = Plans.from_dict({"kind": "plans", "schema_version": PLANS_SCHEMA_VERSION, **raw})
    full = plans.configuration("3d_fullres")
    assert list(full.patch_size) == raw["configurations"]["3d_fullres"]["patch_size"]
    assert full.architecture.to_dict() == raw["configurations"]["3d_fullres"]["architecture"]
    assert Architecture.from_dict(full.architecture.to_dict()) == full.architecture
    assert plans.to_dict(with_fingerprint=False).keys() == raw.keys() - {"fingerprint"} | {
        "kind",
        "schema_version",
    }


def test_label_manager_answers_classes_regions_and_ignore() -> None:
    plain = LabelManager.from_labels({"background": 0, "a": 1, "b": 2, "ignore": 3})
    assert plain.class_values == (0, 1, 2) and plain.num_outputs == 3 and plain.ignore_label == 3
    assert plain.evaluation_classes == {"a": [1], "b": [2]} and plain.foreground_values == (1, 2)
    assert plain.all_values == (0, 1, 2, 3) and plain.names == {0: "background", 1: "a", 2: "b"}
    regions = LabelManager.from_labels(
        {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": 3}, regions_class_order=[1, 2, 3]
    )
    assert regions.has_regions and regions.num_outputs == 3
    assert regions.output_names == ("whole", "core", "enhancing")
    assert regions.regions == {"whole": (1, 2, 3), "core": (2, 3), "enhancing": (3,)}
    assert regions.to_json() == {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": 3}


def test_label_manager_refuses_bad_labels_listing_each() -> None:
    with pytest.raises(LabelError) as err:
        LabelManager.from_labels({"background": 0, "ignore": 1, "a": 2, "b": "x", "r": [1, 2]})
    text = str(err.value)
    assert "'b': 'x' is neither" in text
    assert "must be the highest value" in text and "renumber it to 3" in text
    assert "need 'regions_class_order'" in text


def test_no_module_reads_plans_as_a_dict() -> None:
    """Only autoseg/contracts reads plans.json; planning builds it (stages.py adds the run record)."""
    pattern = re.compile(r"\bplans\[|\bplans\.get\(|\bconf\[\"|\bconf\.get\(\"")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in PACKAGE.rglob("*.py")
        if path.parent.name not in ("contracts", "planning")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert [o for o in offenders if not o.startswith("stages.py")] == []
