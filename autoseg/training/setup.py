"""Build everything one fold's training needs from the plans, then run it.

:func:`train_fold` is what ``autoseg train DATASET CONFIG FOLD`` calls: it reads the plans
and splits, builds data, network, optimiser and loss from factories, resumes from the
latest checkpoint if asked, runs :func:`autoseg.training.loop.run_training` with the
logging/checkpoint/early-stop callbacks, and validates the fold at the end.

Under data-parallel training (a :class:`~autoseg.training.distributed.DistributedContext` with
several ranks, set up by the caller) every rank builds its parts and runs the loop; rank 0 alone
writes the log, the checkpoints and the final validation (module docstring of
:mod:`autoseg.training.distributed`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autoseg import __version__
from autoseg.data.cases import PreprocessedCases
from autoseg.data.loader import BatchDataset, make_loader
from autoseg.data.sampling import PatchSampler
from autoseg.nets.factory import build_network, deep_supervision_weights
from autoseg.preprocessing.plan import configuration_plan
from autoseg.training.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from autoseg.training.config import TrainerConfig
from autoseg.training.distributed import (
    DistributedContext,
    bare_module,
    barrier,
    batch_share,
    describe_split,
    from_main,
    unwrap_ddp,
    wrap_ddp,
)
from autoseg.training.logging import RunLog
from autoseg.training.loop import Callback, TrainingParts, TrainState, run_training
from autoseg.training.loss import DeepSupervisionLoss, DiceCELoss
from autoseg.utils.files import write_json

log = logging.getLogger("autoseg.train")

SINGLE_PROCESS = DistributedContext()


@dataclass(frozen=True)
class FoldSpec:
    """Which fold of which configuration: the inputs and the output folder of a run."""

    preprocessed: Path  # <preprocessed>/<Dataset>
    plans: dict[str, Any]
    configuration: str
    fold: int | str  # 0..k-1, or "all"
    train_cases: tuple[str, ...]
    val_cases: tuple[str, ...]
    output: Path  # .../<Dataset>/<plans>/<config>/fold_<k>
    raw_root: Path | None = None  # the raw dataset: validation is scored against its labels when set

    @property
    def data_folder(self) -> Path:
        conf = configuration_plan(self.plans, self.configuration)
        return self.preprocessed / self.plans["plans_name"] / conf["data_identifier"]


def fold_cases(
    splits: list[dict[str, list[str]]], fold: int | str, all_cases: list[str]
) -> tuple[list, list]:
    """Training and validation cases of ``fold``; ``"all"`` trains and validates on every case."""
    if fold == "all":
        return sorted(all_cases), sorted(all_cases)
    k = int(fold)
    if not 0 <= k < len(splits):
        raise ValueError(
            f"fold {fold} does not exist: splits.json has folds 0..{len(splits) - 1} (or use 'all')"
        )
    return list(splits[k]["train"]), list(splits[k]["val"])


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
    return torch.device(name)


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


def versions(device: torch.device) -> dict[str, str]:
    import monai
    import numpy
    import torchio

    info = {
        "autoseg": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "torchio": torchio.__version__,
        "numpy": numpy.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
    return info


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
    conf = configuration_plan(spec.plans, spec.configuration)
    patch = list(cfg.patch_size or conf["patch_size"])
    batch_size = cfg.batch_size or conf["batch_size"]
    share = batch_share(batch_size, distributed.rank, distributed.world_size) if distributed.enabled else None
    from autoseg.data.augment import Augmenter

    in_channels = len(spec.plans["channel_names"])
    augmenter = Augmenter(patch, num_channels=in_channels)  # nnU-Net's augmentation set for this patch
    train_sampler = PatchSampler(
        PreprocessedCases(spec.data_folder, spec.train_cases),
        patch,
        batch_size,
        cfg.oversample_foreground,
        augmenter.crop_size,
    )
    val_sampler = PatchSampler(
        PreprocessedCases(spec.data_folder, spec.val_cases), patch, batch_size, cfg.oversample_foreground
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
    labels = sorted({int(v) for v in spec.plans["labels"].values() if not isinstance(v, list)})
    torch.manual_seed(cfg.seed)  # the same initial weights for the same seed (on every rank)
    network = build_network(conf["architecture"], in_channels, len(labels)).to(device)
    if cfg.compile:
        network = torch.compile(network)  # type: ignore[assignment]
    network = wrap_ddp(network, distributed, device)
    optimizer = torch.optim.SGD(
        network.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
    )
    base = DiceCELoss(batch_dice=bool(conf.get("batch_dice", False)))
    heads = conf["architecture"]["n_stages"] - 1
    dtype, needs_scaler = _mixed_precision(cfg, device)
    return TrainingParts(
        network=network,
        optimizer=optimizer,
        loss=DeepSupervisionLoss(base, deep_supervision_weights(heads)),
        val_loss=base,
        train_batches=iter(train_loader),
        val_batches=iter(val_loader),
        labels=[v for v in labels if v != 0],
        device=device,
        scaler=torch.amp.GradScaler("cuda") if needs_scaler else None,
        autocast_dtype=dtype,
        distributed=distributed,
    )


def checkpoint_state(
    parts: TrainingParts, state: TrainState, spec: FoldSpec, cfg: TrainerConfig
) -> dict[str, Any]:
    """What a checkpoint holds: the plain module's weights (no DDP/compile prefixes, so checkpoints
    of single- and multi-process runs are interchangeable), the optimiser, the state, rank 0's RNG
    states and the number of ranks."""
    conf = configuration_plan(spec.plans, spec.configuration)
    return {
        "network": bare_module(parts.network).state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "state": state.to_dict(),
        "rng": rng_states(),
        "trainer": cfg.to_dict(),
        "plans_name": spec.plans["plans_name"],
        "configuration": spec.configuration,
        "fold": str(spec.fold),
        "architecture": conf["architecture"],
        "in_channels": len(spec.plans["channel_names"]),
        "labels": spec.plans["labels"],
        "patch_size": list(cfg.patch_size or conf["patch_size"]),
        "mirror_axes": list(range(len(conf["patch_size"]))),
        "world_size": parts.distributed.world_size,
    }


class Checkpointer:
    """Callback: latest checkpoint every epoch, best by the EMA pseudo-Dice (both atomic)."""

    def __init__(self, parts: TrainingParts, spec: FoldSpec, cfg: TrainerConfig) -> None:
        self.parts, self.spec, self.cfg = parts, spec, cfg

    def __call__(self, state: TrainState, record: dict[str, Any]) -> None:
        payload = checkpoint_state(self.parts, state, self.spec, self.cfg)
        save_checkpoint(self.spec.output / "checkpoint_latest.pt", payload)
        if record["improved"]:
            save_checkpoint(self.spec.output / "checkpoint_best.pt", payload)


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


def write_run_info(spec: FoldSpec, cfg: TrainerConfig, device: torch.device, config: dict[str, Any]) -> None:
    """The resolved config, versions and device beside the checkpoints; plans and dataset.json above them."""
    write_json(
        spec.output / "run.json",
        {
            "trainer": cfg.to_dict(),
            "config": config,
            "versions": versions(device),
            "fold": str(spec.fold),
            "configuration": spec.configuration,
            "plans_name": spec.plans["plans_name"],
            "train_cases": len(spec.train_cases),
            "val_cases": len(spec.val_cases),
        },
    )
    plans = {k: v for k, v in spec.plans.items() if k != "fingerprint"}
    write_json(spec.output.parent / "plans.json", plans)


def restore_parts(parts: TrainingParts, checkpoint: dict[str, Any]) -> None:
    """Load weights, optimiser, grad scaler and (rank 0's) global RNG states from a checkpoint."""
    bare_module(parts.network).load_state_dict(checkpoint["network"])
    parts.optimizer.load_state_dict(checkpoint["optimizer"])
    if parts.scaler is not None and checkpoint["scaler"] is not None:
        parts.scaler.load_state_dict(checkpoint["scaler"])
    restore_rng_states(checkpoint["rng"])


def resume_note(checkpoint: dict[str, Any], distributed: DistributedContext) -> str | None:
    """A warning when a run resumes on another number of ranks than it was trained on, else None.

    The global batches stay the same (each rank builds its share of them), so training continues;
    but the per-rank batch Dice, the gradient averaging and the reduction order change, so the
    result is not bit-identical to an uninterrupted run.
    """
    saved = int(checkpoint.get("world_size", 1))
    if saved == distributed.world_size:
        return None
    return (
        f"resuming a run trained on {saved} rank(s) with {distributed.world_size}: the global "
        "batches are the same, but each rank's share of them (batch Dice, gradient averaging) is not, "
        "so the result will not be bit-identical to an uninterrupted run"
    )


def _resume_checkpoint(spec: FoldSpec, device: torch.device, distributed: DistributedContext) -> dict:
    """checkpoint_latest.pt, read by rank 0 and sent to the other ranks (which need no access to it)."""
    path = spec.output / "checkpoint_latest.pt"
    if not distributed.enabled:
        return load_checkpoint(path, map_location=device)
    return from_main(load_checkpoint(path) if distributed.is_main else {}, distributed)


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
        conf = configuration_plan(spec.plans, spec.configuration)
        lines.append(describe_split(cfg.batch_size or conf["batch_size"], distributed.world_size))
    return lines


def _finish(
    parts: TrainingParts,
    state: TrainState,
    spec: FoldSpec,
    cfg: TrainerConfig,
    say: Callable[[str], None],
) -> None:
    """Rank 0 after training: the final checkpoint, history.json and the final validation."""
    save_checkpoint(spec.output / "checkpoint_final.pt", checkpoint_state(parts, state, spec, cfg))
    write_json(spec.output / "history.json", _json_safe(state.history))
    if cfg.final_validation:
        from autoseg.training.validation import validate_fold

        summary = validate_fold(unwrap_ddp(parts.network), spec, cfg, parts.device)
        say(f"final validation: mean Dice {json.dumps(summary['mean'])}")


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
        labels = {int(v): k for k, v in spec.plans["labels"].items() if not isinstance(v, list)}
        run_log = RunLog(spec.output, [labels[v] for v in parts.labels])
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


def validate_only(
    spec: FoldSpec, cfg: TrainerConfig, device: torch.device, checkpoint: str = "final"
) -> dict:
    """Rerun the final validation of a trained fold from ``checkpoint_<checkpoint>.pt``."""
    from autoseg.training.validation import validate_fold

    path = spec.output / f"checkpoint_{checkpoint}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: train the fold first (autoseg train ...)")
    state = load_checkpoint(path, map_location=device)
    num_classes = len({int(v) for v in state["labels"].values() if not isinstance(v, list)})
    network = build_network(state["architecture"], int(state["in_channels"]), num_classes).to(device)
    network.load_state_dict(state["network"])
    return validate_fold(network, spec, cfg, device)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:  # NaN -> null
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj
