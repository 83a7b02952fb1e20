"""The learning-rate schedule: linear warm-up, nnU-Net's poly decay, and extending a finished run.

- ``lr(epoch)`` with ``trainer.warmup_epochs = w`` (0 by default: nnU-Net's schedule):
  ``lr * (epoch + 1) / w`` for the first ``w`` epochs, then
  ``lr * (1 - (epoch - w) / (epochs - w)) ** poly_exponent`` (decaying to 0 at ``epochs``).
- **Extending a run** (``autoseg train ... --resume trainer.epochs=N`` with N other than the epochs
  the run was started with): recomputing the poly curve for N would jump the learning rate up
  (a run that finished at 1000 epochs has an lr near 0; the curve for 2000 epochs is at half of
  the start lr there; nnU-Net #901). Instead the curve continues from the last trained epoch:
  ``lr(e) = lr_last * ((N - e) / (N - e_last)) ** poly_exponent`` for ``e > e_last``, where
  ``e_last`` is the last trained epoch and ``lr_last`` its learning rate: continuous, never
  rising, 0 at N. The anchor ``(e_last, lr_last, N)`` is kept in the training state, so a resumed
  extension continues the same curve, and extending again anchors at the new last epoch.
- N below the epochs already trained is refused (:func:`extension_anchor`).

Example:
    >>> from autoseg.training.config import TrainerConfig
    >>> cfg = TrainerConfig(epochs=10, lr=0.01, warmup_epochs=2)
    >>> [round(learning_rate(cfg, e), 4) for e in (0, 1, 2)]
    [0.005, 0.01, 0.01]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autoseg.training.config import TrainerConfig

__all__ = ["extension_anchor", "learning_rate"]


def learning_rate(cfg: TrainerConfig, epoch: int, anchor: Mapping[str, Any] | None = None) -> float:
    """The learning rate of ``epoch`` (module docstring); ``anchor``: a run's extension, or None."""
    p = cfg.poly_exponent
    if anchor is not None and epoch > int(anchor["epoch"]):
        start, end = int(anchor["epoch"]), int(anchor["end"])
        return float(anchor["lr"]) * (max(end - epoch, 0) / (end - start)) ** p
    w = cfg.warmup_epochs
    if epoch < w:
        return cfg.lr * (epoch + 1) / w
    return cfg.lr * max(1 - (epoch - w) / (cfg.epochs - w), 0.0) ** p


def extension_anchor(
    cfg: TrainerConfig,
    trained_epochs: int,
    history: Sequence[Mapping[str, Any]],
    started_with: int,
    anchor: Mapping[str, Any] | None,
    where: str,
) -> dict[str, Any] | None:
    """The anchor of the lr curve after resuming with ``cfg.epochs`` (None: the run's own schedule).

    Args:
        cfg: the trainer settings of the resumed run.
        trained_epochs: epochs completed so far.
        history: the records of those epochs (each has its ``lr``).
        started_with: ``trainer.epochs`` of the checkpoint (the schedule trained so far).
        anchor: the anchor already in the checkpoint (an extension being resumed), or None.
        where: the checkpoint, for the message.

    Raises:
        ValueError: ``cfg.epochs`` is below the epochs already trained.
    """
    if cfg.epochs < trained_epochs:
        raise ValueError(
            f"{where}: this run has already trained {trained_epochs} epochs, so trainer.epochs={cfg.epochs} "
            f"cannot be reached by resuming; give trainer.epochs={trained_epochs} or more to extend it, or "
            "train a new run without --resume"
        )
    if cfg.epochs == started_with or not history or cfg.epochs == trained_epochs:
        return dict(anchor) if anchor is not None else None
    last = history[-1]
    return {
        "epoch": int(last["epoch"]),
        "lr": float(last["lr"]),
        "end": cfg.epochs,
        "from_epochs": started_with,
    }
