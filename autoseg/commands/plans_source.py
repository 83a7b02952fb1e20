"""``autoseg plan TARGET --plans-from SOURCE``: find the source's plans.

SOURCE is, in this order:

- an ``https://`` URL or ``hf://owner/name`` of a model (fetched by :mod:`autoseg.io.remote`);
- a plans.json file;
- a model archive (``.zip`` of ``autoseg export-model``), a results folder
  (``$AUTOSEG_RESULTS/<Dataset>``) or one ``<plans>`` folder below it: the plans its models were
  trained with;
- a preprocessed dataset folder (``$AUTOSEG_PREPROCESSED/<Dataset>``), or a dataset's name, number
  or raw folder: the plans of ``autoseg plan`` on it.

Where a source holds several plans, ``default`` is used, or the only one; otherwise the message
lists them (give the plans.json itself).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autoseg.commands.common import dataset_folders, dataset_root

__all__ = ["read_plans_source"]


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--plans-from: {path} is not a readable plans.json ({err})") from err
    if not isinstance(data, dict) or data.get("kind", "plans") != "plans" or "configurations" not in data:
        raise ValueError(f"--plans-from: {path} is not a plans.json written by `autoseg plan`")
    return data


def _preprocessed_plans(folder: Path, source: str) -> dict[str, Any]:
    """The plans of a preprocessed dataset folder: ``default``, or its only plans."""
    names = sorted(p.parent.name for p in folder.glob("*/plans.json"))
    if not names:
        raise FileNotFoundError(
            f"--plans-from {source}: {folder} has no plans; run `autoseg plan {source}` first, or give a "
            "model "
            "folder, a model archive or a plans.json"
        )
    if "default" not in names and len(names) > 1:
        raise ValueError(
            f"--plans-from {source}: {folder} holds several plans ({', '.join(names)}); give one plans.json "
            f"({folder}/<name>/plans.json)"
        )
    return _json(folder / ("default" if "default" in names else names[0]) / "plans.json")


def _model_plans(path: Path) -> dict[str, Any]:
    """The plans a model folder or archive was trained with."""
    from autoseg.inference.model import open_model

    with open_model(path) as model:
        trained = model.configurations()
        if not trained:
            raise FileNotFoundError(f"--plans-from {path}: the model has no trained configuration")
        return _json(model.configuration(trained[0]).folder / "plans.json")


def read_plans_source(source: str, cfg: Any) -> dict[str, Any]:
    """The plans (parsed plans.json) SOURCE names (module docstring)."""
    from autoseg.training.init_source import REMOTE_PREFIXES, remote_resolver

    path = remote_resolver()(source) if source.startswith(REMOTE_PREFIXES) else Path(source)
    if path.is_file():
        return _json(path) if path.suffix == ".json" else _model_plans(path)
    if path.is_dir():
        if (path / "fingerprint.json").is_file() or (path / "splits.json").is_file():
            return _preprocessed_plans(path, source)
        if not (path / "dataset.json").is_file():
            return _model_plans(path)
    root = dataset_root(source, cfg)  # a dataset's name, number or raw folder
    return _preprocessed_plans(dataset_folders(cfg, root).root, source)
