"""Dice and confusion counts, torch (online pseudo-Dice) and numpy (evaluation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autoseg.evaluation.metrics import confusion_counts, dice_from_counts, dice_per_label, label_stats


def _crafted() -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((4, 6), dtype=np.uint8)
    ref[:2, :3] = 1  # 6 voxels of label 1
    ref[2:, 3:] = 2  # 6 voxels of label 2
    pred = np.zeros_like(ref)
    pred[:2, :2] = 1  # 4 of the 6, no false positive: Dice 8 / 10
    pred[2:, 2:] = 2  # all 6 plus 2 false positives: Dice 12 / 14
    return pred, ref


def test_hand_computed_dice() -> None:
    pred, ref = _crafted()
    dice = dice_per_label(pred, ref, [1, 2])
    assert dice[1] == pytest.approx(0.8)
    assert dice[2] == pytest.approx(12 / 14)
    stats = label_stats(pred, ref, [1, 2])
    assert (stats[1].tp, stats[1].fp, stats[1].fn, stats[1].tn) == (4, 0, 2, 18)
    assert (stats[2].n_pred, stats[2].n_ref) == (8, 6)
    assert stats[2].iou == pytest.approx(6 / 8)


def test_both_empty_is_nan_empty_prediction_is_zero() -> None:
    pred, ref = _crafted()
    assert math.isnan(dice_per_label(pred, ref, [3])[3])
    assert math.isnan(label_stats(pred, ref, [3])[3].iou)
    assert dice_per_label(np.zeros_like(ref), ref, [1])[1] == 0.0


def test_ignore_label_is_excluded() -> None:
    pred, ref = _crafted()
    ref = ref.copy()
    ref[:, 2] = 255  # hides label 2's two false positives and label 1's two misses
    dice = dice_per_label(pred, ref, [1, 2], ignore_label=255)
    assert dice == {1: pytest.approx(1.0), 2: pytest.approx(1.0)}


def test_torch_counts_sum_over_the_batch_and_match_numpy() -> None:
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 4, (3, 5, 6, 7))
    pred = np.where(rng.random(ref.shape) < 0.7, ref, rng.integers(0, 4, ref.shape))
    tp, fp, fn = confusion_counts(torch.from_numpy(pred), torch.from_numpy(ref)[:, None], [1, 2, 3])
    assert tp.dtype == torch.int64 and tp.shape == (3,)
    expected = dice_per_label(pred, ref, [1, 2, 3])
    dice = dice_from_counts(tp, fp, fn)
    assert dice.tolist() == pytest.approx([expected[k] for k in (1, 2, 3)])
    per_sample_tp = sum(
        confusion_counts(torch.from_numpy(p[None]), torch.from_numpy(r[None]), [1])[0]
        for p, r in zip(pred, ref, strict=True)
    )
    assert tp[0] == per_sample_tp


def test_dice_from_counts_nan_where_empty() -> None:
    dice = dice_from_counts(torch.tensor([0, 3]), torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert math.isnan(dice[0]) and dice[1].item() == pytest.approx(0.75)


def test_confusion_counts_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_counts(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5), [1])


def test_mask_stats_matches_label_stats_and_respects_valid() -> None:
    pred, ref = _crafted()
    from autoseg.evaluation.metrics import mask_stats

    assert mask_stats(pred == 2, ref == 2) == label_stats(pred, ref, [2])[2]
    region = mask_stats(np.isin(pred, [1, 2]), np.isin(ref, [1, 2]))
    assert (region.tp, region.fp, region.fn, region.tn) == (10, 2, 2, 10)
    valid = np.ones_like(ref, dtype=bool)
    valid[:, 2] = False  # the column holding label 1's misses and label 2's false positives
    hidden = mask_stats(pred == 2, ref == 2, valid)
    assert (hidden.tp, hidden.fp, hidden.fn, hidden.tn) == (6, 0, 0, 14)
    with pytest.raises(ValueError, match="differ in shape"):
        mask_stats(pred == 1, (ref == 1)[:, :5])
