"""The leaderboard of a sweep: per-class cross-validation Dice with 95 % confidence intervals, and a
paired Wilcoxon signed-rank test of each row against the baseline row, per dataset.

Statistics: each row's values are its out-of-fold cases (``<config>/cv_summary.json``, written by
find-best). The 95 % interval of a mean is a percentile bootstrap over cases (2000 resamples, fixed
seed: :func:`autoseg.report.stats.bootstrap_ci`). The Wilcoxon test (``scipy.stats.wilcoxon``,
two-sided) pairs each case's mean foreground Dice in the row and in the baseline row; no correction
for multiple comparisons is applied.

Files: ``leaderboard.json`` (``schema_version``; read by ``autoseg report``), ``leaderboard.md`` and
``leaderboard.csv`` in the sweep folder.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autoseg.report.stats import bootstrap_ci, paired_wilcoxon
from autoseg.utils.files import atomic_path, write_artifact

__all__ = ["LEADERBOARD_SCHEMA_VERSION", "leaderboard_rows", "write_leaderboard"]

LEADERBOARD_SCHEMA_VERSION = 1
CI_METHOD = "percentile bootstrap over cases, 2000 resamples, 95 %"
TEST_METHOD = "two-sided paired Wilcoxon signed-rank test (scipy.stats.wilcoxon) of per-case mean Dice"


def _case_dice(
    cases: Sequence[Mapping[str, Any]], classes: Sequence[str]
) -> dict[str, dict[str, float | None]]:
    """case -> {class: Dice, "mean": mean over the classes present}."""
    out: dict[str, dict[str, float | None]] = {}
    for case in cases:
        metrics = case.get("metrics", {})
        values: dict[str, float | None] = {}
        for name in classes:
            value = metrics.get(name, {}).get("dice")
            values[name] = float(value) if isinstance(value, int | float) and not math.isnan(value) else None
        present = [v for v in values.values() if v is not None]
        values["mean"] = sum(present) / len(present) if present else None
        out[str(case["case"])] = values
    return out


def leaderboard_rows(
    cv: Mapping[str, Mapping[str, Any]], baseline: str
) -> tuple[list[str], list[dict[str, Any]]]:
    """The classes and one entry per row of one dataset.

    Args:
        cv: row name -> its ``cv_summary.json`` (``classes``, ``cases``).
        baseline: the row the others are tested against.

    Returns:
        (classes, rows); a row: ``name``, ``cases``, ``dice`` {class or "mean": [mean, low, high]},
        ``wilcoxon_p`` (None for the baseline, or with fewer than 2 differing pairs), ``pairs``.
    """
    classes = sorted({c for summary in cv.values() for c in summary.get("classes", {})})
    per_case = {name: _case_dice(summary.get("cases", []), classes) for name, summary in cv.items()}
    base = per_case.get(baseline, {})
    rows = []
    for name, cases in per_case.items():
        dice = {}
        for key in [*classes, "mean"]:
            interval = bootstrap_ci([v[key] for v in cases.values()])
            dice[key] = None if interval.n == 0 else [interval.mean, interval.low, interval.high]
        p, pairs = None, 0
        if name != baseline and base:
            shared = sorted(set(cases) & set(base))
            p, pairs = paired_wilcoxon([cases[c]["mean"] for c in shared], [base[c]["mean"] for c in shared])
        rows.append({"name": name, "cases": len(cases), "dice": dice, "wilcoxon_p": p, "pairs": pairs})
    return classes, rows


def _fmt(triple: Sequence[float] | None) -> str:
    if triple is None:
        return "-"
    mean, low, high = triple
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _p(value: float | None, is_baseline: bool) -> str:
    return "baseline" if is_baseline else ("-" if value is None else f"{value:.3g}")


def markdown(board: Mapping[str, Any]) -> str:
    """The leaderboard as Markdown: one table per dataset, rows by mean Dice."""
    lines = [f"# Leaderboard of sweep {board['sweep']}", ""]
    lines += [f"Dice: mean [95 % CI] ({board['ci_method']}). p: {board['test_method']} against the baseline."]
    for dataset, entry in board["datasets"].items():
        classes = entry["classes"]
        lines += ["", f"## {dataset}", "", f"baseline: {entry['baseline']}", ""]
        lines.append("| row | cases | mean Dice | " + " | ".join(classes) + " | Wilcoxon p vs baseline |")
        lines.append("|" + " --- |" * (len(classes) + 4))
        for row in sorted(entry["rows"], key=_by_mean_dice):
            cells = [row["name"], str(row["cases"]), _fmt(row["dice"]["mean"])]
            cells += [_fmt(row["dice"][c]) for c in classes]
            cells.append(_p(row["wilcoxon_p"], row["name"] == entry["baseline"]))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _by_mean_dice(row: Mapping[str, Any]) -> float:
    mean = row["dice"]["mean"]
    return math.inf if mean is None else -mean[0]


def csv_text(board: Mapping[str, Any]) -> str:
    """One line per (dataset, row, class or ``mean``): mean, CI bounds, cases, Wilcoxon p."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["dataset", "row", "class", "dice_mean", "ci_low", "ci_high", "cases", "wilcoxon_p", "baseline"]
    )
    for dataset, entry in board["datasets"].items():
        for row in entry["rows"]:
            for key in [*entry["classes"], "mean"]:
                triple = row["dice"][key]
                p = "" if row["wilcoxon_p"] is None else f"{row['wilcoxon_p']:.6g}"
                values = ["", "", ""] if triple is None else [f"{v:.6f}" for v in triple]
                writer.writerow([dataset, row["name"], key, *values, row["cases"], p, entry["baseline"]])
    return buffer.getvalue()


def write_leaderboard(folder: Path, sweep: str, datasets: Mapping[str, Mapping[str, Any]]) -> dict[str, Path]:
    """Write ``leaderboard.{json,md,csv}`` in ``folder``.

    Args:
        datasets: dataset name -> {"baseline": row name, "cv": {row name: cv_summary}}.
    """
    board: dict[str, Any] = {
        "sweep": sweep,
        "ci_method": CI_METHOD,
        "test_method": TEST_METHOD,
        "datasets": {},
    }
    for dataset, entry in datasets.items():
        classes, rows = leaderboard_rows(entry["cv"], entry["baseline"])
        board["datasets"][dataset] = {"baseline": entry["baseline"], "classes": classes, "rows": rows}
    paths = {
        "json": write_artifact(folder / "leaderboard.json", "leaderboard", LEADERBOARD_SCHEMA_VERSION, board)
    }
    for kind, text in (("md", markdown(board)), ("csv", csv_text(board))):
        path = folder / f"leaderboard.{kind}"
        with atomic_path(path, suffix=path.suffix) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        paths[kind] = path
    return paths
