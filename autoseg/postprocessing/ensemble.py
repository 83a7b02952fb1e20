"""From class probabilities to a mask: the mean of an ensemble, then argmax and post-processing.

Used by ``autoseg predict`` (:mod:`autoseg.inference.run`) and by the cross-validation ensembles of
``autoseg find-best`` (:mod:`autoseg.evaluation.crossval`), so both make masks the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autoseg.contracts.labels import LabelManager
from autoseg.postprocessing.components import apply_postprocessing

__all__ = ["average_probabilities", "segmentation_from"]


def average_probabilities(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of several (K, *spatial) probability maps (an ensemble of configurations)."""
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"cannot average probabilities of different shapes {sorted(shapes)}")
    out = np.array(arrays[0], dtype=np.float32, copy=True)
    for a in arrays[1:]:
        out += a
    out /= len(arrays)
    return out


def segmentation_from(
    probabilities: np.ndarray, postprocessing: Any | None = None, labels: LabelManager | None = None
) -> np.ndarray:
    """Label map (uint8, or uint16 for > 255 classes) of probabilities (K, ...), post-processed if asked.

    Args:
        probabilities: (K, *spatial).
        postprocessing: an :class:`autoseg.postprocessing.components.PostprocessingSpec` or None.
        labels: the dataset's labels: region probabilities become a label map by
            ``regions_class_order`` (:meth:`LabelManager.segmentation`); None: the argmax, channel k
            being label k.
    """
    if labels is not None:
        seg = labels.segmentation(probabilities)
    else:
        dtype = np.uint8 if probabilities.shape[0] <= 255 else np.uint16
        seg = probabilities.argmax(0).astype(dtype)
    if postprocessing is not None:
        seg = apply_postprocessing(seg, postprocessing)
    return seg
