"""Resampling of images and label maps to a target spacing or shape.

The mapping is pixel-centre aligned (``skimage.transform.resize`` with ``mode="edge"``
and no anti-aliasing, i.e. ``scipy.ndimage.zoom(grid_mode=True, mode="nearest")``), with
B-spline order 3 for images and order 1 for label maps, as in nnU-Net.

The work is done axis by axis (:mod:`autoseg.preprocessing.separable`): the same output
as ``scipy.ndimage.zoom`` to float32 rounding, many times faster.

Anisotropic data (nnU-Net's "separate z"): when the current or the target spacing has
max/min > ``anisotropy_threshold`` and exactly one axis has the largest spacing, that axis
is resampled with ``order_z`` (0: nearest) and the others with ``order``.

Label maps are resampled label by label: each label's one-hot mask is interpolated
(within its bounding box) and every output voxel takes the label with the largest value,
so no new label values appear.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autoseg.preprocessing.separable import axis_matrices, resample_separable


def compute_new_shape(
    shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """``round(shape * spacing / new_spacing)`` per axis (at least 1).

    Example:
        >>> compute_new_shape((10, 20, 30), (2.0, 1.0, 1.0), (1.0, 1.0, 2.0))
        (20, 20, 15)
    """
    new = np.round(np.asarray(shape, float) * np.asarray(spacing, float) / np.asarray(new_spacing, float))
    return tuple(max(1, int(v)) for v in new)


def _lowres_axis(spacing: Sequence[float] | np.ndarray, threshold: float) -> int | None:
    """The single coarsest axis of an anisotropic 3D spacing, else None."""
    sp = np.asarray(spacing, dtype=np.float64)
    if sp.size != 3 or sp.max() / sp.min() <= threshold:
        return None
    coarsest = np.flatnonzero(np.isclose(sp, sp.max(), rtol=1e-6, atol=0))
    return int(coarsest[0]) if coarsest.size == 1 else None


def axis_orders(
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    order: int,
    order_z: int,
    anisotropy_threshold: float = 3.0,
) -> tuple[int, ...]:
    """Interpolation order per axis, with nnU-Net's separate-z rule.

    The current spacing decides first; only if it is not anisotropic does the target
    spacing. If the deciding spacing has two tied coarsest axes, there is no separate z.

    Example:
        >>> axis_orders((5.0, 0.7, 0.7), (1.0, 1.0, 1.0), 3, 0)
        (0, 3, 3)
    """
    ndim = len(current_spacing)
    sp, new = np.asarray(current_spacing, float), np.asarray(new_spacing, float)
    if ndim == 3 and sp.max() / sp.min() > anisotropy_threshold:
        axis = _lowres_axis(sp, anisotropy_threshold)
    elif ndim == 3 and new.max() / new.min() > anisotropy_threshold:
        axis = _lowres_axis(new, anisotropy_threshold)
    else:
        axis = None
    return tuple(order_z if a == axis else order for a in range(ndim))


def resample_data_to_shape(
    data: np.ndarray,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    order: int = 3,
    order_z: int = 0,
    anisotropy_threshold: float = 3.0,
) -> np.ndarray:
    """Resample image data (C, *spatial) to ``new_shape``.

    Args:
        data: (C, *spatial) array.
        new_shape: the output spatial shape.
        current_spacing, new_spacing: spacings, for the separate-z rule only.
        order: spline order (3 for images, 1 for probabilities).
        order_z: order along the coarse axis of anisotropic data.
        anisotropy_threshold: max/min spacing ratio above which z is separate.

    Returns:
        (C, *new_shape) float32, clipped per channel to the input's range (as skimage's
        ``resize`` does) when ``order > 1``; ``data`` itself when the shape already matches.
    """
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(data.shape[1:]) == new_shape:
        return data
    orders = axis_orders(current_spacing, new_spacing, order, order_z, anisotropy_threshold)
    out = resample_separable(data, axis_matrices(data.shape[1:], new_shape, orders), orders)
    if max(orders) > 1:
        for c in range(data.shape[0]):
            np.clip(out[c], data[c].min(), data[c].max(), out=out[c])
    return out


def resample_data(
    data: np.ndarray,
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    order: int = 3,
    order_z: int = 0,
    anisotropy_threshold: float = 3.0,
) -> np.ndarray:
    """Resample image data (C, *spatial) from ``current_spacing`` to ``new_spacing``.

    See :func:`resample_data_to_shape`; the new shape is :func:`compute_new_shape`.

    Example:
        >>> resample_data(np.ones((1, 4, 4, 4), np.float32), (1, 1, 1), (2, 2, 2)).shape
        (1, 2, 2, 2)
    """
    new_shape = compute_new_shape(data.shape[1:], current_spacing, new_spacing)
    return resample_data_to_shape(
        data, new_shape, current_spacing, new_spacing, order, order_z, anisotropy_threshold
    )


def _label_counts_per_slice(seg: np.ndarray) -> tuple[np.ndarray, int]:
    """Voxel counts of every label value per index of axis 0: ``(table (n0, L), low)``.

    Column ``k`` counts the value ``low + k``. One pass of bincount, no sorting.
    """
    low, high = int(seg.min()), int(seg.max())
    table = np.empty((seg.shape[0], high - low + 1), dtype=np.int64)
    for i in range(seg.shape[0]):
        codes = seg[i].ravel().astype(np.intp)
        table[i] = np.bincount(codes - low if low else codes, minlength=high - low + 1)
    return table, low


def _label_box(seg: np.ndarray, value: int, rows: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
    """Bounding box of ``value`` (whose axis-0 indices are ``rows``) and its mask there."""
    slab: tuple[slice, ...] = (slice(int(rows[0]), int(rows[-1]) + 1),)
    mask = seg[slab] == value
    for axis in range(1, seg.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(seg.ndim) if a != axis)))
        slab = (*slab, slice(int(hits[0]), int(hits[-1]) + 1))
    return slab, mask[(slice(None), *slab[1:])]


def resample_seg_to_shape(
    seg: np.ndarray,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    order: int = 1,
    order_z: int = 0,
    anisotropy_threshold: float = 3.0,
) -> np.ndarray:
    """Resample a label map (*spatial) to ``new_shape`` without inventing label values.

    Each present label (``-1`` included) is interpolated as a one-hot mask within its
    bounding box; every output voxel takes the label with the largest interpolated value.
    The most frequent label is not interpolated: its value is one minus the others' sum.

    Args:
        seg: (*spatial) integer label map.
        new_shape: the output spatial shape.
        current_spacing, new_spacing: spacings, for the separate-z rule only.
        order: interpolation order of the one-hot masks (1 as in nnU-Net; 0 is nearest).
        order_z: order along the coarse axis of anisotropic data.
        anisotropy_threshold: max/min spacing ratio above which z is separate.

    Returns:
        (*new_shape) of ``seg``'s dtype; ``seg`` itself when the shape already matches.
    """
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(seg.shape) == new_shape:
        return seg
    orders = axis_orders(current_spacing, new_spacing, order, order_z, anisotropy_threshold)
    if max(orders) > 1:
        raise ValueError(f"label maps are resampled with order 0 or 1, not {max(orders)}")
    matrices = axis_matrices(seg.shape, new_shape, orders)
    if max(orders) == 0:
        out = seg
        for axis, matrix in enumerate(matrices):
            out = out if matrix is None else np.take(out, matrix.argmax(axis=1), axis=axis)
        return out
    table, low = _label_counts_per_slice(seg)
    counts = table.sum(axis=0)
    dominant = low + int(np.argmax(counts))
    result = np.full(new_shape, dominant, dtype=seg.dtype)
    best = np.zeros(new_shape, dtype=np.float32)
    total = np.zeros(new_shape, dtype=np.float32)
    for k in np.flatnonzero(counts):
        value = low + int(k)
        if value == dominant:
            continue
        box_in, mask = _label_box(seg, value, np.flatnonzero(table[:, k]))
        sub_matrices: list[np.ndarray | None] = []
        box_out = []
        for axis, matrix in enumerate(matrices):
            if matrix is None:
                sub_matrices.append(None)
                box_out.append(box_in[axis])
                continue
            part = matrix[:, box_in[axis]]
            rows = np.flatnonzero(part.any(axis=1))
            box_out.append(slice(int(rows[0]), int(rows[-1]) + 1))
            sub_matrices.append(part[box_out[-1]])
        prob = resample_separable(mask, sub_matrices, orders)
        region = tuple(box_out)
        total[region] += prob
        better = prob > best[region]
        best[region][better] = prob[better]
        result[region][better] = value
    result[(1.0 - total) >= best] = dominant
    return result


def resample_seg(
    seg: np.ndarray,
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    order: int = 1,
    order_z: int = 0,
    anisotropy_threshold: float = 3.0,
) -> np.ndarray:
    """Resample a label map (*spatial) from ``current_spacing`` to ``new_spacing``.

    See :func:`resample_seg_to_shape`; the new shape is :func:`compute_new_shape`.
    """
    new_shape = compute_new_shape(seg.shape, current_spacing, new_spacing)
    return resample_seg_to_shape(
        seg, new_shape, current_spacing, new_spacing, order, order_z, anisotropy_threshold
    )
