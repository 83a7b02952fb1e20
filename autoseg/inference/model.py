"""Trained models on disk: a results folder or a portable model archive, and their networks.

A model folder has the layout ``autoseg train`` writes under ``$AUTOSEG_RESULTS/<Dataset>/``::

    <Dataset>/                      the model root (also what a model archive unpacks to)
      model.json                    only in exported models: what the archive holds
      dataset.json                  the raw dataset's description (exported models; optional here)
      selection.json                written by ``autoseg find-best``
      <plans>/<config>/plans.json   the plans the configuration was trained with (no fingerprint)
      <plans>/<config>/fold_<k>/checkpoint_{final,best,latest}.pt

``autoseg predict -m`` accepts the model root, one ``<plans>`` folder below it, or a ``.zip``
written by ``autoseg export-model`` (unpacked to a temporary folder for the run). Nothing in a
model folder is an absolute path, so it can be copied to another machine.

Example:
    >>> with open_model("results/Dataset004_Hippocampus") as model:  # doctest: +SKIP
    ...     model.configurations()
    ['2d', '3d_fullres']
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autoseg.contracts import Architecture, LabelManager, Plans
from autoseg.io.checkpoints import load_checkpoint
from autoseg.nets.factory import build_network

__all__ = ["ModelFolder", "TrainedConfiguration", "load_fold_network", "open_model"]

CHECKPOINTS = ("final", "best", "latest")


@dataclass(frozen=True)
class TrainedConfiguration:
    """One trained configuration: its plans and the folds that have checkpoints."""

    name: str
    folder: Path  # <root>/<plans>/<config>
    plans: Plans
    folds: tuple[str, ...]  # fold names with a checkpoint ("0", "1", ..., or "all")

    def checkpoint(self, fold: str, which: str = "final") -> Path:
        """The checkpoint file of ``fold``; FileNotFoundError naming what exists otherwise."""
        if which not in CHECKPOINTS:
            raise ValueError(f"checkpoint {which!r} is not one of {', '.join(CHECKPOINTS)}")
        path = self.folder / f"fold_{fold}" / f"checkpoint_{which}.pt"
        if not path.is_file():
            have = sorted(p.name for p in (self.folder / f"fold_{fold}").glob("checkpoint_*.pt"))
            raise FileNotFoundError(
                f"{path} does not exist (fold {fold} of {self.name} has: "
                f"{', '.join(have) or 'no checkpoint'}); "
                "train it, or choose another --checkpoint"
            )
        return path


@dataclass(frozen=True)
class ModelFolder:
    """A model root (see the module docstring) with one plans name chosen."""

    root: Path
    plans_name: str
    dataset: dict[str, Any] | None  # dataset.json, when present
    selection: dict[str, Any] | None  # selection.json, when present

    def configurations(self) -> list[str]:
        """Configurations of these plans with at least one trained fold."""
        base = self.root / self.plans_name
        return sorted(p.parent.name for p in base.glob("*/plans.json") if trained_folds(p.parent))

    def configuration(self, name: str) -> TrainedConfiguration:
        """The trained configuration ``name``; FileNotFoundError listing the trained ones otherwise."""
        folder = self.root / self.plans_name / name
        folds = trained_folds(folder)
        if not (folder / "plans.json").is_file() or not folds:
            raise FileNotFoundError(
                f"{folder} holds no trained {name!r} model (plans.json and fold_k/checkpoint_*.pt); "
                f"trained configurations here: {', '.join(self.configurations()) or 'none'}"
            )
        plans = Plans.load(folder / "plans.json")
        return TrainedConfiguration(name=name, folder=folder, plans=plans, folds=folds)


def trained_folds(folder: Path) -> tuple[str, ...]:
    folds = [p.name[len("fold_") :] for p in folder.glob("fold_*") if any(p.glob("checkpoint_*.pt"))]
    return tuple(sorted(folds, key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f)))


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _plans_names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*/plans.json")))


def _locate(path: Path, plans_name: str | None) -> tuple[Path, str]:
    """(model root, plans name) of a model root or a plans folder."""
    if any(path.glob("*/plans.json")) and not _plans_names(path):  # a <plans> folder
        if plans_name not in (None, path.name):
            raise ValueError(f"{path} is the folder of plans {path.name!r}, not {plans_name!r}")
        return path.parent, path.name
    names = _plans_names(path)
    if not names:
        raise FileNotFoundError(
            f"{path} is not a model folder: expected <plans>/<configuration>/plans.json with fold_k/ "
            "checkpoints below it (a results folder $AUTOSEG_RESULTS/<Dataset>, or an exported model)"
        )
    if plans_name is None:
        if "default" in names or len(names) == 1:
            return path, "default" if "default" in names else names[0]
        raise ValueError(f"{path} holds several plans ({', '.join(names)}): choose one with --plans-name")
    if plans_name not in names:
        raise FileNotFoundError(f"{path} has no trained plans {plans_name!r} (it has: {', '.join(names)})")
    return path, plans_name


def _safe_extract(archive: Path, target: Path) -> None:
    """Unpack ``archive``; members that would land outside ``target`` are an error."""
    with zipfile.ZipFile(archive) as zf:
        bad = [n for n in zf.namelist() if Path(n).is_absolute() or ".." in Path(n).parts]
        if bad:
            raise ValueError(f"{archive}: refusing member paths outside the archive folder: {bad[:5]}")
        zf.extractall(target)


@contextlib.contextmanager
def open_model(path: str | os.PathLike[str], plans_name: str | None = None) -> Iterator[ModelFolder]:
    """Open a model root, a plans folder or a model archive (.zip) for the duration of a block.

    Args:
        path: see the module docstring.
        plans_name: which plans, when the root holds several (default: ``default`` or the only one).

    Raises:
        FileNotFoundError / ValueError: not a model, or an ambiguous one (the message says how to choose).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model {path} does not exist")
    with contextlib.ExitStack() as stack:
        if path.is_file():
            if not zipfile.is_zipfile(path):
                raise ValueError(f"model {path} is a file but not a .zip written by `autoseg export-model`")
            unpacked = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="autoseg-model-")))
            _safe_extract(path, unpacked)
            path = unpacked
        root, name = _locate(path, plans_name)
        yield ModelFolder(
            root=root,
            plans_name=name,
            dataset=_read_json(root / "dataset.json"),
            selection=_read_json(root / "selection.json"),
        )


