"""Inference: sliding-window prediction with Gaussian weighting and mirroring TTA."""

from autoseg.inference.sliding_window import (
    compute_tile_starts,
    gaussian_importance,
    predict_sliding_window,
    predict_volume_2d,
)

__all__ = ["compute_tile_starts", "gaussian_importance", "predict_sliding_window", "predict_volume_2d"]
