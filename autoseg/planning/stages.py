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
from autoseg.contracts.plans import PLANS_SCHEMA_VERSION, Plans
from autoseg.io.dataset import RawDataset, load_raw_dataset
from autoseg.planning.fingerprint import compute_fingerprint, read_fingerprint, write_fingerprint
from autoseg.planning.planner import Explanation
from autoseg.planning.plans import build_plans, histogram_channels
from autoseg.planning.presets import PlannerConfig
from autoseg.planning.splits import load_or_create_splits
from autoseg.preprocessing.steps import PreprocessingChoice
from autoseg.utils.files import write_artifact

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
    preprocessing: PreprocessingChoice | None = None,
    dataset_root: Path | None = None,
) -> tuple[Plans, Explanation]:
    """Plan from fingerprint.json; write plans.json and splits.json; the plans as written.

    ``histogram`` normalisation fits its landmarks on the images of ``dataset_root`` here.
    """
    fingerprint = read_fingerprint(folders.fingerprint)
    plans, explain = build_plans(fingerprint, planner, plan_overrides, preprocessing)
    if "nonfinite_intensities" in fingerprint:  # preprocessing replaces them the same way
        plans["nonfinite_intensities"] = fingerprint["nonfinite_intensities"]
    _fit_landmarks(plans, dataset_root, explain)
    plans["run"] = {"config": run_config or {}, "versions": versions()}
    path = write_artifact(folders.plans(planner.name), "plans", PLANS_SCHEMA_VERSION, plans)
    typed = read_plans(folders, planner.name)  # what every later stage will read
    load_or_create_splits(folders.splits, list(typed.case_names), num_folds, split_seed, user_splits)
    log.debug("plans written to %s", path)
    return typed, explain


def _fit_landmarks(plans: dict[str, Any], dataset_root: Path | None, explain: Explanation) -> None:
    """Add ``histogram_landmarks`` for the channels any configuration normalises with ``histogram``."""
    from autoseg.preprocessing.steps import fit_histogram_landmarks

    channels = histogram_channels(plans)
    if not channels:
        return
    if dataset_root is None:
        raise ValueError("histogram normalization needs the raw dataset to fit its landmarks on")
    dataset = load_raw_dataset(dataset_root)
    files = {c: [case.channel_files[c] for case in dataset.cases] for c in channels}
    plans["histogram_landmarks"] = fit_histogram_landmarks(files)
    explain.add(
        f"histogram landmarks of channel(s) {channels} fitted on {len(dataset.cases)} training images"
    )


def read_plans(folders: DatasetFolders, plans_name: str) -> Plans:
    """The plans ``plans_name`` of a dataset, validated (:class:`autoseg.contracts.Plans`)."""
    return Plans.load(folders.plans(plans_name))


def run_preprocess(
    dataset_root: Path,
    folders: DatasetFolders,
    plans: Plans,
    configurations: Sequence[str],
    num_workers: int | None,
) -> list[Path]:
    """Preprocess the dataset for each configuration (resumable)."""
    from autoseg.preprocessing.preprocess import preprocess_dataset

    dataset = load_raw_dataset(dataset_root)
    out = []
    for name in configurations:
        if name not in plans.planned:
            raise ValueError(
                f"configuration {name!r} is not in the plans (planned: {', '.join(plans.planned)})"
            )
        out.append(preprocess_dataset(dataset, plans, name, folders.root / plans.plans_name, num_workers))
    return out
