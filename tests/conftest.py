"""Shared fixtures: tiny synthetic datasets (made once per session) and the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autoseg.synthetic.dataset import SyntheticSpec, generate_dataset

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path | None:
    """../shared/data beside the checkout (or $AUTOSEG_TEST_DATA), None when absent."""
    candidate = Path(os.environ.get("AUTOSEG_TEST_DATA", REPO.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def hippocampus_raw() -> Path:
    """The real MSD hippocampus subset; the test is skipped when it is absent."""
    data = shared_data()
    if data is None or not (data / "Dataset004_Hippocampus" / "dataset.json").is_file():
        pytest.skip("real data ../shared/data/Dataset004_Hippocampus is absent")
    return data / "Dataset004_Hippocampus"


@pytest.fixture(scope="session")
def tiny_mr_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 MR-like cases of about 24x32x32 voxels, 2 classes, 1 mm isotropic."""
    out = tmp_path_factory.mktemp("raw") / "Dataset901_TinyMR"
    return generate_dataset(out, SyntheticSpec(num_cases=8, shape=(24, 32, 32), seed=1))


@pytest.fixture(scope="session")
def tiny_ct_aniso_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 CT-like cases with thick slices (4 x 0.8 x 0.8 mm), 3 classes."""
    out = tmp_path_factory.mktemp("raw") / "Dataset902_TinyCT"
    spec = SyntheticSpec(
        num_cases=6, shape=(12, 64, 64), spacing=(4.0, 0.8, 0.8), modality="ct", classes=3, seed=2
    )
    return generate_dataset(out, spec)
