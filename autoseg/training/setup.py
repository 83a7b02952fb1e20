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

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch

from autoseg.contracts.labels import LabelManager
from autoseg.data.cases import PreprocessedCases
from autoseg.data.loader import BatchDataset, make_loader
from autoseg.data.sampling import PatchSampler
from autoseg.nets.factory import build_network, deep_supervision_weights, encoder_parameters
from autoseg.training.config import TrainerConfig
from autoseg.training.device_batches import augment_on_device
from autoseg.training.distributed import (
    DistributedContext,
    bare_module,
    barrier,
    batch_share,
    describe_split,
    from_main,
    wrap_ddp,
)
from autoseg.training.fold_io import (
    Checkpointer,
    finish_fold,
    record_augment_on,
    restore_parts,
    resume_checkpoint,
    resume_note,
    write_run_info,
)
from autoseg.training.fold_io import checkpoint_state as checkpoint_state  # re-exported
from autoseg.training.fold_io import validate_only as validate_only  # re-exported
from autoseg.training.fold_io import versions as versions  # re-exported
from autoseg.training.init_source import InitFrom, initialise
from autoseg.training.lock import fold_lock
from autoseg.training.logging import RunLog
from autoseg.training.loop import Callback, TrainingParts, TrainState, run_training
from autoseg.training.loss import DeepSupervisionLoss, DiceCELoss, RegionDiceBCELoss
from autoseg.training.optim import build_optimizer
from autoseg.training.placement import AugmentPlacement
from autoseg.training.schedule import extension_anchor
from autoseg.training.spec import FoldSpec as FoldSpec  # re-exported
from autoseg.training.spec import fold_cases as fold_cases  # re-exported
from autoseg.training.tracking import open_tracker, tracked
from autoseg.utils.device import cpu_native_bf16
from autoseg.utils.device import pick_device as pick_device  # re-exported
from autoseg.utils.files import write_json

log = logging.getLogger("autoseg.train")

SINGLE_PROCESS = DistributedContext()


