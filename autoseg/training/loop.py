"""The training loop: a short driver over injected parts, extended through callbacks.

:func:`run_training` is the whole schedule: per epoch, set the learning rate, train
``iterations_per_epoch`` steps, validate ``val_iterations`` batches, then hand the epoch's
record to the callbacks (logging, checkpoints, early stop). Everything it uses is built
elsewhere (:mod:`autoseg.training.setup`) and passed in as :class:`TrainingParts`.

Under data-parallel training (``parts.distributed`` with several ranks) every rank runs this same
loop on its share of each batch; the epoch's losses are averaged and the pseudo-Dice counts summed
over the ranks, so every rank ends the epoch with the same record (and takes the same decisions).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from autoseg.evaluation.metrics import confusion_counts, dice_from_counts
from autoseg.training.config import TrainerConfig
from autoseg.training.device_batches import (
    DevicePrefetcher,
    DeviceTransform,
    peak_memory_gb,
    reset_peak_memory,
)
from autoseg.training.distributed import DistributedContext, sum_over_ranks
from autoseg.training.schedule import learning_rate
from autoseg.training.step import NonFiniteGuard, autocast, optimisation_step
from autoseg.utils.faults import reached


@dataclass
class TrainingParts:
    """What the loop works with, built by the caller.

    Attributes:
        network: the model; in train mode it returns what ``loss`` takes, in eval mode logits (B, K, ...).
        optimizer: the optimizer (its lr is set each epoch).
        loss: the training loss (deep supervision included).
        val_loss: the loss on eval-mode logits.
        train_batches: an iterator of host batches {"image": (B, C, ...), "target": (B, 1, ...)}
            (with augmentation on the device: crops and their ``params``); the loop copies them to
            the device one batch ahead (:class:`~autoseg.training.device_batches.DevicePrefetcher`).
        val_batches: the same for validation (no augmentation).
        labels: the foreground label values, for the pseudo-Dice (one entry per region with regions).
        device: where the network runs.
        scaler: a GradScaler for fp16 mixed precision, else None.
        autocast_dtype: torch.bfloat16/float16 for mixed precision, None for full precision.
        on_device_transform: applied to each training batch on the device (GPU augmentation), or None.
        distributed: this process's place in a data-parallel run (default: a single process).
        ignore_label: target value of unannotated voxels, left out of the pseudo-Dice.
        regions: the values of each region (region-based training: sigmoid outputs, one per region,
            scored as ``logit > 0`` against the union of the region's values); None for softmax.
        max_nonfinite_steps: non-finite losses in a row that stop the run
            (:class:`~autoseg.training.step.NonFiniteGuard`).
        make_train_batches: ``make_train_batches(on_device, start_batch)`` rebuilds ``train_batches``
            from ``start_batch`` on, as crops for device augmentation when ``on_device``
            (:mod:`autoseg.training.placement`); None where that is not possible.
        device_augmentation: the transform that augments those crops on the device, or None.
        encoder_parameters: the encoder's parameters (``trainer.freeze_encoder_epochs``).
        frozen: the parameters the optimiser leaves as they are this epoch (set by the loop).
    """

    network: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss: torch.nn.Module
    val_loss: torch.nn.Module
    train_batches: Iterator[dict[str, Any]]
    val_batches: Iterator[dict[str, Any]]
    labels: Sequence[int]
    device: torch.device
    scaler: torch.amp.GradScaler | None = None
    autocast_dtype: torch.dtype | None = None
    on_device_transform: DeviceTransform | None = None
    distributed: DistributedContext = field(default_factory=DistributedContext)
    ignore_label: int | None = None
    regions: Sequence[Sequence[int]] | None = None
    max_nonfinite_steps: int = 10
    make_train_batches: Callable[[bool, int], Iterator[dict[str, Any]]] | None = None
    device_augmentation: DeviceTransform | None = None
    encoder_parameters: tuple[torch.nn.Parameter, ...] = ()
    frozen: tuple[torch.nn.Parameter, ...] = ()
    _prefetcher: DevicePrefetcher | None = field(default=None, init=False, repr=False)
    _guard: NonFiniteGuard | None = field(default=None, init=False, repr=False)

    def device_batches(self) -> DevicePrefetcher:
        """The training batches on the device (rebuilt when ``train_batches`` or the transform change)."""
        p = self._prefetcher
        if p is None or p.source is not self.train_batches or p.transform is not self.on_device_transform:
            self._prefetcher = DevicePrefetcher(self.train_batches, self.device, self.on_device_transform)
        return self._prefetcher  # type: ignore[return-value]

    @property
    def guard(self) -> NonFiniteGuard:
        """Counts skipped non-finite steps (in a row across epochs)."""
        if self._guard is None:
            self._guard = NonFiniteGuard(self.max_nonfinite_steps)
        return self._guard


@dataclass
class TrainState:
    """What a run has done so far; saved in every checkpoint.

    Attributes:
        epoch: the next epoch to run (= epochs completed).
        ema_dice: moving average of the mean foreground pseudo-Dice (None before the first epoch).
        best_ema: the best ``ema_dice`` so far, and ``best_epoch`` where it was reached.
        history: one record per completed epoch.
        stop: set by a callback to end the run after this epoch.
        augment_on: where augmentation runs and why (:mod:`autoseg.training.placement`).
        lr_anchor: where an extended run's lr curve continues from
            (:func:`autoseg.training.schedule.extension_anchor`), or None.
    """

    epoch: int = 0
    ema_dice: float | None = None
    best_ema: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    stop: bool = False
    augment_on: dict[str, Any] | None = None
    lr_anchor: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "ema_dice": self.ema_dice,
            "best_ema": self.best_ema,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "augment_on": self.augment_on,
            "lr_anchor": self.lr_anchor,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        return cls(
            data["epoch"],
            data["ema_dice"],
            data["best_ema"],
            data["best_epoch"],
            list(data["history"]),
            augment_on=data.get("augment_on"),
            lr_anchor=data.get("lr_anchor"),
        )


Callback = Callable[[TrainState, dict[str, Any]], None]


def poly_lr(cfg: TrainerConfig, epoch: int) -> float:
    """nnU-Net's polynomial decay: ``lr * (1 - epoch / epochs) ** exponent`` (after any warm-up;
    :func:`autoseg.training.schedule.learning_rate`)."""
    return learning_rate(cfg, epoch)


def _over_ranks(parts: TrainingParts, values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over the ranks (unchanged for a single process)."""
    return sum_over_ranks(values, parts.distributed, parts.device)


