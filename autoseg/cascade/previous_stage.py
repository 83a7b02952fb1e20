"""A previous stage's native-geometry label map in another stage's preprocessed grid (the 3d cascade).

Example:
    >>> seg = to_preprocessed_grid(lowres_mask, properties)  # properties of preprocess_case
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from autoseg.preprocessing.crop import bbox_slices
from autoseg.preprocessing.resample import resample_seg_to_shape


def to_preprocessed_grid(seg: np.ndarray, properties: Mapping[str, Any]) -> np.ndarray:
    """A native-geometry label map (Z, Y, X) in a stage's preprocessed grid (Z', Y', X').

    ``properties``: what the preprocessing of the same case for that stage stored
    (:func:`autoseg.preprocessing.preprocess.preprocess_case`): transposed, cropped with its box,
    resampled like a label to ``shape_after_resampling``.

    Raises:
        ValueError: the map's shape is not the case's original shape.
    """
    forward = list(properties["transpose_forward"])
    seg = np.asarray(seg).transpose(forward)
    if list(seg.shape) != list(properties["shape_before_cropping"]):
        raise ValueError(
            f"previous-stage map of {properties.get('case')!r} has shape {list(seg.shape)} (transposed), "
            f"the case has {properties['shape_before_cropping']}: was it predicted from another image?"
        )
    seg = seg[bbox_slices(properties["bbox_used_for_cropping"])]
    res = properties["resampling"]
    return resample_seg_to_shape(
        seg,
        list(properties["shape_after_resampling"]),
        properties["spacing"],
        properties["target_spacing"],
        int(res["seg_order"]),
        int(res["seg_order_z"]),
        float(res["separate_z_anisotropy_threshold"]),
    )
