"""Build everything one fold's training needs from the plans, then run it.

:func:`train_fold` is what ``autoseg train DATASET CONFIG FOLD`` calls: it reads the plans
and splits, builds data, network, optimiser and loss from factories, resumes from the
latest checkpoint if asked, runs :func:`autoseg.training.loop.run_training` with the
logging/checkpoint/early-stop callbacks, and validates the fold at the end.
"""

from __future__ import annotations

import json
import logging
import os
import platform
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
from autoseg.training.logging import RunLog
from autoseg.training.loop import Callback, TrainingParts, TrainState, run_training
from autoseg.training.loss import DeepSupervisionLoss, DiceCELoss
from autoseg.utils.files import write_json

log = logging.getLogger("autoseg.train")


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


def _num_workers(cfg: TrainerConfig) -> int:
    if cfg.num_workers is not None:
        return cfg.num_workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(cores - 1, 12))


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


def build_parts(spec: FoldSpec, cfg: TrainerConfig, device: torch.device, start_epoch: int) -> TrainingParts:
    """Data loaders, network, optimiser and losses for a fold (the factories, in one place)."""
    conf = configuration_plan(spec.plans, spec.configuration)
    patch = list(cfg.patch_size or conf["patch_size"])
    batch_size = cfg.batch_size or conf["batch_size"]
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
    workers = _num_workers(cfg)
    pin = device.type == "cuda"
    per_epoch, val_per_epoch = cfg.iterations_per_epoch, cfg.val_iterations
    train_loader = make_loader(
        BatchDataset(train_sampler, augmenter, cfg.seed, stream=0),
        start_epoch * per_epoch,
        cfg.epochs * per_epoch,
        workers,
        pin,
    )
    val_loader = make_loader(
        BatchDataset(val_sampler, None, cfg.seed, stream=1),
        start_epoch * val_per_epoch,
        cfg.epochs * val_per_epoch,
        max(0, workers // 2),
        pin,
    )
    labels = sorted({int(v) for v in spec.plans["labels"].values() if not isinstance(v, list)})
    torch.manual_seed(cfg.seed)  # the same initial weights for the same seed
    network = build_network(conf["architecture"], in_channels, len(labels)).to(device)
    if cfg.compile:
        network = torch.compile(network)  # type: ignore[assignment]
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
    )


def checkpoint_state(
    parts: TrainingParts, state: TrainState, spec: FoldSpec, cfg: TrainerConfig
) -> dict[str, Any]:
    conf = configuration_plan(spec.plans, spec.configuration)
    network = getattr(parts.network, "_orig_mod", parts.network)
    return {
        "network": network.state_dict(),
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


def early_stop(cfg: TrainerConfig, run_log: RunLog) -> Callback:
    def check(state: TrainState, record: dict[str, Any]) -> None:
        patience = cfg.early_stop_patience
        if patience is not None and state.epoch - 1 - state.best_epoch >= patience:
            run_log.line(
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


def train_fold(
    spec: FoldSpec,
    cfg: TrainerConfig,
    device: torch.device,
    resume: bool = False,
    config: dict[str, Any] | None = None,
    extra_callbacks: tuple[Callback, ...] = (),
) -> TrainState:
    """Train one fold (resuming from checkpoint_latest.pt if asked) and validate it.

    Returns:
        The final state (history of every epoch, best EMA pseudo-Dice).
    """
    spec.output.mkdir(parents=True, exist_ok=True)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = not cfg.deterministic
    state, checkpoint = TrainState(), None
    if resume:
        checkpoint = load_checkpoint(spec.output / "checkpoint_latest.pt", map_location=device)
        state = TrainState.from_dict(checkpoint["state"])
    parts = build_parts(spec, cfg, device, state.epoch)
    if checkpoint is not None:
        getattr(parts.network, "_orig_mod", parts.network).load_state_dict(checkpoint["network"])
        parts.optimizer.load_state_dict(checkpoint["optimizer"])
        if parts.scaler is not None and checkpoint["scaler"] is not None:
            parts.scaler.load_state_dict(checkpoint["scaler"])
        restore_rng_states(checkpoint["rng"])
    labels = {int(v): k for k, v in spec.plans["labels"].items() if not isinstance(v, list)}
    run_log = RunLog(spec.output, [labels[v] for v in parts.labels])
    write_run_info(spec, cfg, device, config or {})
    run_log.line(
        f"{'resuming at' if resume else 'starting'} epoch {state.epoch} of {cfg.epochs}: "
        f"{spec.configuration} fold {spec.fold}, {len(spec.train_cases)} training / "
        f"{len(spec.val_cases)} validation cases, device {device}"
    )
    callbacks: list[Callback] = [
        lambda s, r: run_log.epoch(r, s.history),
        Checkpointer(parts, spec, cfg),
        early_stop(cfg, run_log),
        *extra_callbacks,
    ]
    try:
        run_training(parts, cfg, state, callbacks)
    finally:
        run_log.close()
    save_checkpoint(spec.output / "checkpoint_final.pt", checkpoint_state(parts, state, spec, cfg))
    write_json(spec.output / "history.json", _json_safe(state.history))
    if cfg.final_validation:
        from autoseg.training.validation import validate_fold

        summary = validate_fold(parts.network, spec, cfg, device)
        run_log.line(f"final validation: mean Dice {json.dumps(summary['mean'])}")
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
