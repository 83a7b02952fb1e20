"""selection.json (``autoseg find-best``) as a typed contract: the one place that reads it.

find-best writes the configuration or ensemble it chose, the folds, the post-processing and a
temperature per configuration; prediction, export, the model card and the report read it through
:class:`Selection` (:meth:`Selection.load`), never by key.

Example:
    >>> sel = Selection.from_dict({"kind": "selection", "schema_version": 1, "plans_name": "default",
    ...     "configurations": ["3d_fullres"], "folds": ["0", "1"]})
    >>> sel.configurations, sel.selects(["3d_fullres"]), sel.temperature(["3d_fullres"]) is None
    (('3d_fullres',), True, True)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoseg.contracts.reading import ContractError, FieldReader

__all__ = ["SELECTION_SCHEMA_VERSION", "Selection"]

SELECTION_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Selection:
    """What find-best chose (module docstring).

    Attributes:
        configurations: one configuration, or the members of an ensemble, in find-best's order.
        folds: the folds whose networks are averaged.
        postprocessing: the post-processing spec (``PostprocessingSpec.to_dict``), or None.
        calibration: configuration -> ``{"temperature": T, ...}`` or ``{"skipped": why}``.
        candidates: every compared candidate (``configurations``, ``score``, ``per_class``).
        postprocessing_report: the post-processing steps tried (``decisions``).
        predict_command: the ``autoseg predict`` command of the selection.
        raw: the file's content, to copy it beside a model (read nothing from it).
    """

    plans_name: str
    configurations: tuple[str, ...]
    folds: tuple[str, ...]
    checkpoint: str = "final"
    cv_foreground_dice: float | None = None
    postprocessing: Mapping[str, Any] | None = None
    calibration: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    candidates: tuple[Mapping[str, Any], ...] = ()
    postprocessing_report: Mapping[str, Any] = field(default_factory=dict)
    predict_command: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Selection:
        """Read and check a selection.json; ContractError naming the file and every problem."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ContractError(f"{path}: not readable JSON ({err}); run `autoseg find-best` again") from err
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "selection") -> Selection:
        """Check a parsed selection.json (kind, schema version, fields); every problem listed."""
        problems: list[str] = []
        if not isinstance(data, Mapping):
            raise ContractError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if (
            data.get("kind", "selection") != "selection"
            or data.get("schema_version") != SELECTION_SCHEMA_VERSION
        ):
            problems.append(
                f"expected kind 'selection' of schema_version {SELECTION_SCHEMA_VERSION}, found "
                f"kind={data.get('kind')!r} schema_version={data.get('schema_version')!r}"
            )
        r = FieldReader(data, "selection", problems)
        names = r.get("configurations", list, convert=lambda v: tuple(str(c) for c in v))
        if names == ():
            problems.append("selection.configurations: empty; find-best selects at least one")
        selection = cls(
            plans_name=r.get("plans_name", str, "default"),
            configurations=names or (),
            folds=r.get("folds", list, (), lambda v: tuple(str(f) for f in v)),
            checkpoint=r.get("checkpoint", str, "final"),
            cv_foreground_dice=r.get("cv_foreground_dice", (int, float, type(None)), None),
            postprocessing=r.get("postprocessing", (dict, type(None)), None),
            calibration=r.get("calibration", dict, {}),
            candidates=r.get("candidates", list, (), tuple),
            postprocessing_report=r.get("postprocessing_report", dict, {}),
            predict_command=r.get("predict_command", str, ""),
            raw=dict(data),
        )
        if problems:
            raise ContractError(
                f"{source} is inconsistent:\n  " + "\n  ".join(problems) + "\nRun `autoseg find-best` again.",
                problems,
            )
        return selection

    def selects(self, configurations: Sequence[str]) -> bool:
        """Whether ``configurations`` are the selected ones (in any order)."""
        return sorted(configurations) == sorted(self.configurations)

    def temperature(self, configurations: Sequence[str]) -> float | None:
        """find-best's temperature of the configuration (an ensemble: its members' mean), or None."""
        found = [(self.calibration.get(c) or {}).get("temperature") for c in configurations]
        temperatures = [float(t) for t in found if t is not None]
        if not temperatures or len(temperatures) != len(found):
            return None
        return sum(temperatures) / len(temperatures)

    def to_dict(self) -> dict[str, Any]:
        """The file's content (what :meth:`load` read), e.g. for a model archive."""
        return dict(self.raw)
