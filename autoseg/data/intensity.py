"""Intensity augmentations in plain torch, deterministic given their parameters.

Each function works on one channel (or one sample) of any dimension, on any device, and
follows nnU-Net's batchgeneratorsv2 transform of the same name (facts §5, 2-8).

Why not TorchIO (measured, ``benchmarks/bench_augment.py --torchio``): TorchIO's
``Noise``/``Blur``/``Gamma`` wrap every call in a ``Subject`` and deep-copy it, ``Blur``
runs scipy on the CPU (so it cannot augment a GPU batch), ``Gamma`` is a plain power
(nnU-Net rescales to [0, 1] and restores mean and std), and brightness, contrast and
nearest-down/linear-up low-resolution simulation do not exist there. These are a few lines
of torch each and are as fast or faster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "add_noise_",
    "contrast_",
    "gamma_",
    "gaussian_blur",
    "gaussian_kernel",
    "simulate_low_resolution",
]

EPS = 1e-7


def add_noise_(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """Add zero-mean Gaussian noise in place (GaussianNoiseTransform).

    Args:
        x: (C, *S) float tensor, modified in place.
        std: standard deviation (nnU-Net draws it from ``noise_variance``, used as a std).
        seed: seeds a generator on ``x.device``: the same noise for the same seed and device.

    Returns:
        ``x``.
    """
    gen = torch.Generator(device=x.device)
    gen.manual_seed(int(seed))
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return x.add_(noise, alpha=float(std))


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalized 1D Gaussian of radius ``max(1, ceil(3 sigma - 0.5))`` (nnU-Net's size)."""
    radius = max(1, math.ceil(3 * sigma - 0.5))
    ramp = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (ramp / sigma) ** 2)
    return (kernel / kernel.sum()).to(torch.float32)


def _reflect_pad(x: torch.Tensor, axis: int, radius: int) -> torch.Tensor:
    """Pad ``radius`` voxels on both sides of ``axis`` by reflection (edge replication when
    the axis is too short). Built from views: torch's reflect ``F.pad`` can take milliseconds
    on tiny tensors when torch uses several threads."""
    length = x.shape[axis]
    if radius < length:
        left = x.narrow(axis, 1, radius).flip(axis)
        right = x.narrow(axis, length - 1 - radius, radius).flip(axis)
    else:
        shape = list(x.shape)
        shape[axis] = radius
        left, right = x.narrow(axis, 0, 1).expand(shape), x.narrow(axis, length - 1, 1).expand(shape)
    return torch.cat([left, x, right], axis)


def gaussian_blur(x: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian smoothing with reflect padding (GaussianBlurTransform).

    A weighted sum of shifted views per axis: on one CPU thread this is 2-8x faster than
    ``conv3d`` with 1D kernels, and it runs unchanged on a GPU.

    Args:
        x: (*S) float tensor (one channel).
        sigmas: one sigma per axis, in voxels.

    Returns:
        A new (*S) tensor.
    """
    out = x
    for axis, sigma in enumerate(sigmas):
        weights = gaussian_kernel(float(sigma)).tolist()
        radius = len(weights) // 2
        length = out.shape[axis]
        padded = _reflect_pad(out, axis, radius)
        acc = padded.narrow(axis, 0, length) * weights[0]
        for j in range(1, len(weights)):
            acc.add_(padded.narrow(axis, j, length), alpha=weights[j])
        out = acc
    return out


def contrast_(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale deviations from the mean by ``factor``, clipped to the old range (ContrastTransform,
    preserve_range=True), in place.

    Args:
        x: (*S) float tensor (one channel).
        factor: contrast factor.

    Returns:
        ``x``.
    """
    mean = float(x.mean())
    lo, hi = torch.aminmax(x)
    return x.mul_(factor).add_(mean * (1.0 - factor)).clamp_(float(lo), float(hi))


def simulate_low_resolution(x: torch.Tensor, scale: float, keep_axes: Sequence[int] = ()) -> torch.Tensor:
    """Downsample with nearest neighbour, upsample back linearly (SimulateLowResolutionTransform).

    Args:
        x: (*S) float tensor (one channel), 2D or 3D.
        scale: the low-resolution size is ``round(S * scale)`` per axis.
        keep_axes: axes left at full resolution (the slice axis for "dummy 2D").

    Returns:
        A new (*S) tensor.
    """
    shape = tuple(x.shape)
    small = [s if a in keep_axes else max(1, round(s * scale)) for a, s in enumerate(shape)]
    down = F.interpolate(x[None, None], size=small, mode="nearest-exact")
    mode = "trilinear" if x.ndim == 3 else "bilinear"
    return F.interpolate(down, size=shape, mode=mode, align_corners=False)[0, 0]


def gamma_(x: torch.Tensor, gamma: float, invert: bool) -> torch.Tensor:
    """Gamma on the [0, 1]-rescaled (optionally inverted) image, keeping mean and std
    (GammaTransform with p_retain_stats=1), in place.

    nnU-Net's steps (invert, rescale, power, rescale back, restore mean/std, invert back)
    collapse to: ``z = (x - min) / range`` (or ``(max - x) / range``), ``y = z ** gamma``,
    ``x = +-k (y - mean(y)) + mean(x)`` with ``k = std(x) * range / max(std(y) * range, eps)``.

    Args:
        x: (*S) float tensor (one channel).
        gamma: the exponent.
        invert: apply the gamma to the inverted image (nnU-Net's "inverted gamma").

    Returns:
        ``x``.
    """
    mean, std = float(x.mean()), float(x.std())
    lo_t, hi_t = torch.aminmax(x)
    lo, hi = float(lo_t), float(hi_t)
    span = hi - lo
    denom = max(span, EPS)
    if invert:
        x.sub_(hi).div_(-denom)
    else:
        x.sub_(lo).div_(denom)
    x.pow_(gamma)
    mean_y, std_y = float(x.mean()), float(x.std())
    k = std * span / max(std_y * span, EPS)
    sign = -1.0 if invert else 1.0
    return x.mul_(sign * k).add_(mean - sign * k * mean_y)
