"""Where ``autoseg train ... --init-from SOURCE`` finds the weights to start from.

SOURCE is one of:

- a fold checkpoint (``fold_0/checkpoint_final.pt``) or a fold folder holding one;
- a model folder: a results folder (``$AUTOSEG_RESULTS/<Dataset>``), one ``<plans>`` folder below
  it, or a model archive (``.zip`` of ``autoseg export-model``). The configuration is the one being
  trained when the model has it, else its only one; the fold is its only trained fold, or
  ``--init-fold K``; the checkpoint ``final`` (else ``best``, else ``latest``; the record says which);
- ``https://...`` or ``hf://owner/name[@revision]``: fetched (and cached) by
  :func:`autoseg.io.remote.resolve_source`, then one of the above.

Checkpoints load with ``weights_only=True`` (:func:`autoseg.io.checkpoints.load_checkpoint`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autoseg.inference.model import CHECKPOINTS, ModelFolder, open_model
from autoseg.io.checkpoints import load_checkpoint
from autoseg.training.cascade import network_in_channels
from autoseg.training.init_weights import TransferReport, transfer_weights
from autoseg.training.spec import FoldSpec

__all__ = [
    "REMOTE_PREFIXES",
    "InitFrom",
    "SourceCheckpoint",
    "initialise",
    "load_source_checkpoint",
    "remote_resolver",
]

REMOTE_PREFIXES = ("https://", "http://", "hf://")


@dataclass(frozen=True)
class InitFrom:
    """``--init-from SOURCE [--init-fold K]``: the weights a new run starts from."""

    source: str
    fold: str | None = None


@dataclass(frozen=True)
class SourceCheckpoint:
    """A source checkpoint's content and where it came from (no absolute path: ``member`` is the
    checkpoint's place inside the model, e.g. ``default/3d_fullres/fold_0/checkpoint_final.pt``)."""

    source: str
    member: str
    state: dict[str, Any]


def remote_resolver() -> Callable[[str], Path]:
    """:func:`autoseg.io.remote.resolve_source` (downloads and caches a URL or ``hf://`` model)."""
    try:
        from autoseg.io.remote import resolve_source
    except ImportError as err:
        raise ValueError(
            "--init-from: models from a URL or hf:// need autoseg.io.remote, which this installation "
            f"lacks ({err}); download the model yourself and give its local path"
        ) from err
    return resolve_source  # type: ignore[no-any-return]


def load_source_checkpoint(init: InitFrom, configuration: str) -> SourceCheckpoint:
    """The checkpoint ``init`` names (module docstring), for training ``configuration``.

    Raises:
        FileNotFoundError / ValueError: the source does not exist, is not a model, or is ambiguous
            (the message says how to choose).
    """
    path = remote_resolver()(init.source) if init.source.startswith(REMOTE_PREFIXES) else Path(init.source)
    if not path.exists():
        raise FileNotFoundError(f"--init-from {init.source}: no such file or folder")
    if (path.is_file() and path.suffix == ".pt") or (path.is_dir() and _fold_checkpoint(path) is not None):
        if init.fold is not None:
            raise ValueError(
                f"--init-fold {init.fold}: --init-from {init.source} is one fold's checkpoint; "
                "--init-fold chooses a fold of a model folder or archive"
            )
        file = path if path.is_file() else _fold_checkpoint(path)
        assert file is not None
        return SourceCheckpoint(init.source, file.name, load_checkpoint(file))
    with open_model(path) as model:
        file, member = _model_checkpoint(model, init, configuration)
        return SourceCheckpoint(init.source, member, load_checkpoint(file))


def _fold_checkpoint(folder: Path) -> Path | None:
    """A fold folder's checkpoint: final, else best, else latest; None for another folder."""
    for which in CHECKPOINTS:
        if (folder / f"checkpoint_{which}.pt").is_file():
            return folder / f"checkpoint_{which}.pt"
    return None


def _model_checkpoint(model: ModelFolder, init: InitFrom, configuration: str) -> tuple[Path, str]:
    trained = model.configurations()
    if configuration in trained:
        name = configuration
    elif len(trained) == 1:
        name = trained[0]
    else:
        raise ValueError(
            f"--init-from {init.source}: it has no {configuration!r} model but several others "
            f"({', '.join(trained) or 'none'}); give the checkpoint itself (<plans>/<config>/fold_K/"
            "checkpoint_final.pt)"
        )
    conf = model.configuration(name)
    if init.fold is not None:
        if init.fold not in conf.folds:
            raise ValueError(
                f"--init-fold {init.fold}: {init.source} has no trained fold {init.fold} of {name} "
                f"(trained: {', '.join(conf.folds)})"
            )
        fold = init.fold
    elif len(conf.folds) == 1:
        fold = conf.folds[0]
    else:
        raise ValueError(
            f"--init-from {init.source}: {name} has {len(conf.folds)} trained folds "
            f"({', '.join(conf.folds)}); choose one with --init-fold K"
        )
    file = _fold_checkpoint(conf.folder / f"fold_{fold}")
    assert file is not None  # the fold is listed because it has a checkpoint
    return file, f"{model.plans_name}/{name}/fold_{fold}/{file.name}"


def initialise(network: torch.nn.Module, spec: FoldSpec, init: InitFrom) -> TransferReport:
    """Load ``init``'s weights into the fold's freshly built ``network`` (the bare module); the report."""
    source = load_source_checkpoint(init, spec.configuration)
    fix = f"autoseg plan {spec.plans.dataset_name} --plans-from {init.source}"
    return transfer_weights(
        network,
        source.state,
        spec.conf.architecture,
        spec.plans.labels,
        network_in_channels(spec),
        (source.source, source.member),
        fix,
    )
