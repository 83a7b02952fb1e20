"""A GPU-memory model: how many feature-map elements one training sample produces.

Training memory is dominated by the activations stored for the backward pass, which grow
with the number of elements in all convolution outputs. The estimate counts, for one
sample, every conv output in encoder and decoder, every transposed-conv output and every
segmentation head (deep supervision included), as nnU-Net's planner does; the planner then
compares it with a reference value measured for a known GPU size (reference/nnunet-v2-facts.md §3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autoseg.planning.topology import Topology


@dataclass(frozen=True)
class NetworkShape:
    """What the memory model needs to know about the network.

    Attributes:
        kind: ``"plain"`` (conv blocks) or ``"resenc"`` (residual encoder with a stem).
        features: feature maps per stage.
        blocks_encoder: conv blocks (plain) or residual blocks (resenc) per encoder stage.
        blocks_decoder: conv blocks per decoder stage (from the deepest decoder stage up).
        num_classes: output channels of the segmentation heads (background included).
    """

    kind: str
    features: tuple[int, ...]
    blocks_encoder: tuple[int, ...]
    blocks_decoder: tuple[int, ...]
    num_classes: int


def _numel(channels: int, size: Sequence[int]) -> int:
    return channels * math.prod(size)


def _downsample(size: Sequence[int], stride: Sequence[int]) -> list[int]:
    return [s // st for s, st in zip(size, stride, strict=True)]


def _plain_encoder(topology: Topology, net: NetworkShape, patch: Sequence[int]) -> int:
    total, size = 0, list(patch)
    for stage, stride in enumerate(topology.strides):
        size = _downsample(size, stride)
        total += net.blocks_encoder[stage] * _numel(net.features[stage], size)
    return total


def _resenc_encoder(topology: Topology, net: NetworkShape, patch: Sequence[int]) -> int:
    total = _numel(net.features[0], patch)  # the stem conv
    size, in_channels = list(patch), net.features[0]
    for stage, stride in enumerate(topology.strides):
        out = _downsample(size, stride)
        for block in range(net.blocks_encoder[stage]):
            projected = block == 0 and (in_channels != net.features[stage] or out != size)
            total += (3 if projected else 2) * _numel(net.features[stage], out)
        size, in_channels = out, net.features[stage]
    return total


def _decoder(topology: Topology, net: NetworkShape, patch: Sequence[int]) -> int:
    sizes, size = [], list(patch)
    for stride in topology.strides[:-1]:
        size = _downsample(size, stride)
        sizes.append(size)
    total = 0
    for level, size in enumerate(reversed(sizes)):  # from the deepest decoder stage up
        channels = net.features[-(level + 2)]
        total += net.blocks_decoder[level] * _numel(channels, size)  # convs after concatenation
        total += _numel(channels, size)  # transposed conv output
        total += _numel(net.num_classes, size)  # deep-supervision / final head
    return total


def estimate_feature_map_elements(topology: Topology, net: NetworkShape) -> int:
    """Feature-map elements one sample produces in a forward pass (the memory estimate).

    Example:
        >>> from autoseg.planning.topology import derive_topology
        >>> t = derive_topology((1.0, 1.0, 1.0), (40, 56, 40))
        >>> net = NetworkShape("plain", (32, 64, 128, 256), (2,) * 4, (2,) * 3, 3)
        >>> estimate_feature_map_elements(t, net) > 0
        True
    """
    patch = topology.patch_size
    encoder = _resenc_encoder if net.kind == "resenc" else _plain_encoder
    return encoder(topology, net, patch) + _decoder(topology, net, patch)


def expand_per_stage(pattern: Sequence[int], num_stages: int) -> tuple[int, ...]:
    """Repeat the last entry of ``pattern`` up to ``num_stages`` entries.

    Example:
        >>> expand_per_stage((1, 3, 4, 6), 6)
        (1, 3, 4, 6, 6, 6)
    """
    values = list(pattern) or [2]
    values += [values[-1]] * max(0, num_stages - len(values))
    return tuple(values[:num_stages])