def load_fold_network(
    checkpoint: Path, device: torch.device, expected: Architecture | None = None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network of a checkpoint, in eval mode on ``device``, and the checkpoint's metadata.

    Args:
        checkpoint: a ``checkpoint_*.pt`` written by training (loaded with ``weights_only=True``).
        device: where the network runs.
        expected: the configuration's architecture; a checkpoint of another architecture is an error.
    """
    state = load_checkpoint(checkpoint, map_location="cpu")
    arch = Architecture.from_dict(state["architecture"], f"{checkpoint}: architecture")
    if expected is not None and arch != expected:
        raise ValueError(
            f"{checkpoint} was trained with another architecture than its plans.json describes; "
            "retrain the fold or restore the matching plans.json"
        )
    labels = LabelManager.from_labels(state["labels"], state.get("regions_class_order"), str(checkpoint))
    network = build_network(arch, int(state["in_channels"]), labels.num_outputs)
    network.load_state_dict(state["network"])
    network.to(device).eval()
    meta = {k: v for k, v in state.items() if k not in ("network", "optimizer", "scaler", "rng")}
    return network, meta


def fold_names(requested: Sequence[str] | None, available: Sequence[str], where: str) -> list[str]:
    """The folds to use: ``requested`` (all checked to exist) or every available one."""
    if not requested:
        return list(available)
    missing = [f for f in requested if f not in available]
    if missing:
        raise FileNotFoundError(
            f"{where}: fold(s) {', '.join(missing)} are not trained (trained: {', '.join(available)})"
        )
    return list(requested)
