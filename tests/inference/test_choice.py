"""One decision of configurations, folds and post-processing for `autoseg predict` and the container."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoseg.inference.choice import choose
from autoseg.inference.model import open_model
from tests.contracts.test_plans import _plans_dict


def _model(root: Path, folds: dict[str, list[str]], selection: dict | None) -> Path:
    """A model folder: each configuration's plans.json and (empty) checkpoints; selection.json if given."""
    for config, names in folds.items():
        folder = root / "default" / config
        folder.mkdir(parents=True)
        (folder / "plans.json").write_text(json.dumps(_plans_dict()))
        for fold in names:
            (folder / f"fold_{fold}").mkdir()
            (folder / f"fold_{fold}" / "checkpoint_final.pt").write_bytes(b"")
    if selection is not None:
        body = {"kind": "selection", "schema_version": 1, "plans_name": "default", **selection}
        (root / "selection.json").write_text(json.dumps(body))
    return root


SELECTED = {
    "configurations": ["3d_lowres", "3d_fullres"],
    "folds": ["0", "1"],
    "postprocessing": {"foreground_lcc": True, "class_lcc": [2]},
    "calibration": {"3d_fullres": {"temperature": 2.0}, "3d_lowres": {"temperature": 1.0}},
}


def test_predict_and_the_container_decide_the_same(tmp_path: Path) -> None:
    root = _model(tmp_path, {"3d_fullres": ["0", "1", "2"], "3d_lowres": ["0", "1", "2"]}, SELECTED)
    with open_model(root) as model:
        cli = choose(model)  # `autoseg predict` without -c
        container = choose(model, model.configurations())  # the archive's configurations, sorted
    for choice in (cli, container):
        assert choice.configurations == ["3d_lowres", "3d_fullres"]  # the selection's order
        assert choice.folds == (("0", "1"), ("0", "1")) and choice.uses_selection
        assert choice.postprocessing is not None and choice.postprocessing.class_lcc == (2,)
        assert choice.temperature == pytest.approx(1.5)


def test_other_configurations_or_no_postprocessing_leave_the_selection_out(tmp_path: Path) -> None:
    root = _model(tmp_path, {"3d_fullres": ["0", "1", "2"], "3d_lowres": ["0"]}, SELECTED)
    with open_model(root) as model:
        single = choose(model, ["3d_fullres"])
        plain = choose(model, None, ["0"], postprocessing=False)
        with pytest.raises(FileNotFoundError, match=r"fold\(s\) 1 are not trained"):
            choose(model, ["3d_lowres", "3d_fullres"])  # the selection's folds 0, 1: lowres lacks fold 1
    assert single.configurations == ["3d_fullres"] and not single.uses_selection
    assert single.folds == (("0", "1", "2"),) and single.postprocessing is None
    assert single.temperature == pytest.approx(2.0)
    assert plain.folds == (("0",), ("0",))
    assert plain.postprocessing is None and plain.uses_selection


def test_without_a_selection_one_trained_configuration_or_a_clear_error(tmp_path: Path) -> None:
    one = _model(tmp_path / "one", {"3d_fullres": ["0"]}, None)
    with open_model(one) as model:
        assert choose(model).configurations == ["3d_fullres"]
    two = _model(tmp_path / "two", {"3d_fullres": ["0"], "3d_lowres": ["0"]}, None)
    with open_model(two) as model:
        with pytest.raises(ValueError, match=r"choose a configuration with -c \(3d_fullres, 3d_lowres\)"):
            choose(model)
        assert choose(model, model.configurations()).configurations == ["3d_fullres", "3d_lowres"]
