"""Separable resampling on a grid: one small linear map per axis, applied with BLAS.

Spline resampling on a regular grid is separable, so it is one linear map per axis. Each
axis's map is a matrix (n_out, n_in), built once by resampling the unit vectors with
``scipy.ndimage.zoom(grid_mode=True, mode="nearest")`` (so it is scipy's own pixel-centre
interpolation, B-spline prefilter and edge handling included), and applied in row blocks
that skip the matrix's numerically-zero parts. The result equals ``ndimage.zoom`` on the
whole array to float32 rounding (~1e-6), many times faster: an order-3 spline costs
``ndimage.zoom`` 64 taps per voxel in 3D, here ~30 multiply-adds per axis, in BLAS.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import cache, lru_cache
from typing import Any

import numpy as np
from scipy import ndimage

_BLOCK_ROWS = 32  # output samples per matrix block
_CHUNK_ROWS = 256  # lines per chunk along the last axis
_NEGLIGIBLE = 1e-7  # matrix entries below this (relative) do not change a float32 result


@cache
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - optional
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run BLAS on one thread (no-op without threadpoolctl).

    The products here are small (32 rows); multi-threaded OpenBLAS spends more time
    waking threads than computing, up to 10x slower when the cores are busy (as with one
    worker process per core), and one thread also makes the result deterministic.
    """
    controller = _blas_controller()
    if controller is None:  # pragma: no cover
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


@lru_cache(maxsize=64)
def axis_matrix(n_in: int, n_out: int, order: int) -> np.ndarray:
    """The (n_out, n_in) float32 matrix of 1D resampling with ``order`` (read-only)."""
    matrix = np.empty((n_out, n_in), dtype=np.float64)
    unit = np.zeros(n_in, dtype=np.float64)
    for i in range(n_in):
        unit[:] = 0.0
        unit[i] = 1.0
        zoomed = ndimage.zoom(unit, n_out / n_in, order=order, mode="nearest", grid_mode=True)
        if zoomed.shape != (n_out,):
            raise AssertionError(f"zoom gave {zoomed.shape[0]} samples for {n_in} -> {n_out}")
        matrix[:, i] = zoomed
    matrix = matrix.astype(np.float32)
    matrix.setflags(write=False)
    return matrix


def apply_axis(x: np.ndarray, axis: int, matrix: np.ndarray, order: int) -> np.ndarray:
    """Apply a resampling matrix along one axis.

    Args:
        x: float32 array, C-contiguous.
        axis: the axis to resample.
        matrix: (n_out, n_in) from :func:`axis_matrix`, n_in = ``x.shape[axis]``.
        order: the matrix's order; 0 is done by indexing (nearest neighbour).

    Returns:
        float32 array with ``n_out`` along ``axis``.
    """
    n_out = matrix.shape[0]
    if order == 0:
        return np.take(x, matrix.argmax(axis=1), axis=axis)
    size = np.abs(matrix)
    keep = size > _NEGLIGIBLE * size.max()
    blocks = []
    for r0 in range(0, n_out, _BLOCK_ROWS):
        r1 = min(r0 + _BLOCK_ROWS, n_out)
        cols = np.flatnonzero(keep[r0:r1].any(axis=0))
        if cols.size:
            c0, c1 = int(cols[0]), int(cols[-1]) + 1
            blocks.append((r0, r1, c0, c1, np.ascontiguousarray(matrix[r0:r1, c0:c1])))
    shape = x.shape
    out = np.zeros((*shape[:axis], n_out, *shape[axis + 1 :]), dtype=np.float32)  # rows of no block: 0
    if axis == x.ndim - 1:
        # rows in chunks that stay in cache while every block of columns is computed
        flat_in, flat_out = x.reshape(-1, shape[-1]), out.reshape(-1, n_out)
        transposed = [(r0, r1, c0, c1, np.ascontiguousarray(block.T)) for r0, r1, c0, c1, block in blocks]
        for start in range(0, flat_in.shape[0], _CHUNK_ROWS):
            chunk_in, chunk_out = flat_in[start : start + _CHUNK_ROWS], flat_out[start : start + _CHUNK_ROWS]
            for r0, r1, c0, c1, block_t in transposed:
                np.matmul(chunk_in[:, c0:c1], block_t, out=chunk_out[:, r0:r1])
        return out
    lead = int(np.prod(shape[:axis], dtype=np.int64))
    cube_in = x.reshape(lead, shape[axis], -1)
    cube_out = out.reshape(lead, n_out, -1)
    for i in range(lead):
        for r0, r1, c0, c1, block in blocks:
            np.matmul(block, cube_in[i, c0:c1], out=cube_out[i, r0:r1])
    return out


def resample_separable(
    x: np.ndarray, matrices: Sequence[np.ndarray | None], orders: Sequence[int]
) -> np.ndarray:
    """Resample the trailing axes of ``x``, one axis at a time, shrinking axes first.

    Args:
        x: (..., *spatial) array, converted to float32.
        matrices: per spatial axis, its (n_out, n_in) matrix, or None to keep the axis.
        orders: per spatial axis, the interpolation order of its matrix.

    Returns:
        (..., *new_spatial) float32.
    """
    lead = x.ndim - len(matrices)
    todo = [a for a, m in enumerate(matrices) if m is not None]
    todo.sort(key=lambda a: matrices[a].shape[0] / matrices[a].shape[1])  # type: ignore[union-attr]
    out = np.ascontiguousarray(x, dtype=np.float32)
    with single_threaded_blas():
        for a in todo:
            out = apply_axis(out, lead + a, matrices[a], orders[a])  # type: ignore[arg-type]
    return out


def axis_matrices(
    shape: Sequence[int], new_shape: Sequence[int], orders: Sequence[int]
) -> list[np.ndarray | None]:
    """Per axis, its resampling matrix, or None where the size does not change (identity)."""
    return [
        None if n == m else axis_matrix(int(n), int(m), o)
        for n, m, o in zip(shape, new_shape, orders, strict=True)
    ]
