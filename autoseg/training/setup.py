"""Build everything one fold's training needs from the plans, then run it.

:func:`train_fold` is what ``autoseg train DATASET CONFIG FOLD`` calls: it reads the plans
and splits, builds data, network, optimiser and loss from factories, resumes from the
latest checkpoint if asked, runs :func:`autoseg.training.loop.run_training` with the
logging/checkpoint/early-stop callbacks, and validates the fold at the end.

Under data-parallel training (a :class:`~autoseg.training.distributed.DistributedContext` with
several ranks, set up by the caller) every rank builds its parts and runs the loop; rank 0 alone
writes the log, the checkpoints and the final validation (module docstring of
:mod:`autoseg.training.distributed`).

What a run writes and reads back (checkpoints, run.json, the final validation) is in
:mod:`autoseg.training.fold_io`; its names are importable from here too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import torch

from autoseg.contracts.labels import LabelManager
from autoseg.data.cases import PreprocessedCases
from autoseg.data.loader import BatchDataset, make_loader
from autoseg.data.sampling import PatchSampler
from autoseg.nets.factory import build_network, deep_supervision_weights
from autoseg.training.config import TrainerConfig
from autoseg.training.distributed import DistributedContext, barrier, batch_share, describe_split, wrap_ddp
from autoseg.training.fold_io import (
    Checkpointer,
    _finish,
    _resume_checkpoint,
    restore_parts,
    resume_note,
    write_run_info,
)
from autoseg.training.fold_io import checkpoint_state as checkpoint_state  # re-exported
from autoseg.training.fold_io import validate_only as validate_only  # re-exported
from autoseg.training.fold_io import versions as versions  # re-exported
from autoseg.training.logging import RunLog
from autoseg.training.loop import Callback, TrainingParts, TrainState, run_training
from autoseg.training.loss import DeepSupervisionLoss, DiceCELoss, RegionDiceBCELoss
from autoseg.training.spec import FoldSpec as FoldSpec  # re-exported
from autoseg.training.spec import fold_cases as fold_cases  # re-exported
from autoseg.utils.device import pick_device as pick_device  # re-exported

log = logging.getLogger("autoseg.train")

SINGLE_PROCESS = DistributedContext()


def _num_workers(cfg: TrainerConfig, processes_per_node: int = 1) -> int:
    """The configured data workers, or min(cores - 1, 12) shared by the ranks of this node."""
    if cfg.num_workers is not None:
        return cfg.num_workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(cores // processes_per_node - 1, 12))


def _mixed_precision(cfg: TrainerConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, needs a grad scaler): bf16 where supported, fp16 + scaler otherwise; off on CPU."""
    if not cfg.amp or device.type != "cuda":
        return None, False
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


