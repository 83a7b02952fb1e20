"""U-Net topology from spacing and patch size: pooling per axis, kernel sizes, stages.

The rule follows nnU-Net v2 (``get_pool_and_conv_props``; reference/nnunet-v2-facts.md §3):
pool an axis while its feature map stays at least twice the minimum edge and its spacing
is within 2x of the finest poolable spacing; a lone poolable axis needs 3x the minimum
edge. A kernel is 1 along an axis until that axis's spacing comes within 2x of the finest,
then 3 for good, so thick-slice data gets (1, 3, 3) kernels and (1, 2, 2) strides first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

#: A per-axis vector: a list, a tuple or a 1-D numpy array.
Vector: TypeAlias = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Topology:
    """The shape of a U-Net encoder.

    Attributes:
        patch_size: the patch, padded to be divisible by ``divisible_by``.
        strides: one per stage; stage 0 has stride 1 on every axis.
        kernel_sizes: one per stage; the bottleneck is always 3 on every axis.
        pools_per_axis: how often each axis is halved.
        divisible_by: ``2 ** pools_per_axis`` per axis.
    """

    patch_size: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    pools_per_axis: tuple[int, ...]
    divisible_by: tuple[int, ...]

    @property
    def num_stages(self) -> int:
        return len(self.strides)


def pad_to_multiple(shape: Vector, divisor: Sequence[int]) -> tuple[int, ...]:
    """Round each axis up to a multiple of its divisor: ``(40, 50), (8, 16) -> (40, 64)``."""
    return tuple(int(math.ceil(s / d) * d) for s, d in zip(shape, divisor, strict=True))


def derive_topology(
    spacing: Vector, patch_size: Vector, min_edge: int = 4, max_pools: int = 999999
) -> Topology:
    """Derive pooling and kernel sizes for ``patch_size`` at ``spacing``.

    Args:
        spacing: voxel spacing per axis (mm), in the network's axis order.
        patch_size: the wanted patch; the result is padded to be divisible by the pooling.
        min_edge: the smallest feature-map edge allowed at the bottleneck.
        max_pools: the most poolings per axis.

    Returns:
        The topology; ``patch_size`` is padded to a multiple of ``2 ** pools`` per axis.

    Example:
        >>> t = derive_topology((1.0, 1.0, 1.0), (40, 56, 40))
        >>> t.num_stages, t.patch_size
        (4, (40, 56, 40))
    """
    dim = len(spacing)
    cur_spacing = [float(s) for s in spacing]
    cur_size = [float(s) for s in patch_size]
    kernel = [1] * dim
    pools = [0] * dim
    strides: list[tuple[int, ...]] = [(1,) * dim]
    kernels: list[tuple[int, ...]] = []
    while True:
        candidates = [a for a in range(dim) if cur_size[a] >= 2 * min_edge]
        if not candidates:
            break
        finest = min(cur_spacing[a] for a in candidates)
        candidates = [a for a in candidates if cur_spacing[a] / finest < 2 and pools[a] < max_pools]
        if not candidates or (len(candidates) == 1 and cur_size[candidates[0]] < 3 * min_edge):
            break
        finest_all = min(cur_spacing)
        kernel = [3 if k == 3 or cur_spacing[a] / finest_all < 2 else 1 for a, k in enumerate(kernel)]
        stride = [1] * dim
        for a in candidates:
            stride[a] = 2
            pools[a] += 1
            cur_spacing[a] *= 2
            cur_size[a] = math.ceil(cur_size[a] / 2)
        strides.append(tuple(stride))
        kernels.append(tuple(kernel))
    kernels.append((3,) * dim)
    divisible = tuple(2**p for p in pools)
    return Topology(
        patch_size=pad_to_multiple(patch_size, divisible),
        strides=tuple(strides),
        kernel_sizes=tuple(kernels),
        pools_per_axis=tuple(pools),
        divisible_by=divisible,
    )


def features_per_stage(num_stages: int, base: int, maximum: int) -> tuple[int, ...]:
    """Feature maps per stage: ``min(base * 2**i, maximum)``."""
    return tuple(min(base * 2**i, maximum) for i in range(num_stages))
