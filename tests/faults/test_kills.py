"""SIGKILL `autoseg plan`, `train` and `predict` at chosen points and rerun: as if never killed.

A few kill points here (CI); ``benchmarks/bench_faults.py --long`` tries many seeded ones.
"""

from __future__ import annotations

import pytest

# (stage, kill point): the process kills itself the N-th time it reaches the point
POINTS = [
    ("plan", "write:2"),  # plans.json written, not yet renamed
    ("plan", "case:3"),  # preprocessing, the third case
    ("train", "iteration:5"),  # mid-epoch 1 (3 iterations per epoch): resumes from epoch 0
    ("train", "write:7"),  # epoch 1's checkpoint_latest.pt written, not yet renamed
    ("predict", "write:1"),  # the first mask written, not yet renamed (its temporary file is cleaned up)
]


@pytest.mark.parametrize(("stage", "point"), POINTS)
def test_killed_stage_reruns_to_the_uninterrupted_result(scenario, stage, point):
    scn, reference = scenario
    tag = f"{stage}_{point.replace(':', '_')}"
    result = getattr(scn, f"kill_{stage}")(tag, point, reference[stage])
    assert result.killed, f"{stage} was not killed at {point}"
    assert result.identical, f"{stage} killed at {point} ({result.where}) differs after the rerun"
    if point == "write:7":
        assert result.where.endswith("checkpoint_latest.pt")


# issue 21: find-best and export-model, on a validated results folder (tests/faults/results.py)
RESULT_POINTS = [
    ("find-best", "write:3"),  # a cross-validation mask copied, not yet renamed
    ("find-best", "write:6"),  # cv_summary.json / post-processed masks
    ("export-model", "write:1"),  # the archive written, not yet renamed
]


@pytest.fixture(scope="module")
def selected(scenario, tmp_path_factory):
    """A validated, selected results folder, its selection and its exported archive (uninterrupted)."""
    from tests.faults import driver
    from tests.faults.results import validated_results

    scn, _ = scenario
    model = validated_results(scn, tmp_path_factory.mktemp("selected") / "results", select=True)
    archive = model.parent.parent / "model.zip"
    code, err = driver.autoseg(driver.export_args(scn, model.parent, archive))
    assert code == 0, err[-2000:]
    return model, driver.snapshot_selection(model), driver.snapshot_archive(archive)


@pytest.mark.parametrize(("stage", "point"), RESULT_POINTS)
def test_killed_find_best_and_export_rerun_to_the_uninterrupted_result(scenario, selected, stage, point):
    from tests.faults import driver

    scn, _ = scenario
    model, selection, archive = selected
    tag = f"{stage}_{point.replace(':', '_')}"
    if stage == "find-best":
        result = driver.kill_find_best(scn, tag, point, selection)
    else:
        result = driver.kill_export(scn, tag, point, archive, model)
    assert result.killed, f"{stage} was not killed at {point}"
    assert result.identical, f"{stage} killed at {point} ({result.where}) differs after the rerun"
