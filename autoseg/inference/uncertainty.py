"""Voxel-wise uncertainty of ``autoseg predict --uncertainty``: entropy and member disagreement.

The *members* of a prediction are its folds; a single fold's members are its mirroring TTA passes
(every flip combination of the mirrored axes, 8 in 3D). Their averaged logits are exactly what
the prediction uses, so the mask is the same with or without ``--uncertainty``; only the
members' passes are kept apart to measure how much they disagree.

Two maps per case, written in the input's geometry (float32) into ``uncertainty/`` beside the
masks (a subfolder, so that the output folder still holds only masks for ``autoseg evaluate``):

- ``<case>_entropy<ending>``: the entropy of the predicted class probabilities divided by
  ``log K`` (0: certain, 1: uniform over the K classes);
- ``<case>_disagreement<ending>``: the variance of the members' probabilities, summed over the
  classes (0 when every member agrees; 0 too with one fold and no TTA, which has one member).

Per case summaries go into predict.json: the mean normalised entropy inside the predicted
foreground and the volume (mL) of voxels whose normalised entropy exceeds ``HIGH_ENTROPY``.
With an ensemble of configurations, each configuration's maps are computed in its own space and
averaged on the native grid.

Example:
    >>> maps = UncertaintyMaps()
    >>> logits, stack = maps.logits_and_maps(predictor, data)  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoseg.contracts.case import CaseProperties
from autoseg.io.images import Geometry, write_image
from autoseg.preprocessing.preprocess import revert_preprocessing

__all__ = ["HIGH_ENTROPY", "UncertaintyMaps", "entropy_map", "member_kind"]

#: Normalised entropy above which a voxel counts as highly uncertain in the summaries.
HIGH_ENTROPY = 0.5


def entropy_map(probabilities: torch.Tensor) -> torch.Tensor:
    """Entropy of (K, *spatial) probabilities over K, divided by log K: values in [0, 1].

    Example:
        >>> entropy_map(torch.tensor([[0.5, 1.0], [0.5, 0.0]])).tolist()
        [1.0, 0.0]
    """
    k = probabilities.shape[0]
    p = probabilities.clamp_min(1e-12)
    return -(probabilities * p.log()).sum(0) / math.log(max(k, 2))


def member_kind(predictor: Any) -> str:
    """What the members of ``predictor`` are: ``folds``, ``TTA mirrors`` or ``one pass``."""
    if len(predictor.networks) > 1:
        return "folds"
    return "TTA mirrors" if predictor.mirror_axes else "one pass"


def _members(predictor: Any, tensor: torch.Tensor) -> list[torch.Tensor]:
    """Logits (K, *spatial) of each member: each fold (with its TTA), or each mirror of one fold."""
    kwargs: dict[str, Any] = {
        "step_size": predictor.options.step_size,
        "mirror_axes": predictor.mirror_axes,
        "device": predictor.device,
        "amp": predictor.options.amp and predictor.device.type == "cuda",
    }
    if len(predictor.networks) > 1 or not predictor.mirror_axes:
        return [predictor._one(network, tensor, kwargs) for network in predictor.networks]
    offset = tensor.ndim - len(predictor.patch_size)  # the tensor's dim of spatial axis 0
    dims = [a + offset for a in predictor.mirror_axes]
    out = []
    for n in range(len(dims) + 1):
        for flip in itertools.combinations(dims, n):
            image = torch.flip(tensor, flip) if flip else tensor
            logits = predictor._one(predictor.networks[0], image, {**kwargs, "mirror_axes": None})
            out.append(torch.flip(logits, [d - offset + 1 for d in flip]) if flip else logits)
    return out


class UncertaintyMaps:
    """Computes a case's maps with the predictor and writes them; collects the per-case summaries."""

    def __init__(self) -> None:
        self.summaries: dict[str, dict[str, Any]] = {}

    def logits_and_maps(self, predictor: Any, data: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """(the members' mean logits (K, *spatial), maps (3, *spatial): a placeholder, entropy, disagreement).

        The placeholder channel 0 lets :func:`revert_preprocessing` fill the outside of the crop
        (it sets channel 0 to 1 there and the others to 0); it is dropped after reverting.
        """
        tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        with torch.inference_mode():
            members = _members(predictor, tensor)
            mean = torch.stack(members).mean(0)
            probs = torch.stack([torch.softmax(m, dim=0) for m in members])
            disagreement = (
                probs.var(0, unbiased=False).sum(0) if len(members) > 1 else torch.zeros(mean.shape[1:])
            )
            entropy = entropy_map(torch.softmax(mean, dim=0))
            stack = torch.stack([torch.zeros_like(entropy), entropy, disagreement]).numpy()
        return mean, stack

    def write(
        self,
        name: str,
        ending: str,
        maps: Sequence[tuple[np.ndarray, CaseProperties]],
        seg: np.ndarray,
        geometry: Geometry,
        output: Path,
    ) -> list[Path]:
        """Revert each configuration's maps to the native grid, average, write; record the summary."""
        native = np.mean([revert_preprocessing(m, props)[1:] for m, props in maps], axis=0).astype(np.float32)
        entropy, disagreement = np.clip(native[0], 0, 1), np.clip(native[1], 0, None)
        folder = output / "uncertainty"
        folder.mkdir(parents=True, exist_ok=True)
        files = [
            write_image(entropy, geometry, folder / f"{name}_entropy{ending}"),
            write_image(disagreement, geometry, folder / f"{name}_disagreement{ending}"),
        ]
        foreground = seg > 0
        voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
        self.summaries[name] = {
            "mean_entropy_in_foreground": float(entropy[foreground].mean()) if foreground.any() else None,
            "mean_disagreement_in_foreground": float(disagreement[foreground].mean())
            if foreground.any()
            else None,
            "high_uncertainty_ml": float((entropy > HIGH_ENTROPY).sum()) * voxel_ml,
        }
        return files
