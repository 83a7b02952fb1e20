"""Checkpoint files: atomic writes and ``weights_only=True`` loads, with a format version.

A checkpoint holds only tensors and primitives (no pickled classes), so it loads with
``torch.load(..., weights_only=True)``. Training writes them (:mod:`autoseg.training.checkpoint`
adds the RNG states); prediction reads them (:mod:`autoseg.inference.model`).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from autoseg.utils.files import atomic_path

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format version) atomically: a crash leaves the old file intact."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    return path


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupted, or not a checkpoint autoseg wrote."""


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``, by default onto the CPU.

    Keep the default when resuming: the RNG states must be CPU tensors, and ``load_state_dict`` of
    the model and optimiser moves their tensors to wherever the model lives, so a checkpoint written
    on a GPU resumes on the CPU and the reverse.

    Raises:
        FileNotFoundError: naming the file and how to get one.
        CheckpointError: the file is truncated or corrupted (never a pickle or zip traceback).
        ValueError: the file is of another format version.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint; train first (or drop --resume to start anew)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, KeyError, OSError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointError(
            f"{path}: cannot be read as a checkpoint ({type(err).__name__}: {reason}); it is truncated or "
            f"corrupted (an interrupted copy or a full disk?). Copy it again from its source, or delete it "
            f"and train the fold again (with --resume, checkpoint_latest.pt is the one read)"
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        state = state if isinstance(state, dict) else {}
        raise ValueError(f"{path}: checkpoint format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}")
    return state