def _num_workers(cfg: TrainerConfig, processes_per_node: int = 1) -> int:
    """The configured data workers, or min(cores - 1, 12) shared by the ranks of this node."""
    if cfg.num_workers is not None:
        return cfg.num_workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(cores // processes_per_node - 1, 12))


def _mixed_precision(cfg: TrainerConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, needs a grad scaler) on any device.

    ``amp_dtype=auto``: bf16 on GPUs that support it, fp16 + grad scaler on older GPUs; on the CPU
    bf16 where it has bf16 in hardware (:func:`~autoseg.utils.device.cpu_native_bf16`), else float32
    (emulated bf16 measured 2.2x slower per step than float32, benchmarks/RESULTS.md). ``bfloat16``
    forces bf16 anywhere; ``float16`` always comes with a scaler (``torch.amp.GradScaler`` works on the
    CPU too).
    """
    if not cfg.amp:
        return None, False
    if cfg.amp_dtype == "float16":
        return torch.float16, True
    if cfg.amp_dtype == "auto" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16, True
    if cfg.amp_dtype == "auto" and device.type == "cpu" and not cpu_native_bf16():
        return None, False
    return torch.bfloat16, False


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
    patch = list(conf.patch_size)  # trainer.patch_size is already in the plans (FoldSpec.trained_with)
    batch_size = cfg.batch_size or conf.batch_size
    share = batch_share(batch_size, distributed.rank, distributed.world_size) if distributed.enabled else None
    from autoseg.data.augment import Augmenter

    in_channels = spec.plans.num_channels
    label_manager = spec.plans.labels
    regions = label_manager.region_values if label_manager.has_regions else None
    augmenter = Augmenter(patch, cfg.augment, num_channels=in_channels)  # conf/augment: nnU-Net's set
    train_cases, val_cases, train_post, val_post, extra = _cases(spec)
    train_sampler = PatchSampler(
        train_cases,
        patch,
        batch_size,
        cfg.oversample_foreground,
        augmenter.crop_size,
        regions,
    )
    val_sampler = PatchSampler(
        val_cases,
        patch,
        batch_size,
        cfg.oversample_foreground,
        regions=regions,
    )
    workers = _num_workers(cfg, distributed.local_world_size)
    pin = device.type == "cuda"  # pinned host batches: asynchronous copies to the GPU
    per_epoch, val_per_epoch = cfg.iterations_per_epoch, cfg.val_iterations

    def make_train_batches(on_device: bool, start: int) -> Iterator[dict[str, Any]]:
        dataset = BatchDataset(
            train_sampler,
            augmenter,
            cfg.seed,
            stream=0,
            augment_on_device=on_device,
            samples=share,
            post=train_post,
        )
        return iter(make_loader(dataset, start, cfg.epochs * per_epoch, workers, pin))

    val_loader = make_loader(
        BatchDataset(val_sampler, None, cfg.seed, stream=1, samples=share, post=val_post),
        start_epoch * val_per_epoch,
        cfg.epochs * val_per_epoch,
        max(0, workers // 2),
        pin,
    )
    torch.manual_seed(cfg.seed)  # the same initial weights for the same seed (on every rank)
    network = build_network(conf.architecture, in_channels + extra, label_manager.num_outputs).to(device)
    encoder = encoder_parameters(network) if cfg.freeze_encoder_epochs else ()
    if cfg.compile:
        network = torch.compile(network)  # type: ignore[assignment]
    network = wrap_ddp(network, distributed, device)
    optimizer = build_optimizer(network.parameters(), cfg)
    base = make_loss(label_manager, conf.batch_dice, cfg)
    heads = conf.architecture.n_stages - 1
    weights = deep_supervision_weights(heads) if cfg.loss.deep_supervision else [1.0] + [0.0] * (heads - 1)
    dtype, needs_scaler = _mixed_precision(cfg, device)
    return TrainingParts(
        network=network,
        optimizer=optimizer,
        loss=DeepSupervisionLoss(base, weights),
        val_loss=base,
        train_batches=make_train_batches(False, start_epoch * per_epoch),
        val_batches=iter(val_loader),
        labels=list(range(1, label_manager.num_outputs + 1))
        if label_manager.has_regions
        else [v for v in label_manager.class_values if v != 0],
        device=device,
        scaler=torch.amp.GradScaler(device.type) if needs_scaler else None,
        autocast_dtype=dtype,
        distributed=distributed,
        max_nonfinite_steps=cfg.max_nonfinite_steps,
        make_train_batches=make_train_batches,
        device_augmentation=augment_on_device(augmenter),
        ignore_label=label_manager.ignore_label,
        regions=regions,
        encoder_parameters=encoder,
    )


def _cases(spec: FoldSpec) -> tuple[PreprocessedCases, PreprocessedCases, Any, Any, int]:
    """(training cases, validation cases, their post steps, extra input channels): plain cases, or for
    a cascade stage the joint maps and decoders of :mod:`autoseg.training.cascade`."""
    from autoseg.training.cascade import CascadeCases, CascadeDecoder, cascade_inputs, previous_maps

    inputs = cascade_inputs(spec)
    if inputs is None:
        train = PreprocessedCases(spec.data_folder, spec.train_cases)
        return train, PreprocessedCases(spec.data_folder, spec.val_cases), None, None, 0
    maps = previous_maps(inputs, spec.data_folder, sorted(set(spec.train_cases) | set(spec.val_cases)))
    return (
        CascadeCases(spec.data_folder, spec.train_cases, maps, inputs.base),
        CascadeCases(spec.data_folder, spec.val_cases, maps, inputs.base),
        CascadeDecoder(inputs, corrupt=True),
        CascadeDecoder(inputs, corrupt=False),
        inputs.num_channels,
    )


def _workers_for_extra_transforms(cfg: TrainerConfig) -> TrainerConfig:
    """Extra TorchIO transforms run in the data workers only: ``augment_on=auto`` becomes ``workers``
    (logged), ``device`` is refused."""
    if not cfg.augment.extra or cfg.augment_on == "workers":
        return cfg
    if cfg.augment_on == "device":
        raise ValueError(
            "trainer.augment_on=device cannot run the extra TorchIO transforms of augment.extra (they run "
            "in the data workers); use trainer.augment_on=workers or drop augment.extra"
        )
    log.info("augment.extra has TorchIO transforms: augmentation stays in the data workers")
    return dataclasses.replace(cfg, augment_on="workers")


def make_loss(labels: LabelManager, batch_dice: bool, cfg: TrainerConfig) -> DiceCELoss | RegionDiceBCELoss:
    """The loss the labels need: Dice + BCE per region (sigmoid outputs) with regions, else Dice + CE
    (softmax); the ignore label, if any, masked out of both terms; weights from ``trainer.loss``."""
    weights = {
        "smooth": cfg.loss.smooth,
        "weight_ce": cfg.loss.weight_ce,
        "weight_dice": cfg.loss.weight_dice,
    }
    if labels.has_regions:
        return RegionDiceBCELoss(
            labels.region_values, batch_dice, ignore_index=labels.ignore_label, **weights
        )
    return DiceCELoss(batch_dice=batch_dice, ignore_index=labels.ignore_label, **weights)


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
    dtype, scaler = _mixed_precision(cfg, device)
    mode = (
        f"autocast {str(dtype).removeprefix('torch.')}{' + grad scaler' if scaler else ''}"
        if dtype
        else "fp32"
    )
    if cfg.amp and dtype is None:
        mode += " (amp_dtype=auto: this CPU has no bf16 in hardware; trainer.amp_dtype=bfloat16 forces it)"
    lines = [
        f"{'resuming at' if resume else 'starting'} epoch {epoch} of {cfg.epochs}: "
        f"{spec.configuration} fold {spec.fold}, {len(spec.train_cases)} training / "
        f"{len(spec.val_cases)} validation cases, device {device}{ranks}, {mode}"
        f"{', torch.compile' if cfg.compile else ''}"
    ]
    if distributed.enabled:
        lines.append(describe_split(cfg.batch_size or spec.conf.batch_size, distributed.world_size))
    return lines


def precision(parts: TrainingParts, cfg: TrainerConfig) -> dict[str, Any]:
    """How the run computes: ``{"precision": {"autocast": "bfloat16" | "float16" | None, ...}}``."""
    dtype = str(parts.autocast_dtype).removeprefix("torch.") if parts.autocast_dtype is not None else None
    return {"precision": {"autocast": dtype, "grad_scaler": parts.scaler is not None, "compile": cfg.compile}}


def _placement(
    parts: TrainingParts, cfg: TrainerConfig, state: TrainState, say: Callable[[str], None]
) -> AugmentPlacement:
    """Where augmentation runs from ``state.epoch`` on (:mod:`autoseg.training.placement`), set up."""
    assert parts.make_train_batches is not None and parts.device_augmentation is not None
    placement = AugmentPlacement(
        configured=cfg.augment_on,
        parts=parts,
        make_batches=parts.make_train_batches,
        transform=parts.device_augmentation,
        iterations_per_epoch=cfg.iterations_per_epoch,
        measure=cfg.augment_on == "auto" and parts.device.type == "cuda",
        say=say,
    )
    assert state.augment_on is not None
    placement.start(state, state.augment_on)
    say(f"augmentation on the {state.augment_on['used']} ({state.augment_on['reason']})")
    return placement


ELASTIC_RUN = "elastic_run.json"


def resume_after_restart(spec: FoldSpec, distributed: DistributedContext, resume: bool) -> bool:
    """Whether to resume: ``resume``, or under ``torchrun --max-restarts N`` whether this job (its
    ``--rdzv-id``) already wrote the fold's checkpoint_latest.pt, i.e. torchrun restarted its workers.

    Rank 0 decides and tells every rank (call it inside the process group). It records the run id in
    ``<fold>/elastic_run.json`` when the job starts fresh, so a new job with another run id still
    starts over, and a restart before the first checkpoint starts over too. torchrun's restart count
    is not used: it counts only the failures of each node's own workers.
    """
    if resume or distributed.elastic_run_id is None:
        return resume
    found = False
    if distributed.is_main:
        marker, latest = spec.output / ELASTIC_RUN, spec.output / "checkpoint_latest.pt"
        saved = json.loads(marker.read_text()).get("run_id") if marker.is_file() else None
        found = saved == distributed.elastic_run_id and latest.is_file()
        if found:
            log.warning("torchrun restarted job %s: resuming from %s", saved, latest)
        else:
            write_json(marker, {"run_id": distributed.elastic_run_id})
    return from_main(found, distributed)


def train_fold(
    spec: FoldSpec,
    cfg: TrainerConfig,
    device: torch.device,
    resume: bool = False,
    config: dict[str, Any] | None = None,
    extra_callbacks: tuple[Callback, ...] = (),
    distributed: DistributedContext = SINGLE_PROCESS,
    init: InitFrom | None = None,
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
        init: start from another model's weights (``--init-from``; :mod:`autoseg.training.init_weights`).

    Returns:
        The final state (history of every epoch, best EMA pseudo-Dice); the same on every rank.
    """
    main = distributed.is_main
    with fold_lock(spec.output) if main else contextlib.nullcontext(spec.output):
        return _train_fold(spec, cfg, device, resume, config, extra_callbacks, distributed, init)


def _train_fold(
    spec: FoldSpec,
    cfg: TrainerConfig,
    device: torch.device,
    resume: bool,
    config: dict[str, Any] | None,
    extra_callbacks: tuple[Callback, ...],
    distributed: DistributedContext,
    init: InitFrom | None,
) -> TrainState:
    main = distributed.is_main
    if init is not None and resume:
        raise ValueError(
            "--init-from starts a new run from another model's weights; --resume continues this run from "
            f"{spec.output / 'checkpoint_latest.pt'}: give one of them"
        )
    spec = spec.trained_with(cfg.patch_size)  # the plans record the patch the network trains on
    cfg = _workers_for_extra_transforms(cfg)
    if spec.conf.previous_stage is not None and cfg.augment_on != "workers":
        log.info(
            "a cascade stage decodes its previous-stage channels in the data workers: augment_on=workers"
        )
        cfg = dataclasses.replace(cfg, augment_on="workers")
    _set_determinism(cfg)
    state, checkpoint = TrainState(), None
    if resume:
        checkpoint = resume_checkpoint(spec, device, distributed)
        state = TrainState.from_dict(checkpoint["state"])
        started_with = int(checkpoint.get("trainer", {}).get("epochs", cfg.epochs))
        where = str(spec.output / "checkpoint_latest.pt")
        state.lr_anchor = extension_anchor(
            cfg, state.epoch, state.history, started_with, state.lr_anchor, where
        )
    parts = build_parts(spec, cfg, device, state.epoch, distributed)
    transferred = initialise(bare_module(parts.network), spec, init) if init is not None else None
    if checkpoint is not None:
        restore_parts(parts, checkpoint)
    run_log, tracker = None, None
    state.augment_on = AugmentPlacement.initial(cfg.augment_on, device, state.augment_on)
    names = list(spec.plans.labels.output_names)[-len(parts.labels) :]
    if main:
        run_log = RunLog(spec.output, names, tensorboard="tensorboard" in cfg.loggers)
        runtime = {**precision(parts, cfg), "augment_on": state.augment_on}
        if transferred is not None:
            runtime["init_from"] = transferred.to_dict()
        if state.lr_anchor is not None:
            runtime["lr_extension"] = state.lr_anchor
        write_run_info(spec, cfg, device, config or {}, runtime)
        tracker = open_tracker(spec, cfg, config or {}, names, resume)
    say = run_log.line if run_log is not None else log.debug
    for line in _start_lines(spec, cfg, device, state.epoch, resume, distributed):
        say(line)
    for line in transferred.lines() if transferred is not None else []:
        say(line)
    if resume and state.lr_anchor is not None:
        a = state.lr_anchor
        say(
            f"extended to {cfg.epochs} epochs: the lr continues from {a['lr']:.3g} at epoch {a['epoch']} "
            f"and decays to 0 at epoch {a['end']} (no restart of the poly schedule)"
        )
    placement = _placement(parts, cfg, state, say)
    if main:
        placement.on_decision.append(lambda decision: record_augment_on(spec, decision))
    note = resume_note(checkpoint, distributed) if checkpoint is not None else None
    if note:
        (run_log.warning if run_log is not None else log.debug)(note)
    callbacks: list[Callback] = [placement]
    if run_log is not None:
        callbacks += [lambda s, r: run_log.epoch(r, s.history), Checkpointer(parts, spec, cfg)]
    if tracker is not None:
        callbacks.append(lambda s, r: tracker.epoch(r))
    callbacks += [early_stop(cfg, say), *extra_callbacks]
    with tracked(tracker):
        try:
            run_training(parts, cfg, state, callbacks)
        finally:
            if run_log is not None:
                run_log.close()
        barrier(distributed)  # every rank is done with its collectives; rank 0 goes on alone
        if main:
            finish_fold(parts, state, spec, cfg, say)
    return state
