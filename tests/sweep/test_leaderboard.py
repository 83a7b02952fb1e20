"""The sweep's leaderboard statistics and the sweep file's checks (no cluster, no training)."""

from __future__ import annotations

import csv

import pytest
from scipy.stats import wilcoxon

from autoseg.sweep.leaderboard import leaderboard_rows, write_leaderboard
from autoseg.sweep.spec import read_sweep


def _cv(dice: list[tuple[float, float]]) -> dict:
    cases = [
        {"case": f"c{k}", "metrics": {"a": {"dice": x}, "b": {"dice": y}}} for k, (x, y) in enumerate(dice)
    ]
    return {"classes": {"a": [1], "b": [2]}, "cases": cases}


BASE = [(0.8, 0.6), (0.7, 0.5), (0.9, 0.7), (0.85, 0.65), (0.75, 0.55), (0.6, 0.4)]
BETTER = [(x + d, y + d) for (x, y), d in zip(BASE, [0.05, 0.1, 0.02, 0.08, 0.03, 0.12], strict=True)]


def test_rows_have_bootstrap_intervals_and_a_paired_wilcoxon():
    classes, rows = leaderboard_rows({"base": _cv(BASE), "new": _cv(BETTER)}, "base")
    assert classes == ["a", "b"]
    by_name = {r["name"]: r for r in rows}
    mean, low, high = by_name["base"]["dice"]["a"]
    assert mean == pytest.approx(sum(x for x, _ in BASE) / 6) and low < mean < high
    assert by_name["base"]["wilcoxon_p"] is None
    per_case_gain = [((x2 + y2) - (x1 + y1)) / 2 for (x1, y1), (x2, y2) in zip(BASE, BETTER, strict=True)]
    assert by_name["new"]["wilcoxon_p"] == pytest.approx(wilcoxon(per_case_gain).pvalue)
    assert by_name["new"]["pairs"] == 6


def test_files_are_written(tmp_path):
    paths = write_leaderboard(
        tmp_path, "s", {"D1": {"baseline": "base", "cv": {"base": _cv(BASE), "new": _cv(BETTER)}}}
    )
    text = paths["md"].read_text()
    assert "## D1" in text and "| baseline |" in text
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [(r["row"], r["class"]) for r in rows][:3] == [("base", "a"), ("base", "b"), ("base", "mean")]
    assert rows[3]["wilcoxon_p"] != "" and rows[0]["wilcoxon_p"] == ""


def test_sweep_file_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: D1\nconfigurations: []\nfolds: [0, 7]\nbaseline: nope\nbogus: 1\n")
    with pytest.raises(ValueError) as err:
        read_sweep(bad)
    message = str(err.value)
    for part in (
        "bad.yaml",
        "unknown key 'bogus'",
        "datasets: give a list",
        "configurations: give at least one",
        "folds [7]",
    ):
        assert part in message
    good = tmp_path / "good.yaml"
    good.write_text(
        "datasets: [D1]\nconfigurations: [3d_fullres, 2d]\nseeds: [1, 2]\nbaseline: default/2d/seed1\n"
    )
    spec = read_sweep(good)
    assert [r.name for r in spec.rows][:2] == ["default/3d_fullres/seed1", "default/3d_fullres/seed2"]
    assert spec.all_folds and spec.folds == (0, 1, 2, 3, 4)
