"""Helpers shared by the subcommands: hydra config, dataset roots and folders."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def compose_config(args: argparse.Namespace, extra: Sequence[str] = ()) -> Any:
    """The hydra config with ``extra`` and the user's ``key=value`` overrides applied."""
    from autoseg.commands.config import compose

    return compose([*extra, *getattr(args, "hydra_overrides", [])])


def dataset_root(dataset: str, cfg: Any) -> Path:
    """The raw dataset folder of ``dataset`` (a path, ``DatasetXXX_Name`` or a number)."""
    from autoseg.commands.config import Paths
    from autoseg.io.dataset import resolve_dataset

    return resolve_dataset(dataset, Paths.from_config(cfg).raw)


def dataset_folders(cfg: Any, root: Path) -> Any:
    """The :class:`autoseg.planning.stages.DatasetFolders` of a raw dataset under the preprocessed root."""
    from autoseg.commands.config import Paths
    from autoseg.io.dataset import load_raw_dataset
    from autoseg.planning.stages import DatasetFolders

    return DatasetFolders.for_dataset(Paths.from_config(cfg).require("preprocessed"), load_raw_dataset(root))


def add_allow_nonfinite(parser: argparse.ArgumentParser, recorded_in: str, otherwise: str) -> None:
    """Add ``--allow-nonfinite VALUE``: NaN/inf intensities replaced (logged, recorded in ``recorded_in``)."""
    parser.add_argument(
        "--allow-nonfinite",
        type=float,
        default=None,
        metavar="VALUE",
        help=f"replace NaN/inf intensities by VALUE (logged, recorded in {recorded_in}); {otherwise}",
    )


def launcher_settings(cfg: Any) -> dict[str, Any]:
    """The composed ``launcher`` group as a plain dict, without its ``name``."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg.launcher, resolve=True)
    if not isinstance(data, dict):
        raise TypeError(f"launcher: expected a mapping, got {type(data).__name__}")
    return {str(k): v for k, v in data.items() if k != "name"}
