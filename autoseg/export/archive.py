"""``autoseg export-model``: a portable archive of a trained model.

The archive unpacks to a model root (see :mod:`autoseg.inference.model`)::

    model.json                          what is inside (schema_version, versions, checkpoint)
    dataset.json                        the raw dataset's description, when the raw dataset is found
    selection.json                      when ``autoseg find-best`` ran and selected what is exported
                                        (else left out, and model.json says why)
    <plans>/<config>/plans.json
    <plans>/<config>/cv_summary.json    when present
    <plans>/<config>/fold_<k>/checkpoint_<final|best|latest>.pt
    <plans>/<config>/fold_<k>/checkpoint_<...>.onnx|.ts (+ .json)   with --onnx / --torchscript
    model_card.json, MODEL_CARD.md      the model card (:mod:`autoseg.export.model_card`)

No absolute path is stored; ``autoseg predict -m model.zip`` works on any machine.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoseg.export.model_card import build_model_card, render_markdown
from autoseg.inference.backends import EXPORTS
from autoseg.inference.model import ModelFolder, fold_names
from autoseg.utils.files import atomic_path

__all__ = ["export_model"]

MODEL_SCHEMA_VERSION = 1


def _members(
    model: ModelFolder,
    configurations: Sequence[str],
    folds: Sequence[str] | None,
    checkpoint: str,
    exports: Sequence[str] = (),
) -> tuple[list[tuple[Path, str]], dict[str, list[str]]]:
    """The archive's files and the folds of each chosen configuration. A cascade stage carries its
    previous stage too (its folds, not listed among the chosen configurations): predict runs it first."""
    files: list[tuple[Path, str]] = []
    chosen: dict[str, list[str]] = {}
    needed = list(configurations)
    for name in needed:
        trained = model.configuration(name)
        use = fold_names(folds, trained.folds, str(trained.folder))
        if name in configurations:
            chosen[name] = use
        previous = trained.plans.configuration(name).previous_stage
        if previous is not None and previous not in needed:
            needed.append(previous)
        prefix = f"{model.plans_name}/{name}"
        files.append((trained.folder / "plans.json", f"{prefix}/plans.json"))
        if (trained.folder / "cv_summary.json").is_file():
            files.append((trained.folder / "cv_summary.json", f"{prefix}/cv_summary.json"))
        for fold in use:
            path = trained.checkpoint(fold, checkpoint)
            files.append((path, f"{prefix}/fold_{fold}/checkpoint_{checkpoint}.pt"))
            for kind in exports:
                exported = path.with_suffix(EXPORTS[kind])
                for extra in (exported, exported.with_name(exported.name + ".json")):
                    files.append((extra, f"{prefix}/fold_{fold}/{extra.name}"))
    return files, chosen


def export_model(
    model: ModelFolder,
    output: Path,
    configurations: Sequence[str] | None = None,
    folds: Sequence[str] | None = None,
    checkpoint: str = "final",
    dataset_json: dict[str, Any] | None = None,
    versions: dict[str, str] | None = None,
    exports: Sequence[str] = (),
    export_records: Sequence[dict[str, Any]] = (),
) -> Path:
    """Write the archive ``output`` (atomically).

    Args:
        model: the opened model root.
        configurations: which (default: the selection's, else every trained one).
        folds: which folds (default: every trained fold).
        checkpoint: final, best or latest.
        dataset_json: the raw dataset's dataset.json (default: the model root's, if any).
        versions: library versions to record.
        exports: exported networks to include (``onnx``, ``torchscript``; made beforehand by
            :func:`autoseg.export.networks.export_fold_networks`, whose records go in
            ``export_records`` and the model card).
    """
    if configurations is None:
        selected = (model.selection or {}).get("configurations")
        configurations = list(selected) if selected else model.configurations()
    if not configurations:
        raise ValueError(f"{model.root / model.plans_name}: nothing trained to export")
    files, chosen = _members(model, configurations, folds, checkpoint, exports)
    missing = [str(path) for path, _ in files if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"cannot export the model, missing: {', '.join(missing)}")
    manifest = {
        "kind": "model",
        "schema_version": MODEL_SCHEMA_VERSION,
        "dataset": model.root.name,
        "plans_name": model.plans_name,
        "configurations": chosen,
        "checkpoint": checkpoint,
        "versions": versions or {},
        "exports": list(exports),
    }
    selection = model.selection
    if selection is not None and sorted(selection.get("configurations", [])) != sorted(chosen):
        manifest["selection_left_out"] = (
            f"selection.json selects {' + '.join(selection['configurations'])}; the archive holds "
            f"{' + '.join(chosen)}, so its post-processing and ensemble do not apply"
        )
        selection = None
    dataset = dataset_json if dataset_json is not None else model.dataset
    card = build_model_card(model, chosen, checkpoint, dataset, versions or {}, export_records)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.json", json.dumps(manifest, indent=2))
        zf.writestr("model_card.json", json.dumps(card, indent=2))
        zf.writestr("MODEL_CARD.md", render_markdown(card))
        if dataset is not None:
            zf.writestr("dataset.json", json.dumps(dataset, indent=2))
        if selection is not None:
            zf.writestr("selection.json", json.dumps(selection, indent=2))
        for path, name in files:
            zf.write(path, name)
    return output
