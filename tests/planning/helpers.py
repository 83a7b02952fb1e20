"""Fingerprints made by hand, for planner tests that need no images."""

from __future__ import annotations

from typing import Any

import numpy as np


def make_fingerprint(
    spacing: list[float] | list[list[float]],
    shape: list[int] | list[list[int]],
    num_cases: int,
    num_labels: int = 3,
    channel: str = "CT",
    relative_size: float = 1.0,
) -> dict[str, Any]:
    """A fingerprint of ``num_cases`` cases; ``spacing``/``shape`` are one per case or one for all."""
    spacings = spacing if isinstance(spacing[0], list) else [spacing] * num_cases
    shapes = shape if isinstance(shape[0], list) else [shape] * num_cases
    return {
        "dataset_name": "Dataset999_Test",
        "cases": [
            {"name": f"case_{i:03d}", "spacing": sp, "shape_after_crop": sh, "shape_before_crop": sh}
            for i, (sp, sh) in enumerate(zip(spacings, shapes, strict=True))
        ],
        "labels": {"background": 0, **{f"label_{i}": i for i in range(1, num_labels)}},
        "channel_names": {"0": channel},
        "median_relative_size_after_cropping": relative_size,
        "median_spacing": np.median(spacings, axis=0).tolist(),
        "foreground_intensity_properties_per_channel": {"0": {"mean": 0.0, "std": 1.0}},
    }
