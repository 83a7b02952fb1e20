"""Where training augmentation runs: in the data workers or on the device, chosen by measurement.

``trainer.augment_on``:

- ``workers``: each batch is augmented in the loader's worker processes (``Augmenter.apply``);
- ``device``: the workers only crop; ``Augmenter.apply_batch`` augments the batch on the training
  device (:func:`autoseg.training.device_batches.augment_on_device`);
- ``auto``: workers on the CPU. On CUDA, epoch 0 runs with workers and measures the data wait;
  when it exceeds :data:`WAIT_THRESHOLD` of the training time (first step excluded: worker
  start-up, compilation), epoch 1 on runs on the device.

Either way batch k is drawn from (seed, k) alone (the same crops and parameters); only where the
arithmetic runs changes. The decision (and the measurements behind it) is logged, recorded in
run.json and kept in the checkpoints, so a resumed run augments where the interrupted one did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from autoseg.training.device_batches import DeviceTransform
from autoseg.training.loop import TrainingParts, TrainState

WAIT_THRESHOLD = 0.05

MakeBatches = Callable[[bool, int], Iterator[dict[str, Any]]]


@dataclass
class AugmentPlacement:
    """The ``augment_on`` setting of a run and, under ``auto``, the callback that applies it.

    Args:
        configured: ``auto``, ``workers`` or ``device``.
        parts: the run's parts (their ``train_batches`` and ``on_device_transform`` are switched).
        make_batches: ``make_batches(on_device, start_batch)``: the host training batches from
            ``start_batch`` on, crops and parameters when ``on_device``.
        transform: the device augmentation.
        iterations_per_epoch: batches per epoch.
        measure: decide by measurement after the first epoch (``auto`` on CUDA; tests force it).
        say: where the decision is logged.
        decision: what was decided (from a resumed checkpoint, or None).
    """

    configured: str
    parts: TrainingParts
    make_batches: MakeBatches
    transform: DeviceTransform
    iterations_per_epoch: int
    measure: bool
    say: Callable[[str], None] = print
    decision: dict[str, Any] | None = None
    on_decision: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)

    @classmethod
    def initial(cls, configured: str, device: torch.device, saved: dict[str, Any] | None) -> dict[str, Any]:
        """The placement a run starts with: the saved decision of a resumed run, else the setting."""
        if saved is not None and saved.get("configured") == configured:
            return saved
        if configured != "auto":
            return {"configured": configured, "used": configured, "reason": "set by trainer.augment_on"}
        if device.type != "cuda":
            return {"configured": "auto", "used": "workers", "reason": f"auto on {device.type}: workers"}
        return {
            "configured": "auto",
            "used": "workers",
            "reason": "measuring the data wait of the first epoch",
        }

    def start(self, state: TrainState, placement: dict[str, Any]) -> None:
        """Set the parts up for ``placement`` at ``state.epoch``."""
        self.decision = placement if "data_wait_share" in placement or not self.measure else None
        if placement["used"] == "device":
            self._switch(state.epoch)

    def _switch(self, epoch: int) -> None:
        self.parts.train_batches = self.make_batches(True, epoch * self.iterations_per_epoch)
        self.parts.on_device_transform = self.transform

    def __call__(self, state: TrainState, record: dict[str, Any]) -> None:
        """After an epoch: the first measured epoch of ``auto`` decides (same on every rank)."""
        if self.decision is not None or not self.measure:
            return
        share = _mean_over_ranks(self.parts, float(record["steady_wait_share"]))
        to_device = share > WAIT_THRESHOLD
        self.decision = {
            "configured": self.configured,
            "used": "device" if to_device else "workers",
            "reason": (
                f"data wait {share:.1%} of the training time in epoch {record['epoch']} "
                f"({'>' if to_device else '<='} {WAIT_THRESHOLD:.0%}), step time "
                f"{record['step_time'] * 1000:.1f} ms"
            ),
            "decided_after_epoch": record["epoch"],
            "data_wait_share": share,
            "data_wait_s": record["data_wait"],
            "step_time_s": record["step_time"],
        }
        state.augment_on = self.decision
        self.say(f"augmentation on the {'device' if to_device else 'workers'}: {self.decision['reason']}")
        if to_device:
            self._switch(state.epoch)
        for hook in self.on_decision:
            hook(self.decision)


def _mean_over_ranks(parts: TrainingParts, value: float) -> float:
    if not parts.distributed.enabled:
        return value
    from autoseg.training.distributed import sum_over_ranks

    total = sum_over_ranks(torch.tensor([value], dtype=torch.float64), parts.distributed, parts.device)
    return float(total[0]) / parts.distributed.world_size
