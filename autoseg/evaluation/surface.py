"""Surface metrics of binary masks in mm: 95th-percentile Hausdorff distance and normalised surface Dice.

Definitions (masks are boolean arrays, ``spacing`` is the voxel size in mm in the arrays' axis order):

- **surface** of a mask: its voxels with at least one neighbour outside the mask in full
  connectivity (26 neighbours in 3D), i.e. ``mask & ~binary_erosion(mask, full structure)``; voxels
  outside the image count as outside the mask.
- **surface distances**: for each surface voxel of one mask, the Euclidean distance in mm between
  voxel centres to the nearest surface voxel of the other mask (a k-d tree of the other surface's
  voxel centres in mm; the same numbers as ``distance_transform_edt(~surface, sampling=spacing)``).
- **HD95**: the larger of the two directed 95th percentiles (prediction -> reference and
  reference -> prediction; numpy's linear interpolation), as MONAI's ``compute_hausdorff_distance``
  with ``percentile=95`` defines it.
- **NSD** at tolerance ``tau`` mm (Nikolov et al. 2021, counted in surface voxels):
  ``(#pred surface voxels within tau of the ref surface + #ref surface voxels within tau of the pred
  surface) / (#pred surface voxels + #ref surface voxels)``.

Empty masks (the convention of all of autoseg's evaluation):

- both empty: HD95 and NSD are NaN (written as null, skipped by means), as Dice is;
- exactly one empty: NSD is 0 (no surface is matched) and HD95 is the diagonal of the image extent
  in mm, ``sqrt(sum((shape * spacing) ** 2))``: larger than any distance a prediction can make, so a
  missed or hallucinated structure is penalised in the means instead of being skipped (the BraTS
  challenges do the same with 373.13 mm, the diagonal of their 240 x 240 x 155 mm volume).
  ``n_pred`` / ``n_ref`` of the metrics dict tell these cases apart.

Speed: surfaces are extracted in the bounding box of the union of both masks, which is exact
(outside it both masks are empty and erosion treats the image border as background). Median of 5
runs on one CPU core, 128^3 volume, spacing (2.0, 0.8, 0.8), two spheres 4 voxels apart:

- radii 30 and 28: :func:`surface_metrics` 0.037 s; EDT in the union box 0.036 s; MONAI 1.6
  ``compute_hausdorff_distance(percentile=95)`` 0.036 s + ``compute_surface_dice`` 0.036 s;
- radii 55 and 50: 0.185 s; EDT 0.258 s; MONAI 0.130 s + 0.128 s;
- radii 30 and 28 plus a 3^3 island in a far corner: 0.042 s; EDT 0.080 s; MONAI 0.048 s + 0.048 s.

:func:`surface_metrics` gives HD95 and NSD from one set of distances; MONAI's two functions each
recompute them. The k-d tree's cost follows the surface size, the EDT's the box volume: with a
stray island in the far corner of a 256^3 volume the EDT takes 2.5 s, the k-d tree 0.08 s. MONAI's
values differ slightly (it erodes with the 6-neighbour cross, so its surfaces are thinner).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = [
    "hausdorff_95",
    "image_diagonal_mm",
    "normalized_surface_dice",
    "surface_distances",
    "surface_metrics",
]

#: Points per leaf of the k-d trees; 64 measured 25 % faster than scipy's default 16 on 45,000 points.
KDTREE_LEAFSIZE = 64


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The diagonal of the image extent in mm, the HD95 of a case where exactly one mask is empty.

    Example:
        >>> image_diagonal_mm((3, 4), (1.0, 1.0))
        5.0
    """
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing, strict=True))))


