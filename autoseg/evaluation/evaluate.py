"""Evaluation of segmentations per case and class: overlap counts, Dice, IoU, HD95 and NSD.

A *class* is a name and a list of label values: a plain label is ``[k]``, a region (nnU-Net's
region-based training, e.g. ``"whole tumor": [1, 2, 3]``) is the union of its labels.

Empty masks follow nnU-Net for Dice and IoU: a class in neither prediction nor reference scores
None (NaN in memory, null in JSON) and is skipped by the means; an empty prediction of a present
class scores 0. For HD95 and NSD see :mod:`autoseg.evaluation.surface`: None when both are empty;
NSD 0 and HD95 = the image diagonal in mm when exactly one is.

Voxels whose reference value is ``ignore_label`` count nowhere: not in the counts, not in the
prediction's surface.

summary.json (``write_artifact(..., "evaluation", 1, ...)``)::

    {"kind": "evaluation", "schema_version": 1,
     "classes": {"anterior": [1], "hippocampus": [1, 2]}, "tolerance_mm": 1.0, "ignore_label": null,
     "prediction_folder": "...", "reference_folder": "...", "file_ending": ".nii.gz",
     "cases": [{"case": "hippo_001", "prediction": ".../hippo_001.nii.gz", "reference": "...",
                "metrics": {"anterior": {"dice": 0.91, "iou": 0.83, "hd95": 1.0, "nsd": 0.97,
                                         "tp": 812, "fp": 40, "fn": 120, "tn": 30000,
                                         "n_pred": 852, "n_ref": 932}, ...}}],
     "mean": {"anterior": {"dice": 0.9, ...}, ...},
     "foreground_mean": {"dice": 0.89, ...}}
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.contracts.labels import LabelManager
from autoseg.evaluation.metrics import mask_stats
from autoseg.evaluation.surface import surface_metrics
from autoseg.utils.parallel import parallel_map

EVALUATION_SCHEMA_VERSION = 1
#: The keys of one class's metrics, in the order they are written.
METRICS: tuple[str, ...] = ("dice", "iou", "hd95", "nsd", "tp", "fp", "fn", "tn", "n_pred", "n_ref")
#: Relative difference of spacings above which a prediction does not match its reference.
SPACING_RTOL = 1e-3

Metrics = dict[str, float | int | None]

__all__ = [
    "EVALUATION_SCHEMA_VERSION",
    "METRICS",
    "class_mask",
    "classes_from_labels",
    "evaluate_arrays",
    "evaluate_folders",
    "labels_in_files",
    "pair_cases",
    "summarize",
    "values_outside",
]


def classes_from_labels(labels: Mapping[str, int | Sequence[int]]) -> dict[str, list[int]]:
    """The evaluated classes of dataset.json's ``labels``: everything but background and ``ignore``
    (:attr:`autoseg.contracts.LabelManager.evaluation_classes`).

    Example:
        >>> classes_from_labels({"background": 0, "edema": 1, "tumor": [1, 2], "ignore": 3})
        {'edema': [1], 'tumor': [1, 2]}
    """
    return LabelManager.from_labels(labels, strict=False).evaluation_classes


def class_mask(seg: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Boolean mask of the voxels of ``seg`` whose label is one of ``values`` (same shape)."""
    if len(values) == 1:
        return np.asarray(seg == values[0])
    return np.isin(seg, values)


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def evaluate_arrays(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    classes: Mapping[str, Sequence[int]],
    tolerance_mm: float = 1.0,
    ignore_label: int | None = None,
    surface: bool = True,
) -> dict[str, Metrics]:
    """Metrics of one case per class.

    Args:
        pred: predicted label map, e.g. (Z, Y, X).
        ref: reference label map of the same shape.
        spacing: voxel size in mm per axis of the arrays.
        classes: class name -> label values (a region is the union of several).
        tolerance_mm: NSD tolerance in mm.
        ignore_label: reference value of voxels excluded from every metric.
        surface: False skips HD95 and NSD (their keys are then absent).

    Returns:
        ``{class: {"dice", "iou", "hd95", "nsd", "tp", "fp", "fn", "tn", "n_pred", "n_ref"}}``,
        undefined values as None.

    Example:
        >>> ref = np.array([[0, 1, 1, 2]]); pred = np.array([[1, 1, 0, 2]])
        >>> m = evaluate_arrays(pred, ref, (1.0, 1.0), {"a": [1], "a+b": [1, 2]})
        >>> m["a"]["dice"], m["a+b"]["tp"], m["a+b"]["nsd"]
        (0.5, 2, 1.0)
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    valid = None if ignore_label is None else ref != ignore_label
    out: dict[str, Metrics] = {}
    for name, values in classes.items():
        values = [int(v) for v in values if v != ignore_label]
        p, r = class_mask(pred, values), class_mask(ref, values)
        if valid is not None:
            p &= valid
        stats = mask_stats(p, r, valid)
        metrics: Metrics = {"dice": _none_if_nan(stats.dice), "iou": _none_if_nan(stats.iou)}
        if surface:
            hd95, nsd = surface_metrics(p, r, spacing, tolerance_mm)
            metrics.update(hd95=_none_if_nan(hd95), nsd=_none_if_nan(nsd))
        metrics.update(tp=stats.tp, fp=stats.fp, fn=stats.fn, tn=stats.tn)
        metrics.update(n_pred=stats.n_pred, n_ref=stats.n_ref)
        out[name] = metrics
    return out


def _image_files(folder: Path, file_ending: str) -> dict[str, Path]:
    """Case name -> file for the files of ``folder`` ending in ``file_ending`` (hidden ones skipped)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    return {
        p.name[: -len(file_ending)]: p
        for p in sorted(folder.iterdir())
        if p.name.endswith(file_ending) and not p.name.startswith(".") and p.is_file()
    }


