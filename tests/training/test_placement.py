"""Augmentation on the device (``trainer.augment_on``), forced on the CPU: the same batches as in the
workers, image and label aligned, batch k from (seed, k) alone; and the ``auto`` switch."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace

import torch

from autoseg.training.config import TrainerConfig
from autoseg.training.loop import TrainState
from autoseg.training.placement import AugmentPlacement
from autoseg.training.setup import _placement, build_parts, train_fold
from tests.presets import fast_trainer
from tests.training.test_train import fold_spec

CPU = torch.device("cpu")
CFG = fast_trainer(epochs=2, iterations_per_epoch=3, final_validation=False, seed=3)


def _parts(task, tmp_path, cfg: TrainerConfig, start_epoch: int = 0):
    parts = build_parts(fold_spec(task, tmp_path / "fold_0"), cfg, CPU, start_epoch)
    state = TrainState(epoch=start_epoch)
    state.augment_on = AugmentPlacement.initial(cfg.augment_on, CPU, None)
    return parts, _placement(parts, cfg, state, lambda line: None), state


def _batches(parts, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    batches = parts.device_batches()
    return [next(batches) for _ in range(n)]


def _contrast(image: torch.Tensor, target: torch.Tensor) -> list[float]:
    """Per sample with foreground: mean image inside the label minus outside (the objects are bright)."""
    out = []
    for b in range(image.shape[0]):
        inside = target[b, 0] > 0
        if inside.any() and (~inside).any():
            out.append(float(image[b, 0][inside].mean() - image[b, 0][~inside].mean()))
    return out


def test_forced_device_augmentation_matches_the_workers_and_keeps_labels_aligned(easy_task, tmp_path):
    workers, _, _ = _parts(easy_task, tmp_path, replace(CFG, augment_on="workers"))
    device, _, _ = _parts(easy_task, tmp_path, replace(CFG, augment_on="device"))
    assert device.on_device_transform is not None and workers.on_device_transform is None
    contrasts, shifted = [], []
    for (wi, wt), (di, dt) in zip(_batches(workers, 4), _batches(device, 4), strict=True):
        torch.testing.assert_close(di, wi, atol=1e-3, rtol=1e-4)
        assert (dt != wt).float().mean() < 1e-3 and dt.dtype == torch.int64
        contrasts += _contrast(di, dt)
        shifted += _contrast(di, dt.roll(6, dims=-1))  # a label out of place against its image
    assert contrasts and min(contrasts) > 1.0, contrasts
    assert sum(shifted) / len(shifted) < sum(contrasts) / len(contrasts) - 0.5, (contrasts, shifted)
    # batch k comes from (seed, k) alone: a run starting at epoch 1 gets batch 3 as its first
    later, _, _ = _parts(easy_task, tmp_path, replace(CFG, augment_on="device"), start_epoch=1)
    again, _, _ = _parts(easy_task, tmp_path, replace(CFG, augment_on="device"))
    torch.testing.assert_close(_batches(later, 1)[0][0], _batches(again, 4)[3][0], atol=0, rtol=0)


def test_auto_moves_augmentation_to_the_device_when_the_data_wait_is_high(easy_task, tmp_path):
    """The CUDA decision, run on the CPU: epoch 0 in the workers, then the device from epoch 1 on."""
    cfg = replace(CFG, augment_on="auto")
    parts, placement, state = _parts(easy_task, tmp_path, cfg)
    assert parts.on_device_transform is None and placement.decision is not None  # CPU: workers, decided
    placement.measure, placement.decision = True, None  # as on CUDA
    decisions = []
    placement.on_decision.append(decisions.append)
    _batches(parts, 3)  # epoch 0
    state.epoch = 1
    record = {"epoch": 0, "steady_wait_share": 0.2, "data_wait": 0.5, "step_time": 0.1}
    placement(state, record)
    assert parts.on_device_transform is not None and state.augment_on["used"] == "device"
    assert decisions[0]["data_wait_share"] == 0.2 and "20.0%" in decisions[0]["reason"]
    reference, _, _ = _parts(easy_task, tmp_path, replace(CFG, augment_on="workers"))
    torch.testing.assert_close(_batches(parts, 1)[0][0], _batches(reference, 4)[3][0], atol=1e-3, rtol=1e-4)
    placement(state, {**record, "epoch": 1})  # decided once
    assert len(decisions) == 1
    # a low wait keeps the workers
    parts, placement, state = _parts(easy_task, tmp_path, cfg)
    placement.measure, placement.decision = True, None
    placement(state, {**record, "steady_wait_share": 0.01})
    assert parts.on_device_transform is None and state.augment_on["used"] == "workers"


class InterruptError(Exception):
    pass


def test_training_with_device_augmentation_resumes_exactly(easy_task, tmp_path):
    cfg = replace(CFG, augment_on="device", deterministic=True)
    straight = train_fold(fold_spec(easy_task, tmp_path / "straight"), cfg, CPU)

    def stop(state, record):
        if state.epoch == 1:
            raise InterruptError

    spec = fold_spec(easy_task, tmp_path / "resumed")
    with contextlib.suppress(InterruptError):
        train_fold(spec, cfg, CPU, extra_callbacks=(stop,))
    resumed = train_fold(spec, cfg, CPU, resume=True)
    run = json.loads((spec.output / "run.json").read_text())
    assert run["augment_on"]["used"] == "device" and resumed.augment_on["used"] == "device"
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]


def test_a_resumed_auto_run_keeps_the_measured_decision():
    measured = {"configured": "auto", "used": "device", "reason": "...", "data_wait_share": 0.3}
    assert AugmentPlacement.initial("auto", torch.device("cuda"), measured) is measured
    assert AugmentPlacement.initial("workers", torch.device("cuda"), measured)["used"] == "workers"
    assert AugmentPlacement.initial("auto", CPU, None)["used"] == "workers"