def build_parts(
    spec: FoldSpec,
    cfg: TrainerConfig,
    device: torch.device,
    start_epoch: int,
    distributed: DistributedContext = SINGLE_PROCESS,
) -> TrainingParts:
    """Data loaders, network, optimiser and losses for a fold (the factories, in one place).

    With several ranks, the loaders build this rank's share of every global batch and the network
    is wrapped in DistributedDataParallel.
    """
    conf = spec.conf
    patch = list(cfg.patch_size or conf.patch_size)
    batch_size = cfg.batch_size or conf.batch_size
    share = batch_share(batch_size, distributed.rank, distributed.world_size) if distributed.enabled else None
    from autoseg.data.augment import Augmenter

    in_channels = spec.plans.num_channels
    label_manager = spec.plans.labels
    regions = label_manager.region_values if label_manager.has_regions else None
    augmenter = Augmenter(patch, num_channels=in_channels)  # nnU-Net's augmentation set for this patch
    train_sampler = PatchSampler(
        PreprocessedCases(spec.data_folder, spec.train_cases),
        patch,
        batch_size,
        cfg.oversample_foreground,
        augmenter.crop_size,
        regions,
    )
    val_sampler = PatchSampler(
        PreprocessedCases(spec.data_folder, spec.val_cases),
        patch,
        batch_size,
        cfg.oversample_foreground,
        regions=regions,
    )
    workers = _num_workers(cfg, distributed.local_world_size)
    pin = device.type == "cuda"
    per_epoch, val_per_epoch = cfg.iterations_per_epoch, cfg.val_iterations
    train_loader = make_loader(
        BatchDataset(train_sampler, augmenter, cfg.seed, stream=0, samples=share),
        start_epoch * per_epoch,
        cfg.epochs * per_epoch,
        workers,
        pin,
    )
    val_loader = make_loader(
        BatchDataset(val_sampler, None, cfg.seed, stream=1, samples=share),
        start_epoch * val_per_epoch,
        cfg.epochs * val_per_epoch,
        max(0, workers // 2),
        pin,
    )
    torch.manual_seed(cfg.seed)  # the same initial weights for the same seed (on every rank)
    network = build_network(conf.architecture, in_channels, label_manager.num_outputs).to(device)
    if cfg.compile:
        network = torch.compile(network)  # type: ignore[assignment]
    network = wrap_ddp(network, distributed, device)
    optimizer = torch.optim.SGD(
        network.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
    )
    base = make_loss(label_manager, conf.batch_dice)
    heads = conf.architecture.n_stages - 1
    dtype, needs_scaler = _mixed_precision(cfg, device)
    return TrainingParts(
        network=network,
        optimizer=optimizer,
        loss=DeepSupervisionLoss(base, deep_supervision_weights(heads)),
        val_loss=base,
        train_batches=iter(train_loader),
        val_batches=iter(val_loader),
        labels=list(range(1, label_manager.num_outputs + 1))
        if label_manager.has_regions
        else [v for v in label_manager.class_values if v != 0],
        device=device,
        scaler=torch.amp.GradScaler("cuda") if needs_scaler else None,
        autocast_dtype=dtype,
        distributed=distributed,
        ignore_label=label_manager.ignore_label,
        regions=regions,
    )


def make_loss(labels: LabelManager, batch_dice: bool) -> DiceCELoss | RegionDiceBCELoss:
    """The loss the labels need: Dice + BCE per region (sigmoid outputs) with regions, else Dice + CE
    (softmax); the ignore label, if any, masked out of both terms."""
    if labels.has_regions:
        return RegionDiceBCELoss(labels.region_values, batch_dice, ignore_index=labels.ignore_label)
    return DiceCELoss(batch_dice=batch_dice, ignore_index=labels.ignore_label)


def early_stop(cfg: TrainerConfig, say: Callable[[str], None]) -> Callback:
    """Callback: stop after ``cfg.early_stop_patience`` epochs without a better EMA pseudo-Dice.

    Runs on every rank (the EMA is the same on all of them), so all ranks stop after the same epoch.
    """

    def check(state: TrainState, record: dict[str, Any]) -> None:
        patience = cfg.early_stop_patience
        if patience is not None and state.epoch - 1 - state.best_epoch >= patience:
            say(
                f"early stop: no better EMA pseudo-Dice for {patience} epochs (best at epoch "
                f"{state.best_epoch})"
            )
            state.stop = True

    return check


def _set_determinism(cfg: TrainerConfig) -> None:
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = not cfg.deterministic


def _start_lines(
    spec: FoldSpec,
    cfg: TrainerConfig,
    device: torch.device,
    epoch: int,
    resume: bool,
    distributed: DistributedContext,
) -> list[str]:
    """What the log says before the first epoch: the run, and how the batch is split over the ranks."""
    ranks = f" x {distributed.world_size} ranks ({distributed.backend})" if distributed.enabled else ""
    lines = [
        f"{'resuming at' if resume else 'starting'} epoch {epoch} of {cfg.epochs}: "
        f"{spec.configuration} fold {spec.fold}, {len(spec.train_cases)} training / "
        f"{len(spec.val_cases)} validation cases, device {device}{ranks}"
    ]
    if distributed.enabled:
        lines.append(describe_split(cfg.batch_size or spec.conf.batch_size, distributed.world_size))
    return lines


def train_fold(
    spec: FoldSpec,
    cfg: TrainerConfig,
    device: torch.device,
    resume: bool = False,
    config: dict[str, Any] | None = None,
    extra_callbacks: tuple[Callback, ...] = (),
    distributed: DistributedContext = SINGLE_PROCESS,
) -> TrainState:
    """Train one fold (resuming from checkpoint_latest.pt if asked) and validate it.

    Args:
        spec: the fold.
        cfg: the trainer settings.
        device: this process's device (under DDP: this rank's).
        resume: continue from ``checkpoint_latest.pt`` (exactly, with the same number of ranks).
        config: the resolved hydra config, recorded in run.json.
        extra_callbacks: run after every epoch on every rank, after logging and checkpointing.
        distributed: this process's place in a data-parallel run; the process group must already
            be initialised (:func:`autoseg.training.distributed.process_group`).

    Returns:
        The final state (history of every epoch, best EMA pseudo-Dice); the same on every rank.
    """
    main = distributed.is_main
    if main:
        spec.output.mkdir(parents=True, exist_ok=True)
    _set_determinism(cfg)
    state, checkpoint = TrainState(), None
    if resume:
        checkpoint = _resume_checkpoint(spec, device, distributed)
        state = TrainState.from_dict(checkpoint["state"])
    parts = build_parts(spec, cfg, device, state.epoch, distributed)
    if checkpoint is not None:
        restore_parts(parts, checkpoint)
    run_log = None
    if main:
        run_log = RunLog(spec.output, list(spec.plans.labels.output_names)[-len(parts.labels) :])
        write_run_info(spec, cfg, device, config or {})
    say = run_log.line if run_log is not None else log.debug
    for line in _start_lines(spec, cfg, device, state.epoch, resume, distributed):
        say(line)
    note = resume_note(checkpoint, distributed) if checkpoint is not None else None
    if note:
        (run_log.warning if run_log is not None else log.debug)(note)
    callbacks: list[Callback] = []
    if run_log is not None:
        callbacks += [lambda s, r: run_log.epoch(r, s.history), Checkpointer(parts, spec, cfg)]
    callbacks += [early_stop(cfg, say), *extra_callbacks]
    try:
        run_training(parts, cfg, state, callbacks)
    finally:
        if run_log is not None:
            run_log.close()
    barrier(distributed)  # every rank is done with its collectives; rank 0 goes on alone
    if main:
        _finish(parts, state, spec, cfg, say)
    return state
