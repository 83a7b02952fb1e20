"""The fold's final validation: sliding-window prediction of each validation case at the
preprocessed resolution, Dice per label and case, written to ``validation/summary.json``."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from autoseg.data.cases import PreprocessedCases
from autoseg.evaluation.metrics import dice_per_label
from autoseg.inference.sliding_window import predict_sliding_window, predict_volume_2d
from autoseg.preprocessing.plan import configuration_plan
from autoseg.training.config import TrainerConfig
from autoseg.utils.files import write_artifact

if TYPE_CHECKING:
    from autoseg.training.setup import FoldSpec

SUMMARY_SCHEMA_VERSION = 1


def predict_case(
    network: torch.nn.Module,
    image: np.ndarray,
    patch_size: list[int],
    num_classes: int,
    cfg: TrainerConfig,
    device: torch.device,
) -> np.ndarray:
    """Logits (K, Z, Y, X) for a preprocessed case (C, Z, Y, X); 2D patches run slice by slice."""
    tensor = torch.from_numpy(np.array(image, dtype=np.float32))  # a writable copy of the memmap
    mirror = tuple(range(len(patch_size))) if cfg.tta_mirroring else None
    kwargs: dict[str, Any] = {
        "step_size": cfg.step_size,
        "mirror_axes": mirror,
        "device": device,
        "amp": cfg.amp and device.type == "cuda",
    }
    if len(patch_size) == 2:
        return predict_volume_2d(network, tensor, patch_size, num_classes, **kwargs).numpy()
    return predict_sliding_window(network, tensor, patch_size, num_classes, **kwargs).numpy()


def validate_fold(network: torch.nn.Module, spec: FoldSpec, cfg: TrainerConfig, device: torch.device) -> dict:
    """Predict every validation case, score it against its preprocessed label, write the summary."""
    conf = configuration_plan(spec.plans, spec.configuration)
    patch = list(cfg.patch_size or conf["patch_size"])
    names = {int(v): k for k, v in spec.plans["labels"].items() if not isinstance(v, list)}
    labels = sorted(v for v in names if v != 0)
    cases = PreprocessedCases(spec.data_folder, spec.val_cases)
    network.eval()
    per_case = []
    with torch.no_grad():
        for name in tqdm(spec.val_cases, desc="final validation", file=sys.stderr):
            image, seg, _ = cases.load(name)
            logits = predict_case(network, image, patch, len(names), cfg, device)
            reference = np.where(seg[0] < 0, 0, seg[0])
            dice = dice_per_label(logits.argmax(0), reference, labels)
            per_case.append({"case": name, "dice": {names[k]: _none_if_nan(d) for k, d in dice.items()}})
    mean = {}
    for k in labels:
        values = [c["dice"][names[k]] for c in per_case if c["dice"][names[k]] is not None]
        mean[names[k]] = float(np.mean(values)) if values else None
    present = [v for v in mean.values() if v is not None]
    summary = {
        "configuration": spec.configuration,
        "fold": str(spec.fold),
        "resolution": "preprocessed",
        "mean": mean,
        "foreground_mean": float(np.mean(present)) if present else None,
        "cases": per_case,
    }
    write_artifact(
        spec.output / "validation" / "summary.json", "validation_summary", SUMMARY_SCHEMA_VERSION, summary
    )
    return summary


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
