"""Probabilities back to the native grid in torch, on the device they were computed on.

The same pixel-centre aligned, axis-by-axis mapping as :mod:`autoseg.preprocessing.resample` (order 1:
linear, order 0: nearest; edges clamped), with ``torch.nn.functional.interpolate`` along one axis at a
time, so that a GPU resamples what it predicted without a round trip through host memory (nnU-Net's
own challenge entries did this to stay under time limits). On the CPU it is exercised in the tests
against the scipy path (Dice of the argmax close to 1); spline orders above 1 are not offered here.

Example:
    >>> probs = torch.rand(2, 10, 20, 20)
    >>> resample_to_shape_torch(probs, (30, 20, 20), (0, 1, 1)).shape
    torch.Size([2, 30, 20, 20])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

__all__ = ["resample_to_shape_torch"]


def _along(data: Tensor, axis: int, size: int, order: int) -> Tensor:
    """``data`` resampled along ``axis`` to ``size`` (order 0 nearest, 1 linear, pixel centres aligned)."""
    moved = data.movedim(axis, -1)
    lead = moved.shape[:-1]
    flat = moved.reshape(-1, 1, moved.shape[-1])
    if order == 0:
        out = F.interpolate(flat, size=size, mode="nearest-exact")
    else:
        out = F.interpolate(flat, size=size, mode="linear", align_corners=False)
    return out.reshape(*lead, size).movedim(-1, axis)


def resample_to_shape_torch(data: Tensor, new_shape: Sequence[int], orders: Sequence[int]) -> Tensor:
    """(C, *spatial) float tensor resampled to (C, *new_shape), axis by axis with ``orders`` (0 or 1).

    Raises:
        ValueError: an order other than 0 or 1, or a shape of the wrong length.
    """
    new_shape = [int(s) for s in new_shape]
    if len(new_shape) != data.ndim - 1 or len(orders) != len(new_shape):
        raise ValueError(f"new_shape {new_shape} / orders {list(orders)} do not fit data {tuple(data.shape)}")
    if any(o not in (0, 1) for o in orders):
        raise ValueError(f"the torch resampler does orders 0 and 1, not {list(orders)}; use the scipy one")
    out = data
    for axis, (size, order) in enumerate(zip(new_shape, orders, strict=True)):
        if out.shape[axis + 1] != size:
            out = _along(out, axis + 1, size, order)
    return out
