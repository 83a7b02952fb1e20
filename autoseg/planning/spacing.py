"""Target spacing (with the anisotropy rule), axis transposition and median shape."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autoseg.planning.topology import Vector


@dataclass(frozen=True)
class SpacingDecision:
    """The target spacing and why it was chosen.

    Attributes:
        spacing: target spacing per axis in the images' own (z, y, x) order.
        rule: a one-line explanation of the rule that fired.
    """

    spacing: tuple[float, ...]
    rule: str


def target_spacing(
    spacings: Sequence[Vector], shapes: Sequence[Sequence[int]], anisotropy_threshold: float = 3.0
) -> SpacingDecision:
    """The median spacing per axis, except for strongly anisotropic data.

    When the coarsest axis is more than ``anisotropy_threshold`` times coarser than the
    others and also has ``anisotropy_threshold`` times fewer voxels, its target is the
    10th percentile of that axis's spacings instead (clamped to just above the in-plane
    spacing), so thick-slice datasets are not resampled to their thickest slices.

    Args:
        spacings: per case, spacing (z, y, x).
        shapes: per case, shape after cropping (z, y, x).
        anisotropy_threshold: nnU-Net's value is 3.

    Example:
        >>> target_spacing([(1, 1, 1), (1, 1, 1)], [(10, 10, 10), (10, 10, 10)]).spacing
        (1.0, 1.0, 1.0)
    """
    sp = np.asarray(spacings, dtype=np.float64)
    sz = np.asarray(shapes, dtype=np.float64)
    target = np.percentile(sp, 50, axis=0)
    median_size = np.percentile(sz, 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    if not others:
        return SpacingDecision(tuple(float(v) for v in target), "median spacing (one axis)")
    other_spacing = max(target[a] for a in others)
    aniso_spacing = target[worst] > anisotropy_threshold * other_spacing
    aniso_voxels = median_size[worst] * anisotropy_threshold < min(median_size[a] for a in others)
    if not (aniso_spacing and aniso_voxels):
        why = "median spacing per axis"
        if aniso_spacing:
            why += f" (axis {worst} is anisotropic but not short: {median_size[worst]:.0f} voxels)"
        return SpacingDecision(tuple(float(v) for v in target), why)
    p10 = float(np.percentile(sp[:, worst], 10))
    if p10 < other_spacing:
        p10 = max(other_spacing, p10) + 1e-5
    median_worst = target[worst]
    target[worst] = p10
    return SpacingDecision(
        tuple(float(v) for v in target),
        f"anisotropy rule: axis {worst} spacing {median_worst:.3g} > {anisotropy_threshold:g} x "
        f"{other_spacing:.3g} and {median_size[worst]:.0f} x {anisotropy_threshold:g} voxels < "
        f"{min(median_size[a] for a in others):.0f}; that axis takes its 10th percentile {p10:.4g}",
    )


def transpose_axes(spacing: Vector) -> tuple[list[int], list[int]]:
    """Axis order with the coarsest axis first, and its inverse.

    Example:
        >>> transpose_axes((0.7, 0.7, 5.0))
        ([2, 0, 1], [1, 2, 0])
    """
    coarsest = int(np.argmax(spacing))
    forward = [coarsest] + [a for a in range(len(spacing)) if a != coarsest]
    backward = [int(v) for v in np.argsort(forward)]
    return forward, backward


def median_shape_at(
    shapes: Sequence[Sequence[int]], spacings: Sequence[Vector], target: Vector
) -> np.ndarray:
    """Median over cases of each case's shape once resampled to ``target`` (float array)."""
    new = [
        np.round(np.asarray(s, float) * np.asarray(sp, float) / np.asarray(target, float))
        for s, sp in zip(shapes, spacings, strict=True)
    ]
    return np.median(np.stack(new), axis=0)
