"""What one fold's training writes and reads back, beside :mod:`autoseg.training.setup`.

- the checkpoints' content (:func:`checkpoint_state`), the :class:`Checkpointer` callback, and
  restoring from a checkpoint (:func:`restore_parts`, :func:`resume_note` on another number of
  ranks);
- run.json with the resolved config and the :func:`versions`, and plans.json (:func:`write_run_info`);
- rank 0's end of training (final checkpoint, history.json, final validation), and
  :func:`validate_only`, which reruns that validation from a checkpoint.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from typing import Any

import torch

from autoseg import __version__
from autoseg.nets.factory import build_network
from autoseg.training.cascade import network_in_channels
from autoseg.training.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from autoseg.training.config import TrainerConfig
from autoseg.training.distributed import DistributedContext, bare_module, from_main, unwrap_ddp
from autoseg.training.loop import TrainingParts, TrainState
from autoseg.training.spec import FoldSpec
from autoseg.utils.files import write_json


def versions(device: torch.device) -> dict[str, str]:
    """The versions a run used (a library that is not installed reads ``not installed``: training
    itself needs only torch, numpy and MONAI's network, e.g. on a bare GPU machine)."""
    info = {
        "autoseg": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{name: _installed(name) for name in ("monai", "torchio", "numpy")},
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
    return info


def _installed(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def checkpoint_state(
    parts: TrainingParts, state: TrainState, spec: FoldSpec, cfg: TrainerConfig
) -> dict[str, Any]:
    """What a checkpoint holds: the plain module's weights (no DDP/compile prefixes, so checkpoints
    of single- and multi-process runs are interchangeable), the optimiser, the state, rank 0's RNG
    states and the number of ranks."""
    conf = spec.conf
    return {
        "network": bare_module(parts.network).state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "state": state.to_dict(),
        "rng": rng_states(),
        "trainer": cfg.to_dict(),
        "plans_name": spec.plans.plans_name,
        "configuration": spec.configuration,
        "fold": str(spec.fold),
        "architecture": conf.architecture.to_dict(),
        "in_channels": network_in_channels(spec),
        "labels": spec.plans.labels.to_json(),
        **({"regions_class_order": list(order)} if (order := spec.plans.labels.regions_class_order) else {}),
        "patch_size": list(cfg.patch_size or conf.patch_size),
        "mirror_axes": list(conf.mirror_axes),
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


def write_run_info(
    spec: FoldSpec,
    cfg: TrainerConfig,
    device: torch.device,
    config: dict[str, Any],
    runtime: dict[str, Any] | None = None,
) -> None:
    """The resolved config, versions and device beside the checkpoints; plans and dataset.json above them.

    ``runtime``: how the run actually trains, e.g. ``precision`` (autocast dtype, grad scaler,
    compile) and ``augment_on`` (where augmentation runs and why; updated by
    :func:`record_augment_on` when ``auto`` decides after the first epoch).
    """
    write_json(
        spec.output / "run.json",
        {
            "trainer": cfg.to_dict(),
            "config": config,
            "versions": versions(device),
            "fold": str(spec.fold),
            "configuration": spec.configuration,
            "plans_name": spec.plans.plans_name,
            "train_cases": len(spec.train_cases),
            "val_cases": len(spec.val_cases),
            **(runtime or {}),
        },
    )
    write_json(spec.output.parent / "plans.json", spec.plans.to_dict(with_fingerprint=False))


def record_augment_on(spec: FoldSpec, decision: dict[str, Any]) -> None:
    """Put the ``augment_on=auto`` decision (with its measurements) into run.json (atomically)."""
    path = spec.output / "run.json"
    info = json.loads(path.read_text())
    info["augment_on"] = decision
    write_json(path, info)


def restore_parts(parts: TrainingParts, checkpoint: dict[str, Any]) -> None:
    """Load weights, optimiser, grad scaler and (rank 0's) global RNG states from a checkpoint.

    The checkpoint may be on any device (best: the CPU, :func:`load_checkpoint`'s default): the
    weights are copied into the network where it lives, the optimiser moves its state to the
    parameters' device, and the RNG states are restored from CPU copies.
    """
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


def resume_checkpoint(spec: FoldSpec, device: torch.device, distributed: DistributedContext) -> dict:
    """checkpoint_latest.pt on the CPU, read by rank 0 and sent to the other ranks (which need no
    access to it). :func:`restore_parts` moves it to ``device``; loading it straight onto a GPU
    would put the RNG states there, where ``torch.set_rng_state`` refuses them."""
    path = spec.output / "checkpoint_latest.pt"
    if not distributed.enabled:
        return load_checkpoint(path, map_location="cpu")
    return from_main(load_checkpoint(path) if distributed.is_main else {}, distributed)


def finish_fold(
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


def validate_only(
    spec: FoldSpec, cfg: TrainerConfig, device: torch.device, checkpoint: str = "final"
) -> dict:
    """Rerun the final validation of a trained fold from ``checkpoint_<checkpoint>.pt``."""
    from autoseg.training.validation import validate_fold

    path = spec.output / f"checkpoint_{checkpoint}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: train the fold first (autoseg train ...)")
    state = load_checkpoint(path, map_location="cpu")  # load_state_dict copies to the network's device
    network = build_network(spec.conf.architecture, network_in_channels(spec), spec.plans.labels.num_outputs)
    network.to(device).load_state_dict(state["network"])
    return validate_fold(network, spec, cfg, device)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:  # NaN -> null
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj
