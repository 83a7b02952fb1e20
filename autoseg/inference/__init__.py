"""Inference: sliding-window prediction with Gaussian weighting and mirroring TTA."""

from autoseg.inference.sliding_window import (
    WindowOptions,
    compute_tile_starts,
    gaussian_importance,
    predict_sliding_window,
    predict_volume_2d,
    sliding_window,
)

__all__ = [
    "WindowOptions",
    "compute_tile_starts",
    "gaussian_importance",
    "predict_sliding_window",
    "predict_volume_2d",
    "sliding_window",
]
