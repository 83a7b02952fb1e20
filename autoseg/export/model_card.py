"""The model card every exported model carries: ``model_card.json`` and ``MODEL_CARD.md``.

What a user of a shipped model needs before running it: the data it was trained on (a summary of
the dataset fingerprint), the plans, the configurations and folds, the cross-validation Dice per
class, the post-processing, the training budget, the versions, and what input it expects
(channels in order with their modality, spacing, file type). ``intended_use``, ``licence``,
``authors`` and ``limitations`` start as :data:`TO_FILL` for the model's owner to complete.

``autoseg predict`` prints :func:`card_summary` and, through the card's ``input.channels``, refuses a
case whose channel count does not match before any work.

Example:
    >>> card = build_model_card(model, {"3d_fullres": ["0"]}, "final", dataset, versions())  # doctest: +SKIP
    >>> print(render_markdown(card))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autoseg.contracts.plans import Plans
from autoseg.inference.model import ModelFolder

__all__ = ["TO_FILL", "build_model_card", "card_summary", "read_model_card", "render_markdown"]

CARD_SCHEMA_VERSION = 1
TO_FILL = "TO FILL IN by the model's owner"


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _cv_dice(folder: Path) -> dict[str, float | None] | None:
    summary = _read(folder / "cv_summary.json")
    if summary is None or "mean" not in summary:
        return None
    return {str(k): (v.get("dice") if isinstance(v, Mapping) else None) for k, v in summary["mean"].items()}


def _budget(folder: Path, folds: Sequence[str]) -> dict[str, Any]:
    """Epochs, iterations and batch of each fold's training (its run.json)."""
    out: dict[str, Any] = {}
    for fold in folds:
        run = _read(folder / f"fold_{fold}" / "run.json") or {}
        trainer = run.get("trainer", {})
        out[fold] = {k: trainer.get(k) for k in ("epochs", "iterations_per_epoch", "batch_size", "seed")}
    return out


def _configuration(folder: Path, plans: Plans, name: str, folds: Sequence[str]) -> dict[str, Any]:
    conf = plans.configuration(name)
    arch = conf.architecture
    return {
        "folds": list(folds),
        "spacing_mm": list(conf.spacing),
        "patch_size": list(conf.patch_size),
        "normalization": list(conf.normalization_schemes),
        "network": {
            "network": arch.network,
            "n_stages": arch.n_stages,
            "features_per_stage": list(arch.features_per_stage),
        },
        "cv_dice_per_class": _cv_dice(folder),
        "training": _budget(folder, folds),
    }


def build_model_card(
    model: ModelFolder,
    chosen: Mapping[str, Sequence[str]],
    checkpoint: str,
    dataset_json: Mapping[str, Any] | None,
    versions: Mapping[str, str],
    exports: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The card of the configurations and folds ``chosen`` ({configuration: folds}) of ``model``."""
    configs = {name: model.configuration(name) for name in chosen}
    plans = next(iter(configs.values())).plans
    dataset = dict(dataset_json or {})
    channels = {str(k): str(v) for k, v in plans.channel_names.items()}
    selection = model.selection or {}
    return {
        "kind": "model_card",
        "schema_version": CARD_SCHEMA_VERSION,
        "model": model.root.name,
        "plans_name": model.plans_name,
        "checkpoint": checkpoint,
        "input": {
            "num_channels": len(channels),
            "channels": channels,
            "file_ending": dataset.get("file_ending"),
            "median_spacing_mm": list(plans.original_median_spacing),
            "spacing_note": "any spacing is accepted; images are resampled to each configuration's spacing",
        },
        "labels": plans.labels.to_json(),
        "dataset": {
            "name": plans.dataset_name,
            "num_training_cases": dataset.get("numTraining"),
            "median_shape": list(plans.original_median_shape),
            "median_spacing_mm": list(plans.original_median_spacing),
            "foreground_intensities": {c: dict(v) for c, v in plans.foreground_intensities.items()},
        },
        "configurations": {
            name: _configuration(t.folder, t.plans, name, chosen[name]) for name, t in configs.items()
        },
        "ensemble": list(chosen) if len(chosen) > 1 else None,
        "postprocessing": selection.get("postprocessing"),
        "exports": [
            {k: e.get(k) for k in ("configuration", "fold", "kind", "file", "sha256", "check")}
            for e in exports
        ],
        "versions": dict(versions),
        "intended_use": TO_FILL,
        "licence": TO_FILL,
        "authors": TO_FILL,
        "limitations": TO_FILL,
    }


def render_markdown(card: Mapping[str, Any]) -> str:
    """MODEL_CARD.md: the card for people."""
    inp = card["input"]
    lines = [
        f"# Model card: {card['model']} ({card['plans_name']})",
        "",
        f"- Intended use: {card['intended_use']}",
        f"- Licence: {card['licence']}",
        f"- Authors: {card['authors']}",
        f"- Limitations: {card['limitations']}",
        "",
        "## Input",
        "",
        f"- {inp['num_channels']} channel(s), in this order: "
        + ", ".join(f"{k}: {v}" for k, v in inp["channels"].items()),
        f"- file type: {inp['file_ending']}; training median spacing (mm): {inp['median_spacing_mm']}",
        f"- {inp['spacing_note']}",
        f"- labels: {card['labels']}",
        "",
        "## Training data",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in card["dataset"].items()]
    lines += ["", "## Configurations", ""]
    for name, entry in card["configurations"].items():
        lines.append(f"### {name}")
        lines.append("")
        lines += [f"- {k}: {v}" for k, v in entry.items() if k not in ("cv_dice_per_class", "training")]
        dice = entry["cv_dice_per_class"]
        lines.append(
            "- cross-validation Dice per class: "
            + (
                ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} -" for k, v in dice.items())
                if dice
                else "none"
            )
        )
        lines.append(f"- training budget per fold: {entry['training']}")
        lines.append("")
    lines += [
        f"Ensemble: {card['ensemble'] or 'no'}; post-processing: {card['postprocessing'] or 'none'}; "
        f"checkpoint: {card['checkpoint']}",
        "",
        "## Exports",
        "",
    ]
    lines += [
        f"- {e['configuration']} fold {e['fold']}: {e['kind']} {e['file']} ({e['check']})"
        for e in card["exports"]
    ]
    lines += ["" if card["exports"] else "- none", "", "## Versions", ""]
    lines += [f"- {k}: {v}" for k, v in card["versions"].items()]
    return "\n".join(lines) + "\n"


def card_summary(card: Mapping[str, Any]) -> str:
    """A few lines for ``autoseg predict``'s output."""
    inp = card["input"]
    dice = {
        name: entry["cv_dice_per_class"]
        for name, entry in card["configurations"].items()
        if entry["cv_dice_per_class"]
    }
    configs = "; ".join(f"{k} folds {','.join(v['folds'])}" for k, v in card["configurations"].items())
    return (
        f"model card: {card['model']}; input {inp['num_channels']} channel(s) "
        f"({', '.join(inp['channels'].values())}), {inp['file_ending']}; {configs}; "
        f"CV Dice {dice or 'not recorded'}; intended use: {card['intended_use']}; licence: {card['licence']}"
    )


def read_model_card(root: Path) -> dict[str, Any] | None:
    """The card of a model root (None when it has none, e.g. a results folder)."""
    card = _read(root / "model_card.json")
    if card is not None and card.get("kind") != "model_card":
        raise ValueError(f"{root / 'model_card.json'} is not a model card (kind {card.get('kind')!r})")
    return card
