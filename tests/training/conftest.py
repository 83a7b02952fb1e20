"""Shared fixture of the training tests: an easy synthetic task, planned and preprocessed once."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoseg.io.dataset import load_raw_dataset
from autoseg.planning.presets import PlannerConfig
from autoseg.planning.stages import DatasetFolders, run_fingerprint, run_plan, run_preprocess
from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset


@pytest.fixture(scope="session")
def easy_task(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One high-contrast class without distractors, planned and preprocessed for 3d_fullres."""
    root = tmp_path_factory.mktemp("train")
    spec = SyntheticSpec(num_cases=10, classes=1, shape=(24, 32, 32), noise=0.05, distractors=False, seed=7)
    raw = generate_dataset(root / "raw" / "Dataset920_Easy", spec)
    folders = DatasetFolders.for_dataset(root / "pre", load_raw_dataset(raw))
    run_fingerprint(raw, folders, num_workers=1)
    plans, _ = run_plan(folders, PlannerConfig(configurations=("3d_fullres",)))
    run_preprocess(raw, folders, plans, ["3d_fullres"], num_workers=1)
    return folders.root, plans
