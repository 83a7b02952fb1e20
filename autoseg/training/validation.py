"""The fold's final validation: each validation case predicted with the sliding window, exported to
its native geometry and scored against the raw reference label.

Written to ``fold_<k>/validation/``: ``<case><ending>`` masks in the raw file format and geometry,
``<case>.npz`` probabilities (float16, ``trainer.save_probabilities``; ``autoseg find-best``
ensembles configurations from them), ``evaluation.json`` (every metric of
:mod:`autoseg.evaluation.evaluate`) and ``summary.json`` (mean Dice per class, for logs and
launchers). A ``3d_lowres`` fold also writes its masks to ``predicted_next_stage/`` for the 3d
cascade (:mod:`autoseg.cascade.next_stage`). Without the raw dataset (``FoldSpec.raw_root``
unset), the Dice is computed against the preprocessed labels instead, and ``summary.json`` says
``"resolution": "preprocessed"``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from autoseg.cascade.next_stage import NEXT_STAGE_FOLDER, write_next_stage, write_next_stage_index
from autoseg.contracts.labels import LabelManager
from autoseg.inference.predictor import ConfigurationPredictor, PredictOptions
from autoseg.inference.writer import export_prediction
from autoseg.io.images import Geometry
from autoseg.preprocessing.storage import load_case
from autoseg.training.cascade import cascade_inputs, previous_maps, with_previous
from autoseg.training.config import TrainerConfig
from autoseg.training.spec import FoldSpec
from autoseg.utils.files import write_artifact

SUMMARY_SCHEMA_VERSION = 2


def _predictor(network: torch.nn.Module, spec: FoldSpec, cfg: TrainerConfig, device: torch.device) -> Any:
    """The predictor of ``autoseg predict`` around the network that just trained (same TTA, same tiles)."""
    options = PredictOptions(tta=cfg.tta_mirroring, step_size=cfg.step_size, amp=cfg.amp)
    return ConfigurationPredictor.from_networks(
        spec.plans, spec.configuration, [network], device, options, cfg.patch_size or None
    )


def _draw(raw_root: Path, name: str, ending: str, seg: np.ndarray, names: dict[int, str], out: Path) -> None:
    """``validation/<case>.png``: the prediction over channel 0 of the raw image."""
    from autoseg.io.images import read_image
    from autoseg.visualize.overlay import overlay_png

    image, geometry = read_image(raw_root / "imagesTr" / f"{name}_0000{ending}")
    image = image[None] if image.ndim == 2 else image
    labels = {k: v for k, v in names.items() if k != 0}
    overlay_png(image, seg.reshape(image.shape), geometry.spacing, out / f"{name}.png", label_names=labels)


def _raw_references(raw_root: Path) -> tuple[Path, str]:
    """(labels folder, file ending) of the raw dataset."""
    from autoseg.io.dataset import load_raw_dataset

    return raw_root / "labelsTr", load_raw_dataset(raw_root).file_ending


def validate_fold(network: torch.nn.Module, spec: FoldSpec, cfg: TrainerConfig, device: torch.device) -> dict:
    """Predict and export every validation case, score it, write ``validation/summary.json``."""
    label_manager = spec.plans.labels
    names = label_manager.label_map_names
    out = spec.output / "validation"
    out.mkdir(parents=True, exist_ok=True)
    native = spec.raw_root is not None
    ending = _raw_references(spec.raw_root)[1] if spec.raw_root is not None else ".nii.gz"
    network.eval()
    predictor = _predictor(network, spec, cfg, device)
    next_stage = spec.conf.next_stage  # 3d_lowres: its maps feed the cascade (autoseg.cascade.next_stage)
    next_folder = spec.output / NEXT_STAGE_FOLDER
    cascade = cascade_inputs(spec)  # a cascade stage: each case's out-of-fold previous-stage map
    maps = previous_maps(cascade, spec.data_folder, spec.val_cases) if cascade is not None else {}
    per_case = []
    with torch.no_grad():
        for name in tqdm(spec.val_cases, desc="final validation", file=sys.stderr):
            image, seg, properties, _ = load_case(spec.data_folder, name)
            image = np.array(image, dtype=np.float32)  # a writable copy of the memmap
            if cascade is not None:
                image = with_previous(image, maps[name], cascade)
            logits = predictor.logits(image)
            probs = label_manager.activate(logits).numpy()
            geometry = Geometry.from_json(properties["geometry"])
            seg_native, _ = export_prediction(
                name,
                ending,
                [(probs, properties)],
                geometry,
                out,
                None,
                cfg.save_probabilities,
                label_manager,
            )
            if next_stage is not None:
                write_next_stage(next_folder, name, ending, seg_native, geometry)
            if cfg.validation_png and spec.raw_root is not None:
                _draw(spec.raw_root, name, ending, seg_native, names, out)
            if not native:
                reference = np.where(seg[0] < 0, 0, seg[0])
                dice = _preprocessed_dice(label_manager.segmentation(probs), reference, label_manager)
                per_case.append({"case": name, "dice": {k: _none_if_nan(d) for k, d in dice.items()}})
    if next_stage is not None:
        write_next_stage_index(next_folder, spec.configuration, str(spec.fold), next_stage, spec.val_cases)
    classes = list(label_manager.evaluation_classes)
    summary = _native_summary(spec, out, ending) if native else _preprocessed_summary(per_case, classes)
    summary = {"configuration": spec.configuration, "fold": str(spec.fold), **summary}
    write_artifact(out / "summary.json", "validation_summary", SUMMARY_SCHEMA_VERSION, summary)
    return summary


def _native_summary(spec: FoldSpec, out: Path, ending: str) -> dict[str, Any]:
    from autoseg.evaluation.evaluate import evaluate_folders

    assert spec.raw_root is not None
    ref_folder, _ = _raw_references(spec.raw_root)
    labels = spec.plans.labels
    evaluation = evaluate_folders(
        out,
        ref_folder,
        labels.evaluation_classes,
        ignore_label=labels.ignore_label,
        file_ending=ending,
        cases=list(spec.val_cases),
        output=out / "evaluation.json",
        num_workers=1,
    )
    mean = {name: metrics.get("dice") for name, metrics in evaluation["mean"].items()}
    return {
        "resolution": "native",
        "mean": mean,
        "foreground_mean": evaluation["foreground_mean"].get("dice"),
        "evaluation": "evaluation.json",
        "cases": [
            {"case": c["case"], "dice": {k: m.get("dice") for k, m in c["metrics"].items()}}
            for c in evaluation["cases"]
        ],
    }


def _preprocessed_dice(pred: np.ndarray, reference: np.ndarray, labels: LabelManager) -> dict[str, float]:
    """Dice per evaluated class (regions as the union of their values), ignore voxels excluded."""
    valid = None if labels.ignore_label is None else reference != labels.ignore_label
    dice = {}
    for name, values in labels.evaluation_classes.items():
        p, r = np.isin(pred, values), np.isin(reference, values)
        if valid is not None:
            p, r = p & valid, r & valid
        tp, fp, fn = int((p & r).sum()), int((p & ~r).sum()), int((~p & r).sum())
        dice[name] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    return dice


def _preprocessed_summary(per_case: list[dict], classes: list[str]) -> dict[str, Any]:
    mean = {}
    for k in classes:
        values = [c["dice"][k] for c in per_case if c["dice"][k] is not None]
        mean[k] = float(np.mean(values)) if values else None
    present = [v for v in mean.values() if v is not None]
    return {
        "resolution": "preprocessed",
        "mean": mean,
        "foreground_mean": float(np.mean(present)) if present else None,
        "cases": per_case,
    }


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
