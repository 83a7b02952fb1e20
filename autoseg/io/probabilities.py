"""Class probabilities on disk: ``<case>.npz`` with ``probabilities`` (K, *spatial) float16."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoseg.utils.files import atomic_path

__all__ = ["load_probabilities", "save_probabilities"]


def save_probabilities(path: Path, probabilities: np.ndarray) -> Path:
    """Write (K, *spatial) probabilities as float16 in a compressed .npz, atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, probabilities=probabilities.astype(np.float16))
    return path


def load_probabilities(path: Path) -> np.ndarray:
    """Probabilities (K, *spatial) float32 from :func:`save_probabilities`'s file."""
    with np.load(path, allow_pickle=False) as npz:
        return npz["probabilities"].astype(np.float32)
