"""The contracts after plans.json: architecture checks at load, selection, case properties, resampling."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from autoseg.contracts import Architecture, CaseProperties, ContractError, Plans, PlansError, Resampling
from autoseg.contracts.selection import Selection
from autoseg.utils.stats import mean_dice
from tests.contracts.test_plans import _plans_dict, _write

PACKAGE = Path(__file__).resolve().parents[2] / "autoseg"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"norm": "instnace"}, "unknown norm 'instnace'; did you mean 'instance'?"),
        ({"nonlinearity": "gelu"}, "unknown nonlinearity 'gelu'"),
        ({"n_stages": 2, "features_per_stage": [8, 16], "kernel_sizes": [[3] * 3] * 2}, "strides has 3"),
        ({"blocks_per_stage_encoder": [3, 3, 3]}, "plain U-Net (MONAI DynUNet) has 2 convs per stage"),
        ({"network": "resenc", "blocks_per_stage_encoder": [1, 2]}, "needs 3 entries >= 1"),
        ({"kernel_sizes": [[3, 3]] * 3}, "unsupported dimensionalities [2, 3]"),
    ],
)
def test_a_bad_architecture_fails_when_the_plans_are_loaded(
    tmp_path: Path, change: dict, expected: str
) -> None:
    data = _plans_dict()
    data["configurations"]["3d_fullres"]["architecture"].update(change)
    with pytest.raises(PlansError) as err:
        Plans.load(_write(tmp_path, data))
    text = str(err.value)
    assert "configurations.3d_fullres.architecture" in text and expected in text
    assert str(tmp_path / "plans.json") in text  # names the file


def test_an_architecture_is_checked_when_made_and_lists_every_problem() -> None:
    with pytest.raises(PlansError) as err:
        Architecture("plain", 3, (8, 16), ((3, 3, 3),) * 3, ((1, 1, 1),) * 3, norm="x")
    assert "features_per_stage has 2 entries, n_stages is 3" in str(err.value)
    assert "unknown norm 'x'" in str(err.value) and len(err.value.problems) == 2


def test_the_planner_writes_the_architecture_through_the_contract() -> None:
    """No second hand-written schema: planning's module builds an Architecture."""
    text = (PACKAGE / "planning" / "plans.py").read_text()
    assert "Architecture(" in text and '"n_stages":' not in text


def _selection() -> dict:
    return {
        "kind": "selection",
        "schema_version": 1,
        "plans_name": "default",
        "configurations": ["3d_fullres", "2d"],
        "folds": ["0", "1"],
        "postprocessing": {"foreground": False},
        "calibration": {"3d_fullres": {"temperature": 1.5}, "2d": {"temperature": 0.5}},
    }


def test_selection_is_typed_and_answers_the_questions_of_prediction(tmp_path: Path) -> None:
    path = tmp_path / "selection.json"
    path.write_text(json.dumps(_selection()))
    sel = Selection.load(path)
    assert sel.configurations == ("3d_fullres", "2d") and sel.folds == ("0", "1")
    assert sel.selects(["2d", "3d_fullres"]) and not sel.selects(["2d"])
    assert sel.temperature(["3d_fullres", "2d"]) == pytest.approx(1.0)
    assert sel.temperature(["3d_lowres"]) is None
    assert sel.to_dict() == _selection()


def test_a_bad_selection_lists_every_problem_and_names_the_file(tmp_path: Path) -> None:
    data = _selection()
    data["schema_version"] = 7
    data["folds"] = "0"
    data["configurations"] = []
    path = tmp_path / "selection.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ContractError) as err:
        Selection.load(path)
    text = str(err.value)
    assert str(path) in text and "schema_version=7" in text and "selection.folds: expected list" in text
    assert "configurations: empty" in text and "find-best" in text


READS_SELECTION = r"selection(\.json)?\"?\)?\.(read_text|get\()|selection\[\"|json\.loads\(selection"


