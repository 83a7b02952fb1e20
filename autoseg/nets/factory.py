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

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.networks.nets import DynUNet
from torch import nn

from autoseg.contracts.plans import Architecture
from autoseg.nets.resenc import resenc_from_architecture

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
REQUIRED_KEYS = ("n_stages", "features_per_stage", "kernel_sizes", "strides")

NetworkBuilder = Callable[[Mapping[str, Any], int, int, bool], nn.Module]
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
    """Register ``builder(architecture, in_channels, num_classes, deep_supervision)`` under ``name``."""

    def decorate(builder: NetworkBuilder) -> NetworkBuilder:
        if name in NETWORKS:
            raise ValueError(f"network {name!r} is already registered")
        NETWORKS[name] = builder
        return builder

    return decorate


def _lookup(table: Mapping[str, Any], name: str, what: str) -> Any:
    if name in table:
        return table[name]
    near = difflib.get_close_matches(name, list(table), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise ValueError(f"unknown {what} {name!r}{hint} (valid: {', '.join(sorted(table))})")


def _check_architecture(arch: Mapping[str, Any]) -> None:
    """Raise one ValueError listing every problem of a plan's ``architecture`` entry."""
    missing = [k for k in REQUIRED_KEYS if k not in arch]
    if missing:
        raise ValueError(f"architecture: missing keys {missing} (has {sorted(arch)})")
    n = int(arch["n_stages"])
    problems = []
    for key in ("features_per_stage", "kernel_sizes", "strides"):
        if len(arch[key]) != n:
            problems.append(f"{key} has {len(arch[key])} entries, n_stages is {n}")
    if n < 3:
        problems.append(f"n_stages={n}: the U-Net needs at least 3 stages (input, one down, bottleneck)")
    dims = {len(k) for k in arch["kernel_sizes"]} | {len(s) for s in arch["strides"]}
    if len(dims) != 1 or not dims <= {2, 3}:
        problems.append(f"kernel_sizes/strides mix or use unsupported dimensionalities {sorted(dims)}")
    if problems:
        raise ValueError("architecture: " + "; ".join(problems))


def _dynunet(arch: Mapping[str, Any], in_channels: int, num_classes: int, ds: bool, res: bool) -> nn.Module:
    _check_architecture(arch)
    kernels = [list(map(int, k)) for k in arch["kernel_sizes"]]
    strides = [list(map(int, s)) for s in arch["strides"]]
    n_stages = int(arch["n_stages"])
    return SegmentationUNet(
        spatial_dims=len(kernels[0]),
        in_channels=in_channels,
        out_channels=num_classes,
        kernel_size=kernels,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=[int(f) for f in arch["features_per_stage"]],
        norm_name=_lookup(NORMS, str(arch.get("norm", "instance")), "norm"),
        act_name=_lookup(NONLINEARITIES, str(arch.get("nonlinearity", "leakyrelu")), "nonlinearity"),
        deep_supervision=ds,
        deep_supr_num=n_stages - 2 if ds else 1,  # n_stages - 1 outputs in all, like nnU-Net
        res_block=res,
        trans_bias=True,  # nnU-Net's transposed convs carry a bias
    )


@register_network("plain")
def _plain(arch: Mapping[str, Any], in_channels: int, num_classes: int, ds: bool) -> nn.Module:
    for key, expected in (("blocks_per_stage_encoder", 2), ("blocks_per_stage_decoder", 2)):
        blocks = arch.get(key)
        if blocks is not None and any(int(b) != expected for b in blocks):
            raise ValueError(
                f"architecture (plain): {key}={list(blocks)}, but the plain U-Net (MONAI DynUNet) has "
                f"{expected} convs per stage; plan with blocks {expected} or use network 'resenc'"
            )
    return _dynunet(arch, in_channels, num_classes, ds, res=False)


@register_network("resenc")
def _resenc(arch: Mapping[str, Any], in_channels: int, num_classes: int, ds: bool) -> nn.Module:
    _check_architecture(arch)
    norm = _lookup(NORMS, str(arch.get("norm", "instance")), "norm")
    act = _lookup(NONLINEARITIES, str(arch.get("nonlinearity", "leakyrelu")), "nonlinearity")
    return resenc_from_architecture(arch, in_channels, num_classes, ds, norm, act)


def build_network(
    architecture: Architecture | Mapping[str, Any],
    in_channels: int,
    num_classes: int,
    deep_supervision: bool = True,
) -> nn.Module:
    """Build the segmentation network a plan describes.

    Args:
        architecture: a configuration's :class:`~autoseg.contracts.Architecture` (or its dict form,
            as in a checkpoint): ``network`` (a key of
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
        ValueError: unknown network/norm/nonlinearity (with the nearest valid name), or an
            inconsistent architecture (every problem listed).

    Example:
        >>> arch = {"network": "plain", "n_stages": 3, "features_per_stage": [4, 8, 16],
        ...         "kernel_sizes": [[3, 3]] * 3, "strides": [[1, 1], [2, 2], [2, 2]]}
        >>> net = build_network(arch, in_channels=1, num_classes=2).eval()
        >>> net(torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 2, 16, 16])
    """
    if isinstance(architecture, Architecture):
        architecture = architecture.to_dict()
    builder = _lookup(NETWORKS, str(architecture.get("network", "plain")), "network")
    ds = bool(deep_supervision and architecture.get("deep_supervision", True))
    return builder(architecture, int(in_channels), int(num_classes), ds)


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
