"""One training job of a launcher (:class:`FoldJob`) and the summary of a finished set of jobs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoseg.utils.files import write_json

__all__ = ["FoldJob", "fold_mean_dice", "summary_table", "write_summary"]


@dataclass
class FoldJob:
    """One fold of one configuration run by a launcher, and how it ended.

    ``argv``: the ``autoseg`` arguments (``train DATASET CONFIG FOLD ...``) without ``--device``,
    which the launcher adds. ``slot``: where it ran (``cpu 0``, ``gpu 1``, ``slurm 1234``).
    """

    configuration: str
    fold: int
    output: Path
    argv: list[str]
    slot: str = ""
    exit_code: int | None = None
    seconds: float = 0.0
    mean_dice: float | None = None


def fold_mean_dice(output: Path) -> float | None:
    """The mean over labels of ``validation/summary.json``'s ``mean``, None without one."""
    path = output / "validation" / "summary.json"
    try:
        mean = json.loads(path.read_text()).get("mean")
    except (OSError, ValueError):
        return None
    values = list(mean.values()) if isinstance(mean, dict) else [mean]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else None


def summary_table(jobs: Sequence[FoldJob]) -> str:
    """A text table: configuration, fold, slot, exit code, duration, final validation mean Dice."""
    rows = [("configuration", "fold", "slot", "exit", "time", "mean Dice")]
    for j in jobs:
        dice = f"{j.mean_dice:.4f}" if j.mean_dice is not None else "-"
        code = "-" if j.exit_code is None else str(j.exit_code)
        rows.append((j.configuration, str(j.fold), j.slot, code, f"{j.seconds:.0f} s", dice))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def write_summary(jobs: Sequence[FoldJob]) -> Path:
    """``all_folds_summary.json`` in the plans' results folder: one entry per job."""
    path = jobs[0].output.parents[1] / "all_folds_summary.json"
    entries = [
        {
            "configuration": j.configuration,
            "fold": j.fold,
            "slot": j.slot,
            "exit_code": j.exit_code,
            "seconds": round(j.seconds, 1),
            "mean_dice": j.mean_dice,
            "log": str(j.output / "launcher.log"),
        }
        for j in jobs
    ]
    return write_json(path, entries)
