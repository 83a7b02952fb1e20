"""The report's section on sweep leaderboards (``leaderboard.json``, written by ``autoseg sweep``).

A report of ``<results>/<Dataset>`` shows every ``<results>/sweeps/*/leaderboard.json`` that ranks
this dataset, and the leaderboard of the sweep whose run folder it is
(``<results>/sweeps/<name>/runs/<row>/<Dataset>``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autoseg.report.document import Document

__all__ = ["find_leaderboards", "leaderboard_section"]

LEADERBOARD_SCHEMA_VERSION = 1


def find_leaderboards(model_root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(path, contents) of the leaderboards that rank ``model_root``'s dataset."""
    candidates = sorted((model_root.parent / "sweeps").glob("*/leaderboard.json"))
    if len(model_root.parents) > 2 and model_root.parents[1].name == "runs":
        candidates.append(model_root.parents[2] / "leaderboard.json")
    found = []
    for path in dict.fromkeys(candidates):
        try:
            board = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        version = board.get("schema_version")
        current = board.get("kind") == "leaderboard" and version == LEADERBOARD_SCHEMA_VERSION
        if current and model_root.name in board.get("datasets", {}):
            found.append((path, board))
    return found


def _fmt(triple: list[float] | None) -> str:
    return "-" if triple is None else f"{triple[0]:.3f} [{triple[1]:.3f}, {triple[2]:.3f}]"


def leaderboard_section(doc: Document, dataset: str, boards: list[tuple[Path, dict[str, Any]]]) -> None:
    """One table per leaderboard ranking ``dataset`` (nothing when there is none)."""
    if not boards:
        return
    doc.heading("Sweep leaderboards")
    for path, board in boards:
        entry = board["datasets"][dataset]
        classes = list(entry["classes"])
        doc.paragraph(
            f"Sweep {board['sweep']} ({path}); Dice: mean [95 % CI], {board['ci_method']}; "
            f"p: {board['test_method']} against {entry['baseline']}."
        )
        rows = []
        ranked = sorted(entry["rows"], key=lambda r: -(r["dice"]["mean"] or [float("-inf")])[0])
        for row in ranked:
            p = row["wilcoxon_p"]
            p_text = "baseline" if row["name"] == entry["baseline"] else ("-" if p is None else f"{p:.3g}")
            cells = [row["name"], str(row["cases"]), _fmt(row["dice"]["mean"])]
            rows.append([*cells, *[_fmt(row["dice"][c]) for c in classes], p_text])
        doc.table(["row", "cases", "mean Dice", *classes, "Wilcoxon p vs baseline"], rows)
