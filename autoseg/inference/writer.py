"""One case's prediction written in its native geometry: the exporter of ``autoseg predict`` and of
the final validation of training (both call :func:`export_prediction`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoseg.contracts.labels import LabelManager
from autoseg.inference.native import DEFAULT_SLAB_BYTES, native_segmentation
from autoseg.io.images import Geometry, write_image
from autoseg.io.probabilities import save_probabilities
from autoseg.postprocessing.components import apply_postprocessing
from autoseg.postprocessing.ensemble import average_probabilities, segmentation_from
from autoseg.postprocessing.temperature import apply_temperature
from autoseg.preprocessing.preprocess import revert_preprocessing

__all__ = ["export_prediction"]


def export_prediction(
    name: str,
    ending: str,
    probs_per_config: Sequence[tuple[np.ndarray, Mapping[str, Any]]],
    geometry: Geometry,
    output: Path,
    postprocessing: Any = None,
    keep_probabilities: bool = False,
    labels: LabelManager | None = None,
    temperature: float | None = None,
    activated: bool = True,
    slab_bytes: int = DEFAULT_SLAB_BYTES,
) -> tuple[np.ndarray, list[Path]]:
    """Revert each configuration's probabilities to the native grid, average, make the label map
    (argmax, or regions by ``regions_class_order``), post-process, write.

    Without ``keep_probabilities`` the native probabilities are never held whole: the mask is made
    slab by slab (:func:`autoseg.inference.native.native_segmentation`), so memory does not grow with
    classes x volume. With it, the native probabilities (K, Z, Y, X) are built whole to be saved.

    Args:
        name / ending: the output file is ``output / f"{name}{ending}"`` (the format follows the ending).
        probs_per_config: per configuration, probabilities (K, Z', Y', X') in its preprocessed space and
            the case's properties from :func:`autoseg.preprocessing.preprocess.preprocess_case`.
        geometry: the case's native geometry (size, spacing, origin, direction).
        postprocessing: an :class:`autoseg.postprocessing.components.PostprocessingSpec` or None.
        keep_probabilities: also write ``<name>.npz`` (native-grid probabilities, float16).
        labels: the plans' labels (:meth:`LabelManager.segmentation`); None: argmax, channel k is label k.
        temperature: calibrate the saved probabilities (:func:`autoseg.evaluation.calibration.
            apply_temperature`); the mask is the argmax of the uncalibrated ones (the same).
        activated: the arrays are probabilities; False: logits (e.g. float16), activated here.
        slab_bytes: the budget of one slab of native probabilities (the streaming path).

    Returns:
        The mask (``geometry.shape``) and the files written.

    Example:
        >>> seg, files = export_prediction("c1", ".nii.gz", [(probs, props)], geometry, out)  # doctest: +SKIP
    """
    if not keep_probabilities:
        seg = native_segmentation(probs_per_config, labels, activated, slab_bytes)
        if postprocessing is not None:
            seg = apply_postprocessing(seg, postprocessing)
        return seg, [write_image(seg, geometry, output / f"{name}{ending}")]
    if not activated:
        probs_per_config = [(_activate(a, labels), props) for a, props in probs_per_config]
    regions = labels is not None and labels.has_regions
    native = [revert_preprocessing(probs, props, regions=regions) for probs, props in probs_per_config]
    probabilities = native[0] if len(native) == 1 else average_probabilities(native)
    seg = segmentation_from(probabilities, postprocessing, labels)
    written = [write_image(seg, geometry, output / f"{name}{ending}")]
    if keep_probabilities:
        if temperature is not None:
            probabilities = apply_temperature(probabilities, temperature)
        written.append(save_probabilities(output / f"{name}.npz", probabilities))
    return seg, written


def _activate(logits: np.ndarray, labels: LabelManager | None) -> np.ndarray:
    """float32 probabilities (K, ...) of logits: the labels' activation, or a softmax without labels."""
    tensor = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    with torch.inference_mode():
        probs = labels.activate(tensor) if labels is not None else torch.softmax(tensor, dim=0)
    return probs.numpy()
