"""One case's prediction written in its native geometry: the exporter of ``autoseg predict`` and of
the final validation of training (both call :func:`export_prediction`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.contracts.labels import LabelManager
from autoseg.io.images import Geometry, write_image
from autoseg.io.probabilities import save_probabilities
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
) -> tuple[np.ndarray, list[Path]]:
    """Revert each configuration's probabilities to the native grid, average, make the label map
    (argmax, or regions by ``regions_class_order``), post-process, write.

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

    Returns:
        The mask (``geometry.shape``) and the files written.

    Example:
        >>> seg, files = export_prediction("c1", ".nii.gz", [(probs, props)], geometry, out)  # doctest: +SKIP
    """
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
