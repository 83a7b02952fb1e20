"""Checkpoints for exact resume: every RNG state (files: :mod:`autoseg.io.checkpoints`, re-exported here).

A checkpoint holds only tensors and primitives (no pickled classes), so it loads with
``torch.load(..., weights_only=True)``.

Under data-parallel training rank 0 alone writes checkpoints, so they hold rank 0's global RNG
states; a resumed run restores them on every rank. The batches do not depend on them (each batch
has its own generator, :mod:`autoseg.data.loader`), which is why this is enough for an exact resume.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from autoseg.io.checkpoints import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, save_checkpoint

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "load_checkpoint",
    "restore_rng_states",
    "rng_states",
    "save_checkpoint",
]


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
    """Undo :func:`rng_states`, whatever device the checkpoint was mapped to.

    ``torch.set_rng_state`` and ``torch.cuda.set_rng_state`` take only CPU ByteTensors, so every
    state is brought to the CPU first (a checkpoint loaded with ``map_location="cuda"`` holds CUDA
    tensors). CUDA states are restored for the GPUs both runs have (a checkpoint from a CPU run has
    none; the CUDA generators then keep their seeds).

    Raises:
        ValueError: a state has no data (e.g. mapped to the ``meta`` device); load with
            ``map_location="cpu"`` (:func:`load_checkpoint`'s default).
    """
    torch.set_rng_state(_cpu_bytes(states["torch"], "torch"))
    n = states["numpy"]
    np.random.set_state(
        (n["kind"], _cpu(n["keys"], "numpy").numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    random.setstate(_to_tuples(states["python"]))
    if "cuda" in states and torch.cuda.is_available():
        for index, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(_cpu_bytes(state, f"cuda:{index}"), index)


def _cpu(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """``tensor`` on the CPU; a tensor without data (meta) is an error naming the state."""
    if tensor.device.type == "meta":
        raise ValueError(
            f"the {name} RNG state is on the meta device (no data): load the checkpoint with "
            "map_location='cpu' and move the model afterwards"
        )
    return tensor.detach().to("cpu")


def _cpu_bytes(tensor: torch.Tensor, name: str) -> torch.Tensor:
    return _cpu(tensor, name).to(torch.uint8).contiguous()


def _to_lists(obj: Any) -> Any:
    return [_to_lists(o) for o in obj] if isinstance(obj, tuple | list) else obj


def _to_tuples(obj: Any) -> Any:
    return tuple(_to_tuples(o) for o in obj) if isinstance(obj, list) else obj
