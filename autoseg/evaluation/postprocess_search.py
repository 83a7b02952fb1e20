"""Choosing the post-processing on cross-validation predictions.

:func:`determine_postprocessing` chooses a :class:`~autoseg.postprocessing.components.PostprocessingSpec`
on cross-validation predictions, judged by Dice alone:

1. foreground LCC (largest component of all labels together) is kept if the mean foreground Dice
   (the mean of the per-class mean Dice) improves and no class's mean Dice gets worse;
2. on top of that, for each class in turn, its LCC (a plain label's, or a region's: the largest
   component of the union of its labels, as nnU-Net does per region) is kept if that class's mean
   Dice improves and no class gets worse.

"Improves" means by more than ``DICE_EPS`` and "worse" by more than ``DICE_EPS``. A class whose
Dice is None in every case (in neither prediction nor reference anywhere) counts as 1 in these
comparisons: it is perfect, and removing its last false positives makes it so.

postprocessing.json (``write_artifact(..., "postprocessing", 1, ...)``)::

    {"kind": "postprocessing", "schema_version": 1,
     "postprocessing": {"foreground_lcc": true, "class_lcc": [2]},
     "report": {"num_cases": 5, "dice_before": {...}, "foreground_dice_before": 0.8,
                "decisions": [{"step": "foreground_lcc", "kept": true, "dice": {...}, ...}, ...],
                "dice_after": {...}, "foreground_dice_after": 0.85, ...}}

The spec and how it is applied are in :mod:`autoseg.postprocessing.components`, which re-exports
:func:`determine_postprocessing`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.evaluation.evaluate import class_mask, evaluate_folders, pair_cases
from autoseg.evaluation.metrics import mask_stats
from autoseg.postprocessing.components import (
    DICE_EPS,
    POSTPROCESSING_SCHEMA_VERSION,
    PostprocessingSpec,
    apply_postprocessing,
    postprocess_folder,
)
from autoseg.utils.files import write_artifact
from autoseg.utils.parallel import parallel_map

__all__ = ["determine_postprocessing"]


def _dice_of_specs(
    item: tuple[str, Path, Path],
    specs: Sequence[PostprocessingSpec],
    classes: Mapping[str, Sequence[int]],
    ignore_label: int | None,
) -> list[dict[str, float]]:
    """Per spec, the Dice of each class of one case (NaN where the class is in neither mask)."""
    from autoseg.io.images import read_image

    _, pred_file, ref_file = item
    pred, ref = read_image(pred_file)[0], read_image(ref_file)[0]
    if pred.shape != ref.shape:
        raise ValueError(
            f"{pred_file}: shape {pred.shape} differs from the reference's {ref.shape} ({ref_file})"
        )
    valid = None if ignore_label is None else ref != ignore_label
    refs = {
        name: class_mask(ref, [v for v in values if v != ignore_label]) for name, values in classes.items()
    }
    out = []
    for spec in specs:
        seg = apply_postprocessing(pred, spec)
        out.append(
            {
                name: mask_stats(class_mask(seg, values), refs[name], valid).dice
                for name, values in classes.items()
            }
        )
    return out


def _mean_dice(per_case: Sequence[Mapping[str, float]], classes: Sequence[str]) -> dict[str, float | None]:
    means: dict[str, float | None] = {}
    for name in classes:
        values = [d[name] for d in per_case if not np.isnan(d[name])]
        means[name] = float(np.mean(values)) if values else None
    return means


def _score(means: Mapping[str, float | None]) -> dict[str, float]:
    return {k: 1.0 if v is None else v for k, v in means.items()}


def _foreground(means: Mapping[str, float | None]) -> float:
    scores = list(_score(means).values())
    return float(np.mean(scores)) if scores else 1.0


def _worse(before: Mapping[str, float | None], after: Mapping[str, float | None]) -> list[str]:
    b, a = _score(before), _score(after)
    return [k for k in b if a[k] < b[k] - DICE_EPS]


def _mean_dice_of_specs(
    pairs: list[tuple[str, Path, Path]],
    specs: Sequence[PostprocessingSpec],
    classes: Mapping[str, Sequence[int]],
    ignore_label: int | None,
    num_workers: int | None,
    desc: str,
) -> list[dict[str, float | None]]:
    """Per spec, the mean Dice per class over the cases; one parallel pass over the files."""
    work = functools.partial(_dice_of_specs, specs=list(specs), classes=classes, ignore_label=ignore_label)
    per_case = parallel_map(work, pairs, num_workers, desc=desc)
    return [_mean_dice([case[i] for case in per_case], list(classes)) for i in range(len(specs))]


@dataclass
class _Search:
    """The greedy search's state: the chosen spec, its mean Dice per class, the decisions so far."""

    spec: PostprocessingSpec
    dice: dict[str, float | None]
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def consider(
        self, candidate: PostprocessingSpec, dice: dict[str, float | None], target: tuple[str, Any] | None
    ) -> None:
        """Keep ``candidate`` if the Dice of the target (class name, label) improves, or with
        ``target`` None the foreground Dice, and no class gets worse."""
        worse = _worse(self.dice, dice)
        if target is None:
            gain, step, extra = _foreground(dice) - _foreground(self.dice), "foreground_lcc", {}
        else:
            gain = _score(dice)[target[0]] - _score(self.dice)[target[0]]
            step = "region_lcc" if isinstance(target[1], list) else "class_lcc"
            extra = {"class": target[0], "label": target[1]}
        kept = gain > DICE_EPS and not worse
        self.decisions.append(
            {
                "step": step,
                **extra,
                "candidate": candidate.to_dict(),
                "dice": dice,
                "foreground_dice": _foreground(dice),
                "gain": gain,
                "worse": worse,
                "kept": kept,
            }
        )
        if kept:
            self.spec, self.dice = candidate, dice


