"""What preprocessing reads from the plans: configuration, axis order, spacings, resampling.

Also :func:`plan_hash`, the fingerprint of everything that changes a preprocessed case,
stored with each case so a changed plan makes the case stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from autoseg.contracts.plans import ConfigurationPlan, Plans

if TYPE_CHECKING:  # not at run time: training on a GPU machine needs no SimpleITK
    from autoseg.io.images import Geometry

#: Bump when the preprocessing code changes its output, to make old cases stale.
PREPROCESSING_VERSION = 1
#: Spacing given to the missing z axis of 2D images (as nnU-Net's natural-image reader does).
PSEUDO_Z_SPACING_2D = 999.0


def transpose_of(plans: Plans, ndim: int = 3) -> tuple[list[int], list[int]]:
    """``(forward, backward)`` axis permutations for arrays of ``ndim`` spatial axes.

    A plan made on 2D images has 2-axis permutations; they act on the in-plane axes of the
    (1, Y, X) arrays, and the z axis stays first.

    Raises:
        ValueError: the plans' transposes are not inverse permutations.
    """
    forward = list(plans.transpose_forward)
    if len(forward) == ndim - 1:
        forward = [0, *(a + 1 for a in forward)]
    if sorted(forward) != list(range(ndim)):
        raise ValueError(
            f"transpose_forward {list(plans.transpose_forward)} is not a permutation of {ndim} axes"
        )
    backward = [int(a) for a in np.argsort(forward)]
    if plans.transpose_backward is not None:
        given = list(plans.transpose_backward)
        given = [0, *(a + 1 for a in given)] if len(given) == ndim - 1 else given
        if given != backward:
            raise ValueError(f"transpose_backward {given} is not the inverse of transpose_forward {forward}")
    return forward, backward


def case_spacing(geometry: Geometry) -> tuple[float, ...]:
    """Spacing (z, y, x) of a case; a 2D image gets :data:`PSEUDO_Z_SPACING_2D` for z."""
    spacing = tuple(float(s) for s in geometry.spacing)
    return (PSEUDO_Z_SPACING_2D, *spacing) if geometry.ndim == 2 else spacing


def target_spacing_for(conf: ConfigurationPlan, spacing: Sequence[float]) -> list[float]:
    """The configuration's spacing for a case of (transposed) ``spacing``.

    A spacing with one value fewer than the case's axes (the ``2d`` configuration) leaves
    axis 0 at the case's own spacing.
    """
    target = list(conf.spacing)
    if len(target) == len(spacing) - 1:
        return [float(spacing[0]), *target]
    if len(target) != len(spacing):
        raise ValueError(f"plan spacing {target} does not fit a case with spacing {list(spacing)}")
    return target


def plan_hash(plans: Plans, configuration: str, labels: Sequence[int], seed: int) -> str:
    """A short digest of everything that determines a preprocessed case of ``configuration``.

    Covers the axis order, target spacing, normalization (and the CT channels' intensity
    statistics), resampling, the labels and seed of the class locations, and
    :data:`PREPROCESSING_VERSION`; not batch size, patch size or the network.
    """
    conf = plans.configuration(configuration)
    schemes = list(conf.normalization_schemes)
    intensities = plans.foreground_intensities
    relevant = {
        "version": PREPROCESSING_VERSION,
        "transpose_forward": list(plans.transpose_forward),
        "spacing": list(conf.spacing),
        "normalization_schemes": schemes,
        "use_mask_for_norm": list(conf.use_mask_for_norm),
        "ct_intensities": {str(c): intensities.get(str(c)) for c, s in enumerate(schemes) if s == "ct"},
        "resampling": conf.resampling.to_dict(),
        "labels": sorted(int(v) for v in labels),
        "seed": int(seed),
    }
    if conf.preprocessing:  # an extra step (denoising) changes the cases
        relevant["preprocessing"] = dict(conf.preprocessing)
    if "histogram" in schemes:
        relevant["histogram_landmarks"] = {c: list(v) for c, v in plans.histogram_landmarks.items()}
    if plans.nonfinite_replacement is not None:
        relevant["nonfinite"] = plans.nonfinite_replacement
    text = json.dumps(relevant, sort_keys=True, default=float)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
