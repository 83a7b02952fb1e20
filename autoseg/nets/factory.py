"""Network factory: a MONAI ``DynUNet`` configured from a plan's ``architecture`` entry.

The plans file decides the topology (reference/nnunet-v2-facts.md §3); this module only turns it into
a module. Networks are found through the :data:`NETWORKS` registry, so a new kind is one decorated
function (:func:`register_network`), and an unknown name is an error that suggests the nearest one.

Output contract (what the trainer and the loss rely on):

- ``net.train()`` with deep supervision: a **list** of logits ``[full-res, 1/2, 1/4, ...]``, each
  ``(B, K, *spatial)`` at its **native** decoder resolution, highest first, ``net.num_heads`` long
  (n_stages - 1 heads, as nnU-Net: every decoder resolution but the bottleneck). Targets are
  downsampled to each head instead (:class:`autoseg.training.loss.DeepSupervisionLoss` does it).
- ``net.eval()``, or no deep supervision: one tensor of logits ``(B, K, *patch)``.

MONAI's stock ``DynUNet.forward`` upsamples every head to full resolution (nearest) and stacks them
into ``(B, H, K, *patch)``: H times the memory of the logits and H full-resolution losses. Here a
five-line ``forward`` override returns the heads MONAI already computed, at their own size (for a
4-stage 3D net the heads cost 1 + 1/8 of the logits' memory instead of 3x).

Networks: ``plain`` matches nnU-Net's ``PlainConvUNet`` (two conv-norm-LeakyReLU per stage,
transposed-conv up, 1x1 heads, He init; DynUNet has exactly two, so a plan asking for another number
of plain blocks is an error); ``resenc`` is nnU-Net's ``ResidualEncoderUNet``
(:mod:`autoseg.nets.resenc`: a stem, the plan's ``blocks_per_stage_encoder`` residual blocks and
``blocks_per_stage_decoder`` convs per stage), the network the resenc-* planner presets size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.networks.nets import DynUNet
from torch import nn

from autoseg.contracts.plans import Architecture
from autoseg.nets.resenc import resenc_from_architecture
from autoseg.utils.lookup import look_up

__all__ = [
    "NETWORKS",
    "SegmentationUNet",
    "build_network",
    "count_parameters",
    "deep_supervision_weights",
    "encoder_parameters",
    "num_outputs",
    "register_network",
]


NORMS: dict[str, tuple[str, dict[str, Any]]] = {
    "instance": ("INSTANCE", {"affine": True, "eps": 1e-5}),
    "batch": ("BATCH", {"affine": True, "eps": 1e-5}),
}
NONLINEARITIES: dict[str, tuple[str, dict[str, Any]]] = {
    "leakyrelu": ("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
    "relu": ("relu", {"inplace": True}),
}

NetworkBuilder = Callable[[Architecture, int, int, bool], nn.Module]
NETWORKS: dict[str, NetworkBuilder] = {}


class SegmentationUNet(DynUNet):
    """``DynUNet`` whose deep-supervision output is a list of logits at native resolution.

    Only ``forward`` differs from MONAI's: in training mode with deep supervision it returns
    ``[output, head_1, ..., head_n]`` (highest resolution first) without upsampling the heads; in
    evaluation mode it returns the logits ``(B, K, *spatial)`` exactly as ``DynUNet`` does.
    """

    @property
    def num_heads(self) -> int:
        """Number of outputs in training mode (1 without deep supervision)."""
        return 1 + self.deep_supr_num if self.deep_supervision else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:  # type: ignore[override]
        out = self.output_block(self.skip_layers(x))
        if self.training and self.deep_supervision:
            return [out, *self.heads]  # filled by the skip layers during this pass
        return out


def register_network(name: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    """Register ``builder(architecture, in_channels, num_classes, deep_supervision)`` under ``name``.

    The builder receives a checked :class:`~autoseg.contracts.Architecture`; a network whose blocks
    follow other rules than ``plain``/``resenc`` checks them itself.
    """

    def decorate(builder: NetworkBuilder) -> NetworkBuilder:
        if name in NETWORKS:
            raise ValueError(f"network {name!r} is already registered")
        NETWORKS[name] = builder
        return builder

    return decorate


def _dynunet(arch: Architecture, in_channels: int, num_classes: int, ds: bool, res: bool) -> nn.Module:
    kernels = [list(k) for k in arch.kernel_sizes]
    strides = [list(s) for s in arch.strides]
    return SegmentationUNet(
        spatial_dims=arch.spatial_dims,
        in_channels=in_channels,
        out_channels=num_classes,
        kernel_size=kernels,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=list(arch.features_per_stage),
        norm_name=look_up(NORMS, arch.norm, "norm"),
        act_name=look_up(NONLINEARITIES, arch.nonlinearity, "nonlinearity"),
        deep_supervision=ds,
        deep_supr_num=arch.n_stages - 2 if ds else 1,  # n_stages - 1 outputs in all, like nnU-Net
        res_block=res,
        trans_bias=True,  # nnU-Net's transposed convs carry a bias
    )


@register_network("plain")
def _plain(arch: Architecture, in_channels: int, num_classes: int, ds: bool) -> nn.Module:
    return _dynunet(
        arch, in_channels, num_classes, ds, res=False
    )  # two convs per stage: checked by the contract


@register_network("resenc")
def _resenc(arch: Architecture, in_channels: int, num_classes: int, ds: bool) -> nn.Module:
    norm = look_up(NORMS, arch.norm, "norm")
    act = look_up(NONLINEARITIES, arch.nonlinearity, "nonlinearity")
    return resenc_from_architecture(arch, in_channels, num_classes, ds, norm, act)


def build_network(
    architecture: Architecture | Mapping[str, Any],
    in_channels: int,
    num_classes: int,
    deep_supervision: bool = True,
) -> nn.Module:
    """Build the segmentation network a plan describes.

    Args:
        architecture: a configuration's :class:`~autoseg.contracts.Architecture` (checked when it
            was made), or its dict form, read through the same contract: ``network`` (a key of
            :data:`NETWORKS`), ``n_stages``, ``features_per_stage``, ``kernel_sizes``, ``strides``,
            optional ``norm`` (instance | batch), ``nonlinearity`` (leakyrelu | relu) and
            ``deep_supervision``.
        in_channels: input channels (image modalities, plus previous-stage classes in a cascade).
        num_classes: output channels K, background included.
        deep_supervision: add deep-supervision heads; off when either this or the plan's
            ``deep_supervision`` is false. Build the predictor's network with the same value as the
            trainer's so that checkpoints load strictly; in ``eval()`` the output is the same.

    Returns:
        A module that maps ``(B, C, *patch)`` to logits ``(B, K, *patch)`` in eval mode, and to a
        list of ``num_heads`` logits at native resolutions in train mode (see the module docstring).

    Raises:
        ValueError: an unknown network (with the nearest registered name);
            :class:`~autoseg.contracts.PlansError` for an inconsistent dict (every problem listed).

    Example:
        >>> arch = {"network": "plain", "n_stages": 3, "features_per_stage": [4, 8, 16],
        ...         "kernel_sizes": [[3, 3]] * 3, "strides": [[1, 1], [2, 2], [2, 2]]}
        >>> net = build_network(arch, in_channels=1, num_classes=2).eval()
        >>> net(torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 2, 16, 16])
    """
    arch = architecture if isinstance(architecture, Architecture) else Architecture.from_dict(architecture)
    if arch.n_stages < 3:  # a valid plan for images too small to pool twice, but no U-Net can be built
        raise ValueError(
            f"n_stages={arch.n_stages}: the U-Net needs at least 3 stages (input, one down, bottleneck); "
            "the plan's patch is too small to pool twice: plan with larger images or another configuration"
        )
    builder = look_up(NETWORKS, arch.network, "network")
    return builder(arch, int(in_channels), int(num_classes), bool(deep_supervision and arch.deep_supervision))


def deep_supervision_weights(num_heads: int) -> list[float]:
    """nnU-Net's deep-supervision loss weights: ``1/2**i``, the lowest resolution 0, summing to 1.

    Args:
        num_heads: number of network outputs (:func:`num_outputs`), highest resolution first.

    Example:
        >>> [round(w, 3) for w in deep_supervision_weights(5)]
        [0.533, 0.267, 0.133, 0.067, 0.0]
    """
    if num_heads < 1:
        raise ValueError(f"num_heads must be >= 1, got {num_heads}")
    if num_heads == 1:
        return [1.0]
    weights = [1 / 2**i for i in range(num_heads)]
    weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def num_outputs(net: nn.Module) -> int:
    """Outputs of ``net`` in training mode: its deep-supervision heads, or 1 without them."""
    return int(getattr(net, "num_heads", 1))


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``net`` (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


#: The modules that make up the encoder, per network class (the input path down to the bottleneck).
ENCODER_MODULES = ("input_block", "downsamples", "bottleneck", "stem", "encoder")


def encoder_parameters(net: nn.Module) -> tuple[nn.Parameter, ...]:
    """The parameters of ``net``'s encoder (``trainer.freeze_encoder_epochs`` keeps them fixed).

    Raises:
        ValueError: ``net`` has none of the encoder modules of :data:`ENCODER_MODULES`.
    """
    params = [p for name in ENCODER_MODULES if hasattr(net, name) for p in getattr(net, name).parameters()]
    if not params:
        raise ValueError(
            f"{type(net).__name__} has no encoder module ({', '.join(ENCODER_MODULES)}) to freeze; "
            "set trainer.freeze_encoder_epochs=0"
        )
    return tuple(params)
