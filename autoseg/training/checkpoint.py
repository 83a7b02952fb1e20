"""Checkpoints: atomic writes, ``weights_only=True`` loads, and every RNG state for exact resume.

A checkpoint holds only tensors and primitives (no pickled classes), so it loads with
``torch.load(..., weights_only=True)``.

Under data-parallel training rank 0 alone writes checkpoints, so they hold rank 0's global RNG
states; a resumed run restores them on every rank. The batches do not depend on them (each batch
has its own generator, :mod:`autoseg.data.loader`), which is why this is enough for an exact resume.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoseg.utils.files import atomic_path

CHECKPOINT_FORMAT = 1


def rng_states() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, numpy's legacy global, Python's) as primitives/tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    keys = np.asarray(keys)
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Undo :func:`rng_states`."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    random.setstate(_to_tuples(states["python"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _to_lists(obj: Any) -> Any:
    return [_to_lists(o) for o in obj] if isinstance(obj, tuple | list) else obj


def _to_tuples(obj: Any) -> Any:
    return tuple(_to_tuples(o) for o in obj) if isinstance(obj, list) else obj


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format version) atomically: a crash leaves the old file intact."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    return path


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupted, or not a checkpoint autoseg wrote."""


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

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
