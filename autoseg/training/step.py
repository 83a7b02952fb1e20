"""One optimisation step, in full or mixed precision, that never writes NaN weights.

:func:`optimisation_step` runs forward (under autocast when the run uses mixed precision),
backward, gradient clipping and the optimiser step; with fp16 a grad scaler scales the loss and
itself skips steps whose gradients overflow. A step whose *loss* is NaN or infinite is skipped
before the backward pass (the weights stay as they were) and counted by :class:`NonFiniteGuard`;
``max_nonfinite_steps`` such steps in a row stop the run with :class:`NonFiniteLossError`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Protocol

import torch

from autoseg.training.distributed import DistributedContext

log = logging.getLogger("autoseg.train")


class StepParts(Protocol):
    """What a step needs of :class:`autoseg.training.loop.TrainingParts` (which the loop passes)."""

    network: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss: torch.nn.Module
    device: torch.device
    scaler: torch.amp.GradScaler | None
    autocast_dtype: torch.dtype | None
    distributed: DistributedContext
    frozen: tuple[torch.nn.Parameter, ...]


class NonFiniteLossError(RuntimeError):
    """Too many training steps in a row had a NaN/infinite loss."""


class NonFiniteGuard:
    """Counts skipped steps: in this epoch (``skipped``) and in a row across epochs.

    Example:
        >>> guard = NonFiniteGuard(max_in_a_row=3)
        >>> guard.check(float("nan"), epoch=0, iteration=5)
        False
        >>> guard.skipped
        1
    """

    def __init__(self, max_in_a_row: int) -> None:
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0
        self.skipped = 0

    def new_epoch(self) -> None:
        self.skipped = 0

    def check(self, loss: float, epoch: int, iteration: int) -> bool:
        """True when ``loss`` is finite (take the step); else count it, warn, and return False.

        Raises:
            NonFiniteLossError: the ``max_in_a_row``-th non-finite loss in a row.
        """
        if math.isfinite(loss):
            self.in_a_row = 0
            return True
        self.in_a_row += 1
        self.skipped += 1
        log.warning(f"epoch {epoch}, iteration {iteration}: training loss is {loss}; step skipped")
        if self.in_a_row >= self.max_in_a_row:
            raise NonFiniteLossError(
                f"epoch {epoch}, iteration {iteration}: the training loss was not finite ({loss}) for "
                f"{self.in_a_row} steps in a row (trainer.max_nonfinite_steps={self.max_in_a_row}); the "
                "weights are those before the first of them. Lower trainer.lr, try trainer.amp=false or "
                "trainer.amp_dtype=bfloat16, or check the data for NaNs"
            )
        return False


def autocast(parts: StepParts) -> contextlib.AbstractContextManager[Any]:
    """Autocast to ``parts.autocast_dtype`` on the parts' device (nothing for full precision)."""
    if parts.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(parts.device.type, dtype=parts.autocast_dtype)


def _loss_of_all_ranks(parts: StepParts, loss: torch.Tensor) -> float:
    """This rank's loss, or NaN when any rank's loss is not finite (all ranks skip the step together,
    else DDP's gradient all-reduce would wait for the skipping rank forever)."""
    value = float(loss.detach())
    if not parts.distributed.enabled:
        return value
    from autoseg.training.distributed import sum_over_ranks

    bad = torch.tensor([0.0 if math.isfinite(value) else 1.0], dtype=torch.float64)
    return value if float(sum_over_ranks(bad, parts.distributed, parts.device)[0]) == 0 else math.nan


def optimisation_step(
    parts: StepParts,
    image: torch.Tensor,
    target: torch.Tensor,
    grad_clip: float,
    guard: NonFiniteGuard,
    where: tuple[int, int],
) -> torch.Tensor | None:
    """Forward, backward, clip and step on one batch; the detached loss, or None if skipped.

    Args:
        parts: network, loss, optimiser, grad scaler (fp16) and autocast dtype.
        image, target: the batch on the device, (B, C, *patch) and (B, 1, *patch).
        grad_clip: the gradient-norm limit.
        guard: counts non-finite losses (and raises after too many in a row).
        where: (epoch, iteration), for the messages.
    """
    parts.optimizer.zero_grad(set_to_none=True)
    with autocast(parts):
        loss = parts.loss(parts.network(image), target)
    if not guard.check(_loss_of_all_ranks(parts, loss), *where):
        return None
    if parts.scaler is not None:
        parts.scaler.scale(loss).backward()
        _drop_frozen_gradients(parts)
        parts.scaler.unscale_(parts.optimizer)
        torch.nn.utils.clip_grad_norm_(parts.network.parameters(), grad_clip)
        parts.scaler.step(parts.optimizer)  # skipped by the scaler when a gradient overflowed
        parts.scaler.update()
    else:
        loss.backward()
        _drop_frozen_gradients(parts)
        torch.nn.utils.clip_grad_norm_(parts.network.parameters(), grad_clip)
        parts.optimizer.step()
    return loss.detach()


def _drop_frozen_gradients(parts: StepParts) -> None:
    """No gradient for the frozen parameters: the optimiser then skips them entirely (no step, no
    weight decay, no momentum), and they do not count in the gradient-norm clipping. Done after the
    backward pass, so under DDP every rank's all-reduce still sees the same parameters."""
    for p in parts.frozen:
        p.grad = None