def train_epoch(parts: TrainingParts, cfg: TrainerConfig, epoch: int) -> dict[str, Any]:
    """``cfg.iterations_per_epoch`` optimisation steps; returns loss, data wait, timing and memory.

    The record: ``train_loss`` (mean over the steps taken), ``data_wait`` and ``train_time`` (s),
    ``step_time`` (s per step), ``samples_per_s``, ``skipped_steps`` (non-finite losses),
    ``peak_gpu_mem_gb`` (None off CUDA), and ``steady_wait_share``: the data wait as a share of
    the training time without the first step (worker start-up, compilation), which decides
    ``augment_on=auto``. Under DDP the loss is the mean over the ranks, ``samples_per_s`` the
    throughput of all ranks together, and the times this rank's.
    """
    parts.network.train()
    reset_peak_memory(parts.device)
    parts.guard.new_epoch()
    total, wait, samples, taken = torch.zeros((), device=parts.device), 0.0, 0, 0
    first_wait = first_step = 0.0
    batches = parts.device_batches()
    start = time.perf_counter()
    quiet = not parts.distributed.is_main
    steps = tqdm(
        range(cfg.iterations_per_epoch), desc=f"epoch {epoch}", leave=False, file=sys.stderr, disable=quiet
    )
    for iteration in steps:
        t = time.perf_counter()
        image, target = next(batches)
        wait += time.perf_counter() - t
        loss = optimisation_step(parts, image, target, cfg.grad_clip, parts.guard, (epoch, iteration))
        if loss is not None:
            total, taken = total + loss, taken + 1
        samples += image.shape[0]
        if iteration == 0:
            first_wait, first_step = wait, time.perf_counter() - start
        reached("iteration")  # fault injection (tests): AUTOSEG_KILL_AT=iteration:N
    elapsed = time.perf_counter() - start
    mean_loss = float(total) / max(taken, 1) if taken else math.nan
    if parts.distributed.enabled:
        reduced = _over_ranks(parts, torch.tensor([mean_loss, samples], dtype=torch.float64))
        mean_loss, samples = float(reduced[0]) / parts.distributed.world_size, int(reduced[1])
    steady = elapsed - first_step
    return {
        "train_loss": mean_loss,
        "data_wait": wait,
        "train_time": elapsed,
        "step_time": elapsed / cfg.iterations_per_epoch,
        "samples_per_s": samples / max(elapsed, 1e-9),
        "skipped_steps": parts.guard.skipped,
        "peak_gpu_mem_gb": peak_memory_gb(parts.device),
        "steady_wait_share": (wait - first_wait) / steady if steady > 0 else wait / max(elapsed, 1e-9),
    }


