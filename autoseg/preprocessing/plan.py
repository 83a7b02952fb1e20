"""What preprocessing reads from the plans: configuration, axis order, spacings, resampling.

Also :func:`plan_hash`, the fingerprint of everything that changes a preprocessed case,
stored with each case so a changed plan makes the case stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autoseg.io.images import Geometry

#: Bump when the preprocessing code changes its output, to make old cases stale.
PREPROCESSING_VERSION = 1
#: Spacing given to the missing z axis of 2D images (as nnU-Net's natural-image reader does).
PSEUDO_Z_SPACING_2D = 999.0

DEFAULT_RESAMPLING: dict[str, float | int] = {
    "data_order": 3,
    "data_order_z": 0,
    "seg_order": 1,
    "seg_order_z": 0,
    "probabilities_order": 1,
    "separate_z_anisotropy_threshold": 3.0,
}


def configuration_plan(plans: Mapping[str, Any], configuration: str) -> dict[str, Any]:
    """A configuration's plan, with ``inherits_from`` resolved.

    Raises:
        KeyError: the configuration is not in the plans (the message lists those that are).
    """
    configs = plans["configurations"]
    if configuration not in configs:
        raise KeyError(f"configuration {configuration!r} is not in the plans (planned: {', '.join(configs)})")
    conf = dict(configs[configuration])
    seen = {configuration}
    while "inherits_from" in conf:
        parent = conf.pop("inherits_from")
        if parent in seen or parent not in configs:
            raise KeyError(f"configuration {configuration!r}: cannot inherit from {parent!r}")
        seen.add(parent)
        conf = {**configs[parent], **conf}
    return conf


def transpose_of(plans: Mapping[str, Any], ndim: int = 3) -> tuple[list[int], list[int]]:
    """``(forward, backward)`` axis permutations for arrays of ``ndim`` spatial axes.

    A plan made on 2D images has 2-axis permutations; they act on the in-plane axes of the
    (1, Y, X) arrays, and the z axis stays first.

    Raises:
        ValueError: the plans' transposes are not inverse permutations.
    """
    forward = [int(a) for a in plans["transpose_forward"]]
    if len(forward) == ndim - 1:
        forward = [0, *(a + 1 for a in forward)]
    if sorted(forward) != list(range(ndim)):
        raise ValueError(
            f"transpose_forward {plans['transpose_forward']} is not a permutation of {ndim} axes"
        )
    backward = [int(a) for a in np.argsort(forward)]
    given = plans.get("transpose_backward")
    if given is not None:
        given = [int(a) for a in given]
        given = [0, *(a + 1 for a in given)] if len(given) == ndim - 1 else given
        if given != backward:
            raise ValueError(f"transpose_backward {given} is not the inverse of transpose_forward {forward}")
    return forward, backward


def case_spacing(geometry: Geometry) -> tuple[float, ...]:
    """Spacing (z, y, x) of a case; a 2D image gets :data:`PSEUDO_Z_SPACING_2D` for z."""
    spacing = tuple(float(s) for s in geometry.spacing)
    return (PSEUDO_Z_SPACING_2D, *spacing) if geometry.ndim == 2 else spacing


def target_spacing_for(conf: Mapping[str, Any], spacing: Sequence[float]) -> list[float]:
    """The configuration's spacing for a case of (transposed) ``spacing``.

    A spacing with one value fewer than the case's axes (the ``2d`` configuration) leaves
    axis 0 at the case's own spacing.
    """
    target = [float(s) for s in conf["spacing"]]
    if len(target) == len(spacing) - 1:
        return [float(spacing[0]), *target]
    if len(target) != len(spacing):
        raise ValueError(f"plan spacing {target} does not fit a case with spacing {list(spacing)}")
    return target


def resampling_of(conf: Mapping[str, Any]) -> dict[str, float | int]:
    """The configuration's resampling settings, with nnU-Net's defaults for missing keys."""
    return {**DEFAULT_RESAMPLING, **dict(conf.get("resampling") or {})}


def plan_hash(plans: Mapping[str, Any], configuration: str, labels: Sequence[int], seed: int) -> str:
    """A short digest of everything that determines a preprocessed case of ``configuration``.

    Covers the axis order, target spacing, normalization (and the CT channels' intensity
    statistics), resampling, the labels and seed of the class locations, and
    :data:`PREPROCESSING_VERSION`; not batch size, patch size or the network.
    """
    conf = configuration_plan(plans, configuration)
    schemes = [str(s).lower() for s in conf["normalization_schemes"]]
    intensities = plans.get("foreground_intensity_properties_per_channel") or {}
    relevant = {
        "version": PREPROCESSING_VERSION,
        "transpose_forward": list(plans["transpose_forward"]),
        "spacing": [float(s) for s in conf["spacing"]],
        "normalization_schemes": schemes,
        "use_mask_for_norm": [bool(v) for v in conf.get("use_mask_for_norm", [False] * len(schemes))],
        "ct_intensities": {str(c): intensities.get(str(c)) for c, s in enumerate(schemes) if s == "ct"},
        "resampling": resampling_of(conf),
        "labels": sorted(int(v) for v in labels),
        "seed": int(seed),
    }
    if plans.get("nonfinite_intensities"):
        relevant["nonfinite"] = float(plans["nonfinite_intensities"]["replaced_with"])
    text = json.dumps(relevant, sort_keys=True, default=float)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
