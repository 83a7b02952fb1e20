"""Dice + CE loss and its deep-supervision wrapper."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from autoseg.nets import build_network, deep_supervision_weights, num_outputs
from autoseg.training.loss import DeepSupervisionLoss, DiceCELoss, downsample_target


def _target(shape: tuple[int, ...] = (2, 1, 8, 10, 12), classes: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, classes, shape, generator=torch.Generator().manual_seed(seed))


def _perfect_logits(target: torch.Tensor, classes: int, margin: float = 30.0) -> torch.Tensor:
    return F.one_hot(target[:, 0], classes).movedim(-1, 1).float() * margin


@pytest.mark.parametrize("batch_dice", [False, True])
def test_perfect_prediction_is_near_zero_random_is_worse(batch_dice: bool) -> None:
    target = _target()
    loss = DiceCELoss(batch_dice)
    best = loss(_perfect_logits(target, 3), target)
    random = loss(torch.randn(2, 3, 8, 10, 12, generator=torch.Generator().manual_seed(1)), target)
    assert 0 <= best.item() < 1e-5
    assert random.item() > 1.0


@pytest.mark.parametrize("batch_dice", [False, True])
def test_equals_monai_dice_plus_torch_ce(batch_dice: bool) -> None:
    target = _target()
    logits = torch.randn(2, 3, 8, 10, 12, generator=torch.Generator().manual_seed(2))
    monai_dice = DiceLoss(
        include_background=False,
        to_onehot_y=True,
        softmax=True,
        batch=batch_dice,
        smooth_nr=1e-5,
        smooth_dr=1e-5,
    )
    expected = monai_dice(logits, target) + F.cross_entropy(logits, target[:, 0])
    assert DiceCELoss(batch_dice)(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_batch_dice_pools_samples_per_sample_does_not() -> None:
    # Sample 0 holds label 1 and is predicted perfectly; sample 1 has no label 1 but one false positive.
    target = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    target[0, 0, :2] = 1
    pred = target.clone()
    pred[1, 0, 0, 0] = 1
    logits = _perfect_logits(pred, 2)
    per_sample = DiceCELoss(batch_dice=False, weight_ce=0)(logits, target).item()
    pooled = DiceCELoss(batch_dice=True, weight_ce=0)(logits, target).item()
    assert per_sample == pytest.approx(0.5, abs=1e-3)  # mean of Dice 1 and Dice 0
    assert pooled == pytest.approx(1 - 16 / 17, abs=1e-3)  # 2*8 / (9 + 8)


def test_background_is_excluded() -> None:
    # Extra voxels that are background and confidently predicted so leave the Dice part unchanged;
    # a Dice over the background channel too would move.
    target = _target((1, 1, 6, 6, 6))
    logits = torch.randn(1, 3, 6, 6, 6, generator=torch.Generator().manual_seed(3))
    extra_target = torch.zeros(1, 1, 6, 6, 6, dtype=torch.long)
    extra_logits = _perfect_logits(extra_target, 3)
    dice_only = DiceCELoss(batch_dice=False, weight_ce=0)
    base = dice_only(logits, target)
    padded = dice_only(torch.cat([logits, extra_logits], 2), torch.cat([target, extra_target], 2))
    assert padded.item() == pytest.approx(base.item(), abs=1e-6)
    with_bg = DiceLoss(include_background=True, to_onehot_y=True, softmax=True)
    grown = with_bg(torch.cat([logits, extra_logits], 2), torch.cat([target, extra_target], 2))
    assert abs(grown.item() - with_bg(logits, target).item()) > 1e-2


def test_gradient_flows() -> None:
    target = _target()
    logits = torch.randn(2, 3, 8, 10, 12, requires_grad=True)
    DiceCELoss(batch_dice=True)(logits, target).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_ignored_voxels_do_not_count() -> None:
    target = _target()
    target[:, :, :4] = 255
    logits = torch.randn(2, 3, 8, 10, 12, requires_grad=True)
    loss = DiceCELoss(batch_dice=False, ignore_index=255)
    value = loss(logits, target)
    value.backward()
    assert logits.grad is not None
    assert logits.grad[:, :, :4].abs().max() == 0
    scrambled = logits.detach().clone()
    scrambled[:, :, :4] = torch.randn(2, 3, 4, 10, 12) * 100
    assert loss(scrambled, target).item() == pytest.approx(value.item(), rel=1e-6)
    assert torch.isfinite(loss(logits, torch.full_like(target, 255)))
    with pytest.raises(ValueError, match="collides"):
        DiceCELoss(batch_dice=False, ignore_index=1)(logits, target)


def test_target_shape_is_checked() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, \*spatial\)"):
        DiceCELoss(batch_dice=False)(torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long))


def test_downsample_target_picks_every_stride_th_voxel() -> None:
    target = _target((1, 1, 8, 12, 16), classes=5)
    small = downsample_target(target, (4, 6, 4))
    assert torch.equal(small, target[:, :, ::2, ::2, ::4])
    assert downsample_target(target, (8, 12, 16)) is target
    assert downsample_target(target, (3, 5, 7)).shape == (1, 1, 3, 5, 7)


def test_deep_supervision_with_weights_one_zero_is_the_first_head() -> None:
    target = _target((2, 1, 8, 8, 8))
    heads = [torch.randn(2, 3, 8, 8, 8), torch.randn(2, 3, 4, 4, 4)]
    base = DiceCELoss(batch_dice=False)
    assert DeepSupervisionLoss(base, [1, 0])(heads, target).item() == pytest.approx(
        base(heads[0], target).item()
    )
    mixed = DeepSupervisionLoss(base, [0.5, 0.5])(heads, target)
    expected = 0.5 * base(heads[0], target) + 0.5 * base(heads[1], target[:, :, ::2, ::2, ::2])
    assert mixed.item() == pytest.approx(expected.item(), rel=1e-6)
    assert DeepSupervisionLoss(base, [1, 0])(heads[0], target).item() == pytest.approx(
        base(heads[0], target).item()
    )
    with pytest.raises(ValueError, match="2 outputs but 3"):
        DeepSupervisionLoss(base, [0.5, 0.5, 0])(heads, target)


def test_every_parameter_gets_a_gradient_through_the_network() -> None:
    arch = {
        "network": "plain",
        "n_stages": 4,
        "features_per_stage": [4, 8, 16, 32],
        "kernel_sizes": [[3, 3, 3]] * 4,
        "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
    }
    net = build_network(arch, 1, 3).train()
    loss = DeepSupervisionLoss(DiceCELoss(batch_dice=True), deep_supervision_weights(num_outputs(net)))
    loss(net(torch.randn(2, 1, 16, 16, 16)), _target((2, 1, 16, 16, 16))).backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None]
    assert not missing  # the zero-weight head stays in the graph (DDP needs every parameter)


# ---------------------------------------------------------------- regions
BRATS = [(1, 2, 3), (2, 3), (3,)]


def test_region_loss_is_near_zero_for_perfect_region_logits_and_high_for_swapped_ones() -> None:
    from autoseg.training.loss import RegionDiceBCELoss

    target = _target(classes=4)
    loss = RegionDiceBCELoss(BRATS, batch_dice=True)
    regions = loss.region_target(target)
    assert regions.shape == (2, 3, 8, 10, 12)
    assert torch.equal(regions[:, 0], target[:, 0] > 0) and torch.equal(regions[:, 2], target[:, 0] == 3)
    perfect = (regions.float() * 2 - 1) * 30
    assert loss(perfect, target).item() < 1e-3
    assert loss(perfect.flip(1), target).item() > 1.0  # whole and enhancing exchanged


def test_region_loss_masks_the_ignore_label_and_supervises_every_head() -> None:
    from autoseg.training.loss import RegionDiceBCELoss

    target = _target(classes=4)
    target[:, :, :4] = 4
    loss = RegionDiceBCELoss(BRATS, batch_dice=False, ignore_index=4)
    logits = torch.randn(2, 3, 8, 10, 12, requires_grad=True)
    value = loss(logits, target)
    value.backward()
    assert logits.grad is not None and logits.grad[:, :, :4].abs().max() == 0
    assert logits.grad[:, :, 4:].abs().sum() > 0
    with pytest.raises(ValueError, match="part of a region"):
        RegionDiceBCELoss(BRATS, batch_dice=False, ignore_index=3)
    heads = [torch.randn(2, 3, 8, 10, 12, requires_grad=True), torch.randn(2, 3, 4, 5, 6, requires_grad=True)]
    DeepSupervisionLoss(loss, [0.67, 0.33])(heads, target).backward()
    assert all(h.grad is not None and h.grad.abs().sum() > 0 for h in heads)