def test_only_the_contract_reads_selection_json() -> None:
    offenders = [
        f"{p.relative_to(PACKAGE)}:{n}"
        for p in PACKAGE.rglob("*.py")
        if p.parent.name != "contracts"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(
            r"selection(\.json)?\"?\)?\.(read_text|get\()|selection\[\"|json\.loads\(selection", line
        )
    ]
    assert offenders == []


def _properties() -> CaseProperties:
    return CaseProperties(
        case="c1",
        configuration="3d_fullres",
        geometry={"shape": [4, 5, 6], "spacing": [1.0] * 3, "origin": [0.0] * 3, "direction": [1.0] * 9},
        transpose_forward=(0, 1, 2),
        transpose_backward=(0, 1, 2),
        shape_before_cropping=(4, 5, 6),
        bbox_used_for_cropping=((0, 4), (1, 5), (0, 6)),
        shape_after_cropping_and_before_resampling=(4, 4, 6),
        shape_after_resampling=(4, 4, 6),
        spacing=(1.0, 1.0, 1.0),
        target_spacing=(1.0, 1.0, 1.0),
    )


def test_case_properties_round_trip_and_refuse_bad_fields() -> None:
    props = _properties()
    assert CaseProperties.from_dict(json.loads(json.dumps(props.to_dict()))) == props
    broken = props.to_dict()
    broken["bbox_used_for_cropping"] = "everything"
    broken["resampling"] = {"seg_ordr": 0}
    del broken["spacing"]
    with pytest.raises(ContractError) as err:
        CaseProperties.from_dict(broken, where="c1.json")
    text = str(err.value)
    assert "c1.json: missing 'spacing'" in text and "c1.json.bbox_used_for_cropping" in text
    assert "unknown key 'seg_ordr' (did you mean 'seg_order'?)" in text


def test_resampling_defaults_are_nnunets_and_probabilities_follow_the_data_along_z() -> None:
    res = Resampling.from_dict({"data_order_z": 1})
    assert (res.data_order, res.seg_order, res.separate_z_anisotropy_threshold) == (3, 1, 3.0)
    assert res.probabilities_orders == (1, 1)
    assert Resampling.from_dict({"probabilities_order_z": 0, "data_order_z": 1}).probabilities_orders == (
        1,
        0,
    )
    assert list(Resampling().to_dict()) == [
        "data_order",
        "data_order_z",
        "seg_order",
        "seg_order_z",
        "probabilities_order",
        "separate_z_anisotropy_threshold",
    ]


def test_with_patch_size_records_the_override_and_keeps_the_rest(tmp_path: Path) -> None:
    plans = Plans.load(_write(tmp_path, _plans_dict()))
    before = copy.deepcopy(dict(plans.raw))
    changed = plans.with_patch_size("3d_fullres", [8, 8, 8], "trainer.patch_size")
    assert changed.configuration("3d_fullres").patch_size == (8, 8, 8)
    assert changed.configuration("3d_cascade_fullres").patch_size == (8, 8, 8)  # inherits it
    assert changed.configuration("3d_lowres").patch_size == (16, 16, 16)
    assert changed.overrides == ("3d_fullres.patch_size=[8, 8, 8] (trainer.patch_size)",)
    assert dict(plans.raw) == before  # the original is untouched
    with pytest.raises(PlansError, match=r"does not fit 3d_fullres"):
        plans.with_patch_size("3d_fullres", [8, 8], "trainer.patch_size")


def test_one_mean_dice_skips_undefined_values() -> None:
    assert mean_dice([0.25, None, np.nan, 0.75]) == pytest.approx(0.5)
    assert mean_dice([]) is None and mean_dice([None, float("nan")]) is None
    sources = [p.read_text() for p in PACKAGE.rglob("*.py")]
    assert sum("def _mean_dice(" in s or "def mean_dice(" in s for s in sources) == 1
