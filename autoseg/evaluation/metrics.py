"""Overlap metrics: per-label confusion counts and Dice (nnU-Net's conventions, §6 of the facts).

Two flavours of the same numbers:

- torch, batched, for the online pseudo-Dice of training (:func:`confusion_counts`,
  :func:`dice_from_counts`): counts are summed over the batch and over validation batches, then
  turned into one global Dice per label, as nnU-Net does.
- numpy, per case, for evaluation (:func:`label_stats`, :func:`dice_per_label`): boolean masks and
  ``count_nonzero`` per label. Measured on 256^3 uint8 with 3 labels: 0.04 s, where three
  ``np.bincount`` passes take 0.68 s (they cast every voxel to int64).

Dice is NaN when a label is absent from both prediction and reference (TP + FP + FN = 0), so that
``nanmean`` over cases skips it; an empty prediction of a present label scores 0.

:func:`mask_stats` counts two boolean masks, for regions (unions of labels) and post-processing.
Surface metrics (HD95, NSD) are in :mod:`autoseg.evaluation.surface`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "LabelStats",
    "confusion_counts",
    "dice_from_counts",
    "dice_per_label",
    "label_stats",
    "mask_stats",
]


def confusion_counts(
    pred: Tensor, target: Tensor, labels: Sequence[int], ignore_label: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """True positives, false positives and false negatives per label, summed over the batch.

    Args:
        pred: predicted labels (B, *spatial), e.g. ``logits.argmax(1)``.
        target: reference labels (B, *spatial); a (B, 1, *spatial) target is squeezed.
        labels: the labels to count, e.g. the foreground labels ``[1, 2]``.
        ignore_label: reference value of voxels that do not count.

    Returns:
        ``(tp, fp, fn)``, each int64 of shape (len(labels),) on ``pred``'s device.
    """
    if target.ndim == pred.ndim + 1 and target.shape[1] == 1:
        target = target[:, 0]
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    valid = None if ignore_label is None else target != ignore_label
    tp, fp, fn = [], [], []
    for label in labels:
        p, t = pred == label, target == label
        if valid is not None:
            p &= valid
        tp.append(torch.count_nonzero(p & t))
        fp.append(torch.count_nonzero(p & ~t))
        fn.append(torch.count_nonzero(~p & t))
    empty = pred.new_zeros(0, dtype=torch.int64)
    return tuple(torch.stack(c) if c else empty for c in (tp, fp, fn))  # type: ignore[return-value]


def dice_from_counts(tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
    """Dice ``2TP / (2TP + FP + FN)`` per entry, NaN where ``TP + FP + FN == 0`` (float64)."""
    tp, fp, fn = tp.double(), fp.double(), fn.double()
    denominator = 2 * tp + fp + fn
    return torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), torch.nan)


@dataclass(frozen=True)
class LabelStats:
    """Confusion counts of one label in one case (the fields of nnU-Net's summary.json)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n_pred(self) -> int:
        return self.tp + self.fp

    @property
    def n_ref(self) -> int:
        return self.tp + self.fn

    @property
    def dice(self) -> float:
        """2TP / (2TP + FP + FN); NaN when the label is in neither mask."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else math.nan

    @property
    def iou(self) -> float:
        """TP / (TP + FP + FN); NaN when the label is in neither mask."""
        denominator = self.tp + self.fp + self.fn
        return self.tp / denominator if denominator else math.nan


def label_stats(
    pred: np.ndarray, ref: np.ndarray, labels: Sequence[int], ignore_label: int | None = None
) -> dict[int, LabelStats]:
    """Confusion counts per label of one case.

    Args:
        pred: predicted label map (any shape).
        ref: reference label map of the same shape.
        labels: labels to report.
        ignore_label: reference value of voxels excluded from every count.

    Returns:
        ``{label: LabelStats}`` in the order of ``labels``.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    if ignore_label is not None:
        keep = ref != ignore_label
        pred, ref = pred[keep], ref[keep]
    total = int(pred.size)
    out = {}
    for label in labels:
        p, r = pred == label, ref == label
        tp = int(np.count_nonzero(p & r))
        fp, fn = int(np.count_nonzero(p)) - tp, int(np.count_nonzero(r)) - tp
        out[int(label)] = LabelStats(tp=tp, fp=fp, fn=fn, tn=total - tp - fp - fn)
    return out


def dice_per_label(
    pred: np.ndarray, ref: np.ndarray, labels: Sequence[int], ignore_label: int | None = None
) -> dict[int, float]:
    """Dice per label of one case; NaN when the label is in neither mask.

    Example:
        >>> ref = np.array([[0, 1, 1], [2, 2, 0]])
        >>> pred = np.array([[0, 1, 0], [2, 2, 2]])
        >>> {k: round(v, 3) for k, v in dice_per_label(pred, ref, [1, 2, 3]).items()}
        {1: 0.667, 2: 0.8, 3: nan}
    """
    return {label: s.dice for label, s in label_stats(pred, ref, labels, ignore_label).items()}


def mask_stats(pred: np.ndarray, ref: np.ndarray, valid: np.ndarray | None = None) -> LabelStats:
    """Confusion counts of two boolean masks, e.g. a region (a union of labels) of one case.

    Args:
        pred: predicted boolean mask (any shape).
        ref: reference boolean mask of the same shape.
        valid: boolean mask of the voxels that count (None: all), e.g. ``ref_labels != ignore``.

    Example:
        >>> s = mask_stats(np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool))
        >>> (s.tp, s.fp, s.fn, s.tn, s.dice)
        (1, 1, 1, 1, 0.5)
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    if valid is not None:
        pred, ref = pred & valid, ref & valid
    total = int(pred.size if valid is None else np.count_nonzero(valid))
    tp = int(np.count_nonzero(pred & ref))
    fp, fn = int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(ref)) - tp
    return LabelStats(tp=tp, fp=fp, fn=fn, tn=total - tp - fp - fn)