def determine_postprocessing(
    pred_folder: str | os.PathLike[str],
    ref_folder: str | os.PathLike[str],
    classes: Mapping[str, Sequence[int]],
    file_ending: str = ".nii.gz",
    tolerance_mm: float = 1.0,
    num_workers: int | None = None,
    output_folder: str | os.PathLike[str] | None = None,
    ignore_label: int | None = None,
    cases: Sequence[str] | None = None,
) -> tuple[PostprocessingSpec, dict[str, Any]]:
    """Choose the post-processing that improves the Dice of ``pred_folder`` (see the module docstring).

    Args:
        pred_folder, ref_folder: folders of label maps named ``{case}{file_ending}`` (e.g. the
            cross-validation predictions and labelsTr).
        classes: class name -> label values; only single-label classes are candidates for class LCC.
        file_ending: e.g. ``.nii.gz``.
        tolerance_mm: NSD tolerance of the summary.json written to ``output_folder``.
        num_workers: processes (None: all cores).
        output_folder: where to write the post-processed predictions, their summary.json and
            postprocessing.json; None: nothing is written.
        ignore_label: reference value of voxels that count nowhere.
        cases: only these cases (None: every file of both folders).

    Returns:
        The chosen spec and the report (Dice before and after, each decision with its numbers).

    Example:
        >>> spec, report = determine_postprocessing("cv_pred", "labelsTr", {"liver": [1]})  # doctest: +SKIP
        >>> spec.to_dict(), report["foreground_dice_after"]  # doctest: +SKIP
        ({'foreground_lcc': True, 'class_lcc': []}, 0.93)
    """
    pairs = pair_cases(pred_folder, ref_folder, file_ending, cases)
    classes = {str(k): [int(v) for v in vals] for k, vals in classes.items()}
    evaluation = {
        "classes": classes,
        "file_ending": file_ending,
        "tolerance_mm": tolerance_mm,
        "ignore_label": ignore_label,
        "num_workers": num_workers,
    }
    fg_spec = PostprocessingSpec(foreground_lcc=True)
    before, with_fg = _mean_dice_of_specs(
        pairs,
        [PostprocessingSpec(), fg_spec],
        classes,
        ignore_label,
        num_workers,
        "postprocessing: foreground",
    )
    search = _Search(PostprocessingSpec(), before)
    search.consider(fg_spec, with_fg, None)
    for name, values in classes.items():
        values = [v for v in values if v != ignore_label]
        if not values:
            continue
        single = len(values) == 1  # a label; else a region (BraTS: its union of labels)
        candidate = search.spec.with_class(values[0]) if single else search.spec.with_region(values)
        (dice,) = _mean_dice_of_specs(
            pairs, [candidate], classes, ignore_label, num_workers, f"postprocessing: {name}"
        )
        search.consider(candidate, dice, (name, values[0] if single else values))
    report: dict[str, Any] = {
        "classes": classes,
        "num_cases": len(pairs),
        "dice_before": before,
        "foreground_dice_before": _foreground(before),
        "decisions": search.decisions,
        "postprocessing": search.spec.to_dict(),
        "dice_after": search.dice,
        "foreground_dice_after": _foreground(search.dice),
    }
    if output_folder is not None:
        _write_postprocessed(Path(output_folder), pairs, ref_folder, search.spec, report, evaluation)
    return search.spec, report


def _write_postprocessed(
    out: Path,
    pairs: Sequence[tuple[str, Path, Path]],
    ref_folder: str | os.PathLike[str],
    spec: PostprocessingSpec,
    report: dict[str, Any],
    evaluation: dict[str, Any],
) -> None:
    """Post-process every prediction into ``out``, score it (summary.json), write postprocessing.json."""
    e = evaluation
    postprocess_folder([p for _, p, _ in pairs], out, spec, e["num_workers"])
    names = [case for case, _, _ in pairs]
    evaluate_folders(
        out, ref_folder, e["classes"], e["file_ending"], e["tolerance_mm"], e["ignore_label"],
        e["num_workers"], names, output=out / "summary.json",
    )  # fmt: skip
    report.update(output_folder=str(out), summary=str(out / "summary.json"))
    write_artifact(
        out / "postprocessing.json",
        "postprocessing",
        POSTPROCESSING_SCHEMA_VERSION,
        {"postprocessing": spec.to_dict(), "report": report},
    )
