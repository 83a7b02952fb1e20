"""The optimiser a trainer config names (``trainer.optimizer.name``), from a small registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from autoseg.training.config import TrainerConfig

__all__ = ["OPTIMIZER_BUILDERS", "build_optimizer"]

Builder = Callable[[Iterable[torch.nn.Parameter], TrainerConfig], torch.optim.Optimizer]


def _sgd(params: Iterable[torch.nn.Parameter], cfg: TrainerConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.optimizer.nesterov,
    )


def _adam(params: Iterable[torch.nn.Parameter], cfg: TrainerConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.optimizer.betas, weight_decay=cfg.weight_decay)


def _adamw(params: Iterable[torch.nn.Parameter], cfg: TrainerConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.optimizer.betas, weight_decay=cfg.weight_decay)


#: name -> builder; the names are :data:`autoseg.training.config.OPTIMIZERS`.
OPTIMIZER_BUILDERS: dict[str, Builder] = {"sgd": _sgd, "adam": _adam, "adamw": _adamw}


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainerConfig) -> torch.optim.Optimizer:
    """The optimiser of ``cfg`` over ``params`` (nnU-Net's: SGD 0.01, momentum 0.99, Nesterov).

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> type(build_optimizer(net.parameters(), TrainerConfig())).__name__
        'SGD'
    """
    return OPTIMIZER_BUILDERS[cfg.optimizer.name](params, cfg)
