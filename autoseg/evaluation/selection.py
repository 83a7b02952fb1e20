"""``autoseg find-best``: pick the configuration or ensemble, and the post-processing, by cross-validation.

1. Each trained configuration's out-of-fold predictions are scored (:func:`cv_summary`).
2. Each pair of configurations is ensembled from the folds' saved probabilities and scored.
3. The candidate with the best mean foreground Dice wins (ties: the single configuration first,
   then the order given).
4. A temperature per configuration is fitted on its out-of-fold probabilities
   (:mod:`autoseg.evaluation.calibration`), with the expected calibration error before and after;
   ``autoseg predict --save-probabilities`` applies it to the saved probabilities.
5. Largest-connected-component post-processing is tried on the winner's cross-validation
   predictions (:func:`autoseg.evaluation.postprocess_search.determine_postprocessing`) and kept only
   where it helps.

The result is ``<results>/<Dataset>/selection.json``, which ``autoseg predict -m`` follows, with the
exact prediction command.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoseg.contracts.labels import LabelManager
from autoseg.evaluation.crossval import cv_summary, ensemble_cases, fold_validations, merge_validation
from autoseg.utils.files import write_artifact

__all__ = ["SelectionInputs", "find_best"]

log = logging.getLogger(__name__)
SELECTION_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class SelectionInputs:
    """What find-best compares.

    Attributes:
        model_root: ``<results>/<Dataset>``.
        plans_name: the plans whose configurations are compared.
        configurations: the trained configurations to compare.
        num_folds: folds of the cross-validation (all must have validated).
        ref_folder: the raw reference labels (``labelsTr``).
        classes: class name -> label values (regions are unions).
        ending: the raw file ending.
        ensembles: also compare every pair of configurations.
        tolerance_mm: surface-distance tolerance of the evaluation.
        labels: the dataset's labels: the ignore value counts nowhere, region probabilities of an
            ensemble become masks by ``regions_class_order``. None: plain labels, no ignore label.
    """

    model_root: Path
    plans_name: str
    configurations: tuple[str, ...]
    num_folds: int
    ref_folder: Path
    classes: dict[str, list[int]]
    ending: str
    ensembles: bool = True
    tolerance_mm: float = 1.0
    labels: LabelManager | None = None

    @property
    def ignore_label(self) -> int | None:
        return self.labels.ignore_label if self.labels is not None else None


def _score(summary: dict[str, Any]) -> float:
    value = summary["foreground_mean"].get("dice")
    return float("-inf") if value is None else float(value)


def _ensemble(inputs: SelectionInputs, pair: Sequence[str], num_workers: int | None) -> tuple[Path, dict]:
    from autoseg.evaluation.evaluate import evaluate_folders

    base = inputs.model_root / inputs.plans_name
    members = [merge_validation(base / c, inputs.num_folds, inputs.ending)[1] for c in pair]
    folder = base / "ensembles" / "+".join(pair)
    crossval = folder / "crossval"
    ensemble_cases(members, crossval, inputs.ending, labels=inputs.labels)
    summary = evaluate_folders(
        crossval,
        inputs.ref_folder,
        inputs.classes,
        file_ending=inputs.ending,
        tolerance_mm=inputs.tolerance_mm,
        num_workers=num_workers,
        ignore_label=inputs.ignore_label,
    )
    summary["configurations"] = list(pair)
    write_artifact(folder / "cv_summary.json", "cv_summary", 1, summary)
    return crossval, summary


def find_best(inputs: SelectionInputs, num_workers: int | None = None) -> dict[str, Any]:
    """Compare the candidates, choose post-processing, write and return ``selection.json``'s contents."""
    from autoseg.evaluation.postprocess_search import determine_postprocessing

    if not inputs.configurations:
        raise ValueError(f"{inputs.model_root / inputs.plans_name}: no trained configuration to compare")
    base = inputs.model_root / inputs.plans_name
    candidates: list[dict[str, Any]] = []
    folders: dict[tuple[str, ...], Path] = {}
    for config in inputs.configurations:
        fold_validations(base / config, inputs.num_folds)  # every fold validated, or a clear error
        summary = cv_summary(
            base / config,
            inputs.num_folds,
            inputs.ref_folder,
            inputs.classes,
            inputs.ending,
            num_workers,
            inputs.ignore_label,
        )
        folders[(config,)] = base / config / "crossval"
        candidates.append(_candidate((config,), summary))
    if inputs.ensembles:
        for pair in itertools.combinations(inputs.configurations, 2):
            crossval, summary = _ensemble(inputs, pair, num_workers)
            folders[pair] = crossval
            candidates.append(_candidate(pair, summary))
    best = max(candidates, key=lambda c: (c["score"], -len(c["configurations"])))
    chosen = tuple(best["configurations"])
    spec, report = determine_postprocessing(
        folders[chosen],
        inputs.ref_folder,
        inputs.classes,
        inputs.ending,
        inputs.tolerance_mm,
        num_workers,
        folders[chosen].parent / "crossval_postprocessed",
        inputs.ignore_label,
    )
    selection = {
        "plans_name": inputs.plans_name,
        "configurations": list(chosen),
        "folds": [str(k) for k in range(inputs.num_folds)],
        "checkpoint": "final",
        "cv_foreground_dice": best["score"],
        "cv_dice_per_class": best["per_class"],
        "postprocessing": spec.to_dict(),
        "postprocessing_report": report,
        "candidates": candidates,
        "predict_command": _command(inputs, chosen),
    }
    selection["calibration"] = _calibrate(inputs)
    write_artifact(inputs.model_root / "selection.json", "selection", SELECTION_SCHEMA_VERSION, selection)
    _plot(inputs.model_root / "cv_dice.png", folders[chosen].parent / "cv_summary.json", chosen)
    return selection


def _calibrate(inputs: SelectionInputs) -> dict[str, Any]:
    """A temperature per configuration, fitted on its out-of-fold probabilities (with the ECE)."""
    from autoseg.evaluation.calibration import calibrate_configuration

    if any(len(v) != 1 for v in inputs.classes.values()):
        return {c: {"skipped": "region-based labels (sigmoid outputs)"} for c in inputs.configurations}
    values = [0, *sorted(v[0] for v in inputs.classes.values())]
    out: dict[str, Any] = {}
    for config in inputs.configurations:
        folders = list(
            fold_validations(inputs.model_root / inputs.plans_name / config, inputs.num_folds).values()
        )
        try:
            out[config] = calibrate_configuration(folders, inputs.ref_folder, inputs.ending, values)
        except FileNotFoundError as err:
            log.warning("%s: no temperature fitted: %s", config, err)
            out[config] = {"skipped": str(err)}
    return out


def _plot(path: Path, summary_file: Path, chosen: Sequence[str]) -> None:
    """cv_dice.png: the winner's per-class Dice over the cross-validation cases."""
    import json

    from autoseg.visualize.overlay import plot_cv_dice

    summary = json.loads(summary_file.read_text())
    plot_cv_dice(summary, path, title=f"cross-validation Dice of {' + '.join(chosen)}")


def _candidate(configs: Sequence[str], summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "configurations": list(configs),
        "score": _score(summary),
        "per_class": {name: m.get("dice") for name, m in summary["mean"].items()},
    }


def _command(inputs: SelectionInputs, chosen: Sequence[str]) -> str:
    return (
        f"autoseg predict -i INPUT_FOLDER -o OUTPUT_FOLDER -m {inputs.model_root} "
        f"-c {' '.join(chosen)} --plans-name {inputs.plans_name}"
    )