def _listing(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def pair_cases(
    pred_folder: str | os.PathLike[str],
    ref_folder: str | os.PathLike[str],
    file_ending: str = ".nii.gz",
    cases: Sequence[str] | None = None,
) -> list[tuple[str, Path, Path]]:
    """Pair prediction and reference files by case name (the file name minus ``file_ending``).

    Args:
        pred_folder: folder of predicted label maps.
        ref_folder: folder of reference label maps.
        file_ending: e.g. ``.nii.gz``.
        cases: only these cases (each needs both files); None: every file of both folders.

    Returns:
        ``[(case, prediction file, reference file)]`` sorted by case name.

    Raises:
        ValueError: listing every case without a prediction and every prediction without a reference.
    """
    preds = _image_files(Path(pred_folder), file_ending)
    refs = _image_files(Path(ref_folder), file_ending)
    wanted = sorted(set(refs) | set(preds)) if cases is None else sorted(set(cases))
    problems = []
    no_pred = [c for c in wanted if c not in preds]
    no_ref = [c for c in wanted if c not in refs]
    if no_pred:
        problems.append(f"{len(no_pred)} case(s) have no prediction in {pred_folder}: {_listing(no_pred)}")
    if no_ref:
        problems.append(f"{len(no_ref)} case(s) have no reference in {ref_folder}: {_listing(no_ref)}")
    if not wanted:
        problems.append(f"no {file_ending} files in {pred_folder} or {ref_folder}")
    if problems:
        raise ValueError(
            "; ".join(problems) + f". Files are paired by name minus {file_ending!r}: predict the missing "
            "cases, remove the extra files, or evaluate only some cases."
        )
    return [(c, preds[c], refs[c]) for c in wanted]


def _spacing_matches(a: Sequence[float], b: Sequence[float]) -> bool:
    if len(a) != len(b):
        return False
    return all(abs(x - y) <= SPACING_RTOL * max(abs(x), abs(y)) for x, y in zip(a, b, strict=True))


def values_outside(seg: np.ndarray, allowed: frozenset[int]) -> list[int]:
    """The values of the label map ``seg`` that are not in ``allowed`` (sorted).

    Example:
        >>> values_outside(np.array([0, 1, 5, 5]), frozenset({0, 1}))
        [5]
    """
    if seg.size == 0:
        return []
    if np.issubdtype(seg.dtype, np.integer) and int(seg.min()) >= 0 and int(seg.max()) < 1 << 16:
        present = np.flatnonzero(np.bincount(seg.ravel()))
    else:
        present = np.unique(seg)
    return [int(v) if float(v).is_integer() else float(v) for v in present if v not in allowed]  # type: ignore[misc]


def _evaluate_case(
    item: tuple[str, Path, Path],
    classes: Mapping[str, Sequence[int]],
    tolerance_mm: float,
    ignore_label: int | None,
    allowed: frozenset[int] | None = None,
) -> dict[str, Any]:
    """One case's entry of the summary, or ``{"error": message}`` when the files do not match.

    With ``allowed`` (the dataset's label values), label values outside it are recorded under
    ``"unknown_labels"``: ``{"prediction": [...], "reference": [...]}`` (the lists that are not empty).
    """
    from autoseg.io.images import read_image

    case, pred_file, ref_file = item
    pred, pred_geom = read_image(pred_file)
    ref, ref_geom = read_image(ref_file)
    if pred.shape != ref.shape:
        return {
            "error": f"{pred_file}: shape {pred.shape} differs from the reference's {ref.shape} "
            f"({ref_file}); predict the case from its own image (autoseg predict keeps each scan's geometry)"
        }
    if not _spacing_matches(pred_geom.spacing, ref_geom.spacing):
        return {
            "error": f"{pred_file}: spacing {pred_geom.spacing} differs from the reference's "
            f"{ref_geom.spacing} ({ref_file}); predict the case from its own image"
        }
    metrics = evaluate_arrays(pred, ref, ref_geom.spacing, classes, tolerance_mm, ignore_label)
    out = {"case": case, "prediction": str(pred_file), "reference": str(ref_file), "metrics": metrics}
    if allowed is not None:
        unknown = {"prediction": values_outside(pred, allowed), "reference": values_outside(ref, allowed)}
        unknown = {k: v for k, v in unknown.items() if v}
        if unknown:
            out["unknown_labels"] = unknown
    return out


def _unknown_labels(results: Sequence[dict[str, Any]], allowed: frozenset[int], allow: bool) -> dict:
    """case -> its label values outside ``allowed``; ValueError listing them all unless ``allow``."""
    unknown = {r["case"]: r.pop("unknown_labels") for r in results if "unknown_labels" in r}
    if not unknown:
        return {}
    lines = [
        f"{r[which]}: label value(s) {values} are not among the dataset's labels {sorted(allowed)}"
        for r in results
        if r["case"] in unknown
        for which, values in ((w, unknown[r["case"]].get(w)) for w in ("prediction", "reference"))
        if values
    ]
    if not allow:
        raise ValueError(
            f"{len(lines)} file(s) hold label values the dataset does not declare (fix the files or "
            "dataset.json's labels, or score anyway with --allow-unknown-labels):\n  " + "\n  ".join(lines)
        )
    for line in lines:
        logging.getLogger(__name__).warning("%s (scored anyway: --allow-unknown-labels)", line)
    return unknown


def _mean(values: Sequence[float | int | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return float(np.mean(present)) if present else None


def summarize(case_results: Sequence[Mapping[str, Any]], classes: Mapping[str, Sequence[int]]) -> dict:
    """``{"mean": {class: {metric: mean}}, "foreground_mean": {metric: mean of the class means}}``.

    Means skip None (a class absent from both masks of a case, or never present at all).
    """
    mean = {
        name: {m: _mean([c["metrics"][name].get(m) for c in case_results]) for m in METRICS}
        for name in classes
    }
    foreground = {m: _mean([mean[name][m] for name in classes]) for m in METRICS}
    return {"mean": mean, "foreground_mean": foreground}


def evaluate_folders(
    pred_folder: str | os.PathLike[str],
    ref_folder: str | os.PathLike[str],
    classes: Mapping[str, Sequence[int]],
    file_ending: str = ".nii.gz",
    tolerance_mm: float = 1.0,
    ignore_label: int | None = None,
    num_workers: int | None = None,
    cases: Sequence[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    allowed_labels: Sequence[int] | None = None,
    allow_unknown_labels: bool = False,
) -> dict[str, Any]:
    """Evaluate every prediction of ``pred_folder`` against its reference in ``ref_folder``.

    Cases run in parallel with a progress bar; the spacing comes from the reference image.

    Args:
        pred_folder, ref_folder: folders of label maps named ``{case}{file_ending}``.
        classes: class name -> label values, e.g. ``classes_from_labels(dataset_json["labels"])``.
        file_ending: e.g. ``.nii.gz``.
        tolerance_mm: NSD tolerance in mm.
        ignore_label: reference value of voxels that count nowhere.
        num_workers: processes (None: all cores).
        cases: evaluate only these cases; None: all (both folders must hold the same cases).
        output: where to write the summary (``summary.json``); None: not written.
        allowed_labels: the dataset's label values; values outside them in a prediction or
            reference are an error (None: not checked).
        allow_unknown_labels: score such files anyway, recorded in the summary's ``unknown_labels``.

    Returns:
        The summary (see the module docstring).

    Raises:
        ValueError: unpaired files (all listed), files whose shape or spacing differ (all listed), or
            label values outside ``allowed_labels`` (all listed).

    Example:
        >>> s = evaluate_folders("pred", "labelsTr", {"liver": [1]}, output="s.json")  # doctest: +SKIP
        >>> s["mean"]["liver"]["dice"]  # doctest: +SKIP
        0.95
    """
    pairs = pair_cases(pred_folder, ref_folder, file_ending, cases)
    classes = {str(k): [int(v) for v in vals] for k, vals in classes.items()}
    allowed = None if allowed_labels is None else frozenset(int(v) for v in allowed_labels)
    work = functools.partial(
        _evaluate_case, classes=classes, tolerance_mm=tolerance_mm, ignore_label=ignore_label, allowed=allowed
    )
    results = parallel_map(work, pairs, num_workers, desc="evaluating cases")
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise ValueError(
            f"{len(errors)} prediction(s) do not match their reference:\n  " + "\n  ".join(errors)
        )
    unknown = {} if allowed is None else _unknown_labels(results, allowed, allow_unknown_labels)
    summary: dict[str, Any] = {
        "classes": classes,
        "tolerance_mm": float(tolerance_mm),
        "ignore_label": ignore_label,
        "prediction_folder": str(pred_folder),
        "reference_folder": str(ref_folder),
        "file_ending": file_ending,
        "cases": results,
        **summarize(results, classes),
    }
    if unknown:
        summary["unknown_labels"] = unknown
    if output is not None:
        from autoseg.utils.files import write_artifact

        write_artifact(output, "evaluation", EVALUATION_SCHEMA_VERSION, summary)
    return summary


def _labels_of(path: Path) -> list[int]:
    from autoseg.io.images import read_image

    return [int(v) for v in np.unique(read_image(path)[0])]


def labels_in_files(files: Sequence[Path], num_workers: int | None = None) -> list[int]:
    """Every label value found in ``files`` (read in parallel, with a progress bar), sorted."""
    found: set[int] = set()
    for values in parallel_map(_labels_of, list(files), num_workers, desc="finding labels"):
        found.update(values)
    return sorted(found)
