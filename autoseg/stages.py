"""The planning pipeline's stages as plain functions: fingerprint, plan, splits, preprocess.

Each reads the artifacts before it and writes one artifact. The CLI composes the config
and calls these; tests call them directly.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoseg import __version__
from autoseg.fingerprint import compute_fingerprint, read_fingerprint, write_fingerprint
from autoseg.io.dataset import RawDataset, load_raw_dataset
from autoseg.planning.planner import Explanation
from autoseg.planning.plans import PLANS_SCHEMA_VERSION, build_plans
from autoseg.planning.presets import PlannerConfig
from autoseg.planning.splits import load_or_create_splits
from autoseg.utils.files import read_artifact, write_artifact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetFolders:
    """Where a dataset's artifacts live under the preprocessed root.

    ``<preprocessed>/<Dataset>/fingerprint.json``, ``.../splits.json``,
    ``.../<plans_name>/plans.json`` and ``.../<plans_name>/<configuration>/`` (the cases).
    """

    root: Path

    @classmethod
    def for_dataset(cls, preprocessed_root: Path, dataset: RawDataset) -> DatasetFolders:
        return cls(preprocessed_root / dataset.name)

    @property
    def fingerprint(self) -> Path:
        return self.root / "fingerprint.json"

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    def plans(self, plans_name: str) -> Path:
        return self.root / plans_name / "plans.json"

    def configuration(self, plans_name: str, data_identifier: str) -> Path:
        return self.root / plans_name / data_identifier


def versions() -> dict[str, str]:
    """Versions of autoseg, Python and the libraries that decide the numbers."""
    import numpy
    import scipy
    import SimpleITK

    return {
        "autoseg": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "SimpleITK": SimpleITK.Version_VersionString(),
    }


def run_fingerprint(
    dataset_root: Path, folders: DatasetFolders, num_workers: int | None, nonfinite: float | None = None
) -> dict[str, Any]:
    """Validate and fingerprint; write fingerprint.json only if the dataset has no errors.

    ``nonfinite`` replaces NaN and infinite intensities by that value (``--allow-nonfinite``).
    """
    dataset = load_raw_dataset(dataset_root)
    fingerprint = compute_fingerprint(dataset, num_workers=num_workers, nonfinite=nonfinite)
    replaced = fingerprint.get("nonfinite_intensities")
    if replaced and replaced["files"]:
        log.warning(
            "non-finite intensities replaced by %g in %d file(s) (--allow-nonfinite): %s",
            replaced["replaced_with"],
            len(replaced["files"]),
            ", ".join(f"{f} ({n} voxels)" for f, n in replaced["files"].items()),
        )
    fingerprint["versions"] = versions()
    write_fingerprint(folders.fingerprint, fingerprint)
    log.info("fingerprint of %d cases written to %s", fingerprint["num_cases"], folders.fingerprint)
    return fingerprint


def run_plan(
    folders: DatasetFolders,
    planner: PlannerConfig,
    plan_overrides: Sequence[str] = (),
    run_config: dict[str, Any] | None = None,
    num_folds: int = 5,
    split_seed: int = 12345,
    user_splits: Path | None = None,
) -> tuple[dict[str, Any], Explanation]:
    """Plan from fingerprint.json; write plans.json and splits.json."""
    fingerprint = read_fingerprint(folders.fingerprint)
    plans, explain = build_plans(fingerprint, planner, plan_overrides)
    if "nonfinite_intensities" in fingerprint:  # preprocessing replaces them the same way
        plans["nonfinite_intensities"] = fingerprint["nonfinite_intensities"]
    plans["run"] = {"config": run_config or {}, "versions": versions()}
    write_artifact(folders.plans(planner.name), "plans", PLANS_SCHEMA_VERSION, plans)
    names = [c["name"] for c in fingerprint["cases"]]
    load_or_create_splits(folders.splits, names, num_folds, split_seed, user_splits)
    return plans, explain


def planned_configurations(plans: dict[str, Any]) -> list[str]:
    """Configurations with a plan of their own (2d, 3d_fullres, 3d_lowres); not the cascade entry."""
    return [name for name, conf in plans["configurations"].items() if "patch_size" in conf]


def read_plans(folders: DatasetFolders, plans_name: str) -> dict[str, Any]:
    return read_artifact(folders.plans(plans_name), "plans", PLANS_SCHEMA_VERSION)


def run_preprocess(
    dataset_root: Path,
    folders: DatasetFolders,
    plans: dict[str, Any],
    configurations: Sequence[str],
    num_workers: int | None,
) -> list[Path]:
    """Preprocess the dataset for each configuration (resumable)."""
    from autoseg.preprocessing.preprocess import preprocess_dataset

    dataset = load_raw_dataset(dataset_root)
    out = []
    for name in configurations:
        planned = planned_configurations(plans)
        if name not in planned:
            raise ValueError(f"configuration {name!r} is not in the plans (planned: {', '.join(planned)})")
        out.append(preprocess_dataset(dataset, plans, name, folders.root / plans["plans_name"], num_workers))
    return out