@torch.no_grad()
def validate_epoch(parts: TrainingParts, cfg: TrainerConfig) -> dict[str, Any]:
    """Loss and global pseudo-Dice per foreground label over ``cfg.val_iterations`` batches.

    Under DDP the counts are summed and the loss averaged over the ranks.
    """
    parts.network.eval()
    n = len(parts.labels)
    tp, fp, fn = (torch.zeros(n, dtype=torch.float64) for _ in range(3))
    total = 0.0
    for _ in range(cfg.val_iterations):
        batch = next(parts.val_batches)
        image = batch["image"].to(parts.device, non_blocking=True)
        target = batch["target"].to(parts.device, non_blocking=True)
        with autocast(parts):
            logits = parts.network(image)
            total += float(parts.val_loss(logits, target))
        counts = _counts(parts, logits, target)
        tp, fp, fn = tp + counts[0].cpu(), fp + counts[1].cpu(), fn + counts[2].cpu()
    if parts.distributed.enabled:
        reduced = _over_ranks(parts, torch.cat([tp, fp, fn, torch.tensor([total], dtype=torch.float64)]))
        tp, fp, fn = reduced[:n], reduced[n : 2 * n], reduced[2 * n : 3 * n]
        total = float(reduced[-1]) / parts.distributed.world_size
    dice = dice_from_counts(tp, fp, fn) if cfg.val_iterations else torch.full((n,), math.nan)
    return {"val_loss": total / max(cfg.val_iterations, 1), "pseudo_dice": [float(d) for d in dice]}


def _counts(
    parts: TrainingParts, logits: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tp, fp, fn) per foreground label, or per region (``logit > 0``), ignore voxels excluded."""
    if parts.regions is None:
        return confusion_counts(logits.argmax(1), target[:, 0], parts.labels, parts.ignore_label)
    labels = target[:, 0]
    valid = labels != parts.ignore_label if parts.ignore_label is not None else torch.ones_like(labels) > 0
    tp, fp, fn = [], [], []
    for channel, values in enumerate(parts.regions):
        p = (logits[:, channel] > 0) & valid
        t = torch.isin(labels, labels.new_tensor(list(values)))
        tp.append(torch.count_nonzero(p & t))
        fp.append(torch.count_nonzero(p & ~t))
        fn.append(torch.count_nonzero(~p & t))
    return torch.stack(tp), torch.stack(fp), torch.stack(fn)


def run_training(
    parts: TrainingParts, cfg: TrainerConfig, state: TrainState, callbacks: Sequence[Callback]
) -> None:
    """Train from ``state.epoch`` to ``cfg.epochs`` (or until a callback sets ``state.stop``)."""
    while state.epoch < cfg.epochs and not state.stop:
        epoch, start = state.epoch, time.perf_counter()
        lr = learning_rate(cfg, epoch, state.lr_anchor)
        for group in parts.optimizer.param_groups:
            group["lr"] = lr
        parts.frozen = parts.encoder_parameters if epoch < cfg.freeze_encoder_epochs else ()
        record: dict[str, Any] = {"epoch": epoch, "lr": lr, **train_epoch(parts, cfg, epoch)}
        record.update(validate_epoch(parts, cfg))
        present = [d for d in record["pseudo_dice"] if not math.isnan(d)]
        mean = sum(present) / len(present) if present else 0.0
        m = cfg.ema_momentum
        state.ema_dice = mean if state.ema_dice is None else m * state.ema_dice + (1 - m) * mean
        record.update(mean_dice=mean, ema_dice=state.ema_dice, epoch_time=time.perf_counter() - start)
        record["improved"] = state.ema_dice > state.best_ema
        if record["improved"]:
            state.best_ema, state.best_epoch = state.ema_dice, epoch
        state.history.append(record)
        state.epoch = epoch + 1
        for callback in callbacks:
            callback(state, record)
