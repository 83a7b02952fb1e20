"""The process machinery of ``autoseg train``'s launchers (:mod:`autoseg.commands.train`).

Not a command module: :mod:`autoseg.commands.train` imports from it.

- ``--gpus``: :func:`parse_gpus` and :func:`child_argv`, which the torchrun relaunch and the
  all-folds queue share, and the device launched processes get (:func:`launch_device`);
- ``all-folds``: the launchers themselves live in :mod:`autoseg.sweep` (the local queue in
  :mod:`autoseg.sweep.local`, SLURM in :mod:`autoseg.sweep.slurm`); their names are re-exported here.
"""

from __future__ import annotations

import argparse

from autoseg.sweep.jobs import FoldJob, fold_mean_dice, summary_table, write_summary
from autoseg.sweep.local import Slot, run_queue, terminate_on_sigterm

__all__ = [
    "FoldJob",
    "Slot",
    "child_argv",
    "fold_mean_dice",
    "parse_gpus",
    "run_queue",
    "summary_table",
    "terminate_on_sigterm",
    "write_summary",
]


def parse_gpus(text: str) -> tuple[int, list[int] | None]:
    """``--gpus``: ``N`` -> (N, None), the first N visible GPUs; ``0,2`` or ``3,`` -> those ids.

    Example:
        >>> parse_gpus("4"), parse_gpus("0,2"), parse_gpus("3,")
        ((4, None), (2, [0, 2]), (1, [3]))
    """
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise ValueError
            return count, None
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--gpus {text!r}: give a count (4) or GPU ids (0,1,2,3; one id as 3,)") from None
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
        raise ValueError(f"--gpus {text!r}: GPU ids must be distinct and >= 0")
    return len(ids), ids


def child_argv(
    args: argparse.Namespace, configuration: str, fold: int | str, device: str | None = None
) -> list[str]:
    """``autoseg`` arguments that run ``configuration`` ``fold`` with this command's other options."""
    argv = ["-v"] if getattr(args, "verbose", False) else []
    argv += ["train", args.dataset, configuration, str(fold), "--trainer", args.trainer]
    argv += ["--device", device] if device is not None else []
    argv += ["--dist-timeout", str(args.dist_timeout), "--checkpoint", args.checkpoint]
    if args.plans_name:
        argv += ["--plans-name", args.plans_name]
    argv += ["--resume"] if args.resume else []
    argv += ["--val-only"] if args.val_only else []
    # launcher.* overrides configure the launcher, not the training
    return argv + [o for o in args.overrides or [] if not o.startswith(("launcher.", "launcher="))]


def launch_device(args: argparse.Namespace, what: str) -> str:
    """The ``--device`` of launched processes: cpu, or cuda (each picks its GPU)."""
    import torch

    if args.device == "cpu":
        return "cpu"
    if args.device not in ("auto", "cuda"):
        raise ValueError(f"{what}: --device {args.device}: use cuda (pick GPUs with --gpus) or cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"{what}: no CUDA GPU is visible; add --device cpu to run CPU processes instead")
    return "cuda"