def _union_box(pred: np.ndarray, ref: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of ``pred | ref`` (at least one voxel set)."""
    union = pred | ref
    box = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=other))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from each surface voxel of one mask to the nearest surface voxel of the other.

    Args:
        pred: boolean mask (any number of dimensions), non-empty.
        ref: boolean mask of the same shape, non-empty.
        spacing: voxel size in mm per axis, in the arrays' axis order.

    Returns:
        ``(pred_to_ref, ref_to_pred)``, float64 arrays of shape (#pred surface voxels,) and
        (#ref surface voxels,).

    Raises:
        ValueError: the shapes differ, the spacing has the wrong length, or a mask is empty.

    Example:
        >>> a = np.zeros((1, 5), bool); a[0, 1] = True
        >>> b = np.zeros((1, 5), bool); b[0, 3] = True
        >>> surface_distances(a, b, (1.0, 0.5))
        (array([1.]), array([1.]))
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape or len(spacing) != pred.ndim:
        raise ValueError(f"masks {pred.shape} and {ref.shape} with spacing {tuple(spacing)} do not match")
    if not pred.any() or not ref.any():
        raise ValueError("surface distances need two non-empty masks")
    box = _union_box(pred, ref)
    scale = np.asarray(spacing, dtype=np.float64)
    pred_points = np.argwhere(_surface(pred[box])) * scale
    ref_points = np.argwhere(_surface(ref[box])) * scale
    pred_to_ref = cKDTree(ref_points, leafsize=KDTREE_LEAFSIZE).query(pred_points)[0]
    ref_to_pred = cKDTree(pred_points, leafsize=KDTREE_LEAFSIZE).query(ref_points)[0]
    return np.asarray(pred_to_ref, np.float64), np.asarray(ref_to_pred, np.float64)


def _empty_case(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> tuple[float, float] | None:
    """(HD95, NSD) by the empty-mask convention, or None when both masks have voxels."""
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if has_pred and has_ref:
        return None
    if not has_pred and not has_ref:
        return math.nan, math.nan
    return image_diagonal_mm(pred.shape, spacing), 0.0


def surface_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], tolerance_mm: float = 1.0
) -> tuple[float, float]:
    """HD95 (mm) and NSD at ``tolerance_mm`` of two boolean masks, sharing one distance computation.

    Args:
        pred: predicted boolean mask, e.g. (Z, Y, X).
        ref: reference boolean mask of the same shape.
        spacing: voxel size in mm per axis, in the arrays' axis order.
        tolerance_mm: NSD tolerance in mm.

    Returns:
        ``(hd95, nsd)``; NaN for both when both masks are empty, ``(image diagonal, 0.0)`` when
        exactly one is.

    Example:
        >>> ref = np.zeros((1, 8), bool); ref[0, 1:3] = True
        >>> pred = np.zeros((1, 8), bool); pred[0, 3:5] = True
        >>> surface_metrics(pred, ref, (1.0, 2.0), tolerance_mm=2.0)
        (3.9, 0.5)
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    empty = _empty_case(pred, ref, spacing)
    if empty is not None:
        return empty
    to_ref, to_pred = surface_distances(pred, ref, spacing)
    hd95 = max(float(np.percentile(to_ref, 95)), float(np.percentile(to_pred, 95)))
    matched = np.count_nonzero(to_ref <= tolerance_mm) + np.count_nonzero(to_pred <= tolerance_mm)
    return hd95, float(matched / (to_ref.size + to_pred.size))


def hausdorff_95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile Hausdorff distance in mm (see the module docstring for empty masks).

    Example:
        >>> m = np.zeros((4, 4), bool); m[1:3, 1:3] = True
        >>> hausdorff_95(m, m, (1.0, 1.0))
        0.0
    """
    return surface_metrics(pred, ref, spacing)[0]


def normalized_surface_dice(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], tolerance_mm: float = 1.0
) -> float:
    """Normalised surface Dice at ``tolerance_mm`` (see the module docstring for empty masks).

    Example:
        >>> m = np.zeros((4, 4), bool); m[1:3, 1:3] = True
        >>> normalized_surface_dice(m, m, (1.0, 1.0))
        1.0
    """
    return surface_metrics(pred, ref, spacing, tolerance_mm)[1]
