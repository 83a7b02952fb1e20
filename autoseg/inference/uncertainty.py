"""Voxel-wise uncertainty of ``autoseg predict --uncertainty``: entropy and member disagreement.

The *members* of a prediction are its (fold, mirror) pairs: every fold, and within a fold every
mirroring TTA pass (every flip combination of the mirrored axes, 8 in 3D); one fold without TTA has
one member. The predictor hands their logits to :class:`MemberStatistics` while it runs the usual
prediction (:meth:`autoseg.inference.predictor.ConfigurationPredictor.logits`: the same forward
passes, the same batches), so the masks are bit for bit those of a run without ``--uncertainty``.
Probabilities are the label manager's: softmax over the classes, or one sigmoid per region.

Two maps per case, written in the input's geometry (float32) into ``uncertainty/`` beside the
masks (a subfolder, so that the output folder still holds only masks for ``autoseg evaluate``):

- ``<case>_entropy<ending>``: the entropy of the predicted probabilities divided by its maximum
  (0: certain, 1: uniform): over the K classes ``/ log K``; for regions (independent sigmoids) the
  entropy of their joint distribution ``/ (R log 2)``, i.e. the mean of the regions' binary entropies
  in bits;
- ``<case>_disagreement<ending>``: the variance of the members' probabilities, summed over the
  classes (regions) (0 when every member agrees, and with a single member).

Per case summaries go into predict.json: the mean normalised entropy inside the predicted
foreground and the volume (mL) of voxels whose normalised entropy exceeds ``HIGH_ENTROPY``.
With an ensemble of configurations, each configuration's maps are computed in its own space and
averaged on the native grid.

Example:
    >>> statistics = MemberStatistics(predictor.plans.labels)  # doctest: +SKIP
    >>> ready = predictor.export_ready(data, properties, statistics)  # doctest: +SKIP
    >>> ready.maps.shape  # (3, ...): a placeholder, the entropy, the disagreement  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoseg.contracts.case import CaseProperties
from autoseg.contracts.labels import LabelManager
from autoseg.io.images import Geometry, write_image
from autoseg.preprocessing.preprocess import revert_preprocessing

__all__ = ["HIGH_ENTROPY", "MemberStatistics", "UncertaintyMaps", "entropy_map", "member_kind"]

#: Normalised entropy above which a voxel counts as highly uncertain in the summaries.
HIGH_ENTROPY = 0.5


def entropy_map(probabilities: torch.Tensor, regions: bool = False) -> torch.Tensor:
    """Normalised entropy (values in [0, 1]) of (K, *spatial) probabilities.

    Classes (``regions=False``): the entropy over the K classes divided by ``log K``. Regions: each
    channel is its own sigmoid; the entropy of their joint distribution divided by ``K log 2``.

    Example:
        >>> entropy_map(torch.tensor([[0.5, 1.0], [0.5, 0.0]])).tolist()
        [1.0, 0.0]
        >>> entropy_map(torch.tensor([[0.5, 1.0], [0.5, 0.5]]), regions=True).tolist()
        [1.0, 0.5]
    """
    if regions:
        both = torch.stack([probabilities, 1 - probabilities])
        return -(both * both.clamp_min(1e-12).log()).sum(0).mean(0) / math.log(2)
    k = probabilities.shape[0]
    p = probabilities.clamp_min(1e-12)
    return -(probabilities * p.log()).sum(0) / math.log(max(k, 2))


def member_kind(predictor: Any) -> str:
    """What the members of ``predictor`` are: ``folds``, ``TTA mirrors``, both, or ``one pass``."""
    folds, mirrors = len(predictor.networks) > 1, bool(predictor.mirror_axes)
    if folds and mirrors:
        return "folds x TTA mirrors"
    return "folds" if folds else "TTA mirrors" if mirrors else "one pass"


class MemberStatistics:
    """A case's member statistics: the running sum of the members' probabilities and of their squares.

    A :class:`~autoseg.inference.predictor.MemberSink`: ``add`` receives each member's logits,
    ``maps`` turns the statistics and the mean prediction into the maps. Kept on the CPU in float64
    (two K-channel volumes), whatever the device, so that the GPU's memory is the usual prediction's.
    """

    def __init__(self, labels: LabelManager) -> None:
        self.labels = labels
        self.count = 0
        self.sum: torch.Tensor | None = None
        self.sum_of_squares: torch.Tensor | None = None

    def add(self, fold: int, mirror: int, logits: torch.Tensor) -> None:
        """Add member (``fold``, ``mirror``)'s logits (K, *spatial)."""
        probs = self.labels.activate(logits.to("cpu", torch.float64))
        if self.sum is None or self.sum_of_squares is None:
            self.sum, self.sum_of_squares = probs, probs.square()
        else:
            self.sum.add_(probs)
            self.sum_of_squares.addcmul_(probs, probs)
        self.count += 1

    def maps(self, probabilities: torch.Tensor) -> torch.Tensor:
        """(3, *spatial) float32 on ``probabilities``' device: a placeholder, the entropy of the mean
        prediction's ``probabilities``, the members' disagreement.

        The placeholder channel 0 lets :func:`revert_preprocessing` fill the outside of the crop (it
        sets channel 0 to 1 there and the others to 0); it is dropped after reverting.
        """
        if self.sum is None or self.sum_of_squares is None:
            raise ValueError("no member was added: run the prediction with these statistics first")
        mean = self.sum / self.count
        variance = (self.sum_of_squares / self.count - mean.square()).clamp_min_(0).sum(0)
        entropy = entropy_map(probabilities.float(), self.labels.has_regions)
        disagreement = variance.to(entropy.device, torch.float32)
        return torch.stack([torch.zeros_like(entropy), entropy, disagreement])


class UncertaintyMaps:
    """Computes a case's maps with the predictor and writes them; collects the per-case summaries."""

    def __init__(self) -> None:
        self.summaries: dict[str, dict[str, Any]] = {}

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
