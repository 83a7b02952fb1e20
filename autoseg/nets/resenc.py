"""nnU-Net's residual-encoder U-Net (ResEnc M/L/XL), built from a plan's ``architecture`` entry.

Layout (reference/nnunet-v2-facts.md §3, "The ResEnc network"):

- **stem**: one conv (stage-0 kernel, stride 1, bias) + InstanceNorm + LeakyReLU, in -> features[0];
- **encoder stage s**: ``blocks_per_stage_encoder[s]`` residual blocks (:class:`ResidualBlock`); the
  first carries the stage's stride;
- **decoder stage** (deepest first): transposed conv (kernel = stride, bias) features[s+1] ->
  features[s], concatenation with the encoder output of stage s, ``blocks_per_stage_decoder``
  conv-norm-LeakyReLU (the first maps 2 x features[s] -> features[s]), and a 1x1 segmentation head;
- deep supervision: every decoder stage has a head; in ``train()`` the network returns their logits
  at native resolution, highest first (the contract of :mod:`autoseg.nets.factory`).

The convolutions are MONAI ``Convolution`` layers (conv + norm + activation); the residual block and
the encoder-decoder wiring are small torch modules because no MONAI module fits: MONAI's
``UnetResBlock`` has bias-free convs and a strided 1x1 conv on its shortcut (it samples one voxel in
2^d), where nnU-Net's block keeps the conv biases and average-pools before its 1x1 projection; and
``DynUNet`` has one residual block per stage, no stem and two decoder convs. With these modules the
parameter count equals nnU-Net's (25,895,593 for ResEnc M on hippocampus, see benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Act, Pool
from torch import nn

from autoseg.contracts.architecture import Architecture

__all__ = ["ResidualBlock", "ResidualEncoderUNet"]

NormSpec = tuple[str, dict[str, Any]]


def _conv(
    dims: int,
    in_channels: int,
    out_channels: int,
    kernel: Sequence[int],
    stride: Sequence[int] | int = 1,
    norm: NormSpec | None = None,
    act: NormSpec | None = None,
    bias: bool = True,
) -> Convolution:
    """conv(kernel, stride, same padding) [-> norm] [-> act] as one MONAI ``Convolution``."""
    return Convolution(
        dims,
        in_channels,
        out_channels,
        strides=stride,
        kernel_size=tuple(kernel),
        adn_ordering="NA",
        norm=norm,
        act=act,
        bias=bias,
        conv_only=norm is None and act is None,
    )


class ResidualBlock(nn.Module):
    """A residual block: ``act(norm(conv2(act(norm(conv1(x))))) + skip(x))``.

    ``conv1`` carries the stride; the skip is the identity unless the stride or the width changes,
    then average pooling (kernel = stride) and/or a 1x1 conv without bias + norm (nnU-Net's
    "BasicBlockD"). Shapes: ``(B, in, *S) -> (B, out, *S // stride)``.

    Example:
        >>> norm, act = ("INSTANCE", {"affine": True}), ("LEAKYRELU", {"negative_slope": 0.01})
        >>> block = ResidualBlock(3, 4, 8, (3, 3, 3), (2, 2, 2), norm, act)
        >>> block(torch.zeros(1, 4, 8, 8, 8)).shape
        torch.Size([1, 8, 4, 4, 4])
    """

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        kernel: Sequence[int],
        stride: Sequence[int],
        norm: NormSpec,
        act: NormSpec,
    ) -> None:
        super().__init__()
        self.conv1 = _conv(dims, in_channels, out_channels, kernel, tuple(stride), norm, act)
        self.conv2 = _conv(dims, out_channels, out_channels, kernel, 1, norm, None)
        skip: list[nn.Module] = []
        if any(int(s) != 1 for s in stride):
            pool = Pool[Pool.AVG, dims]
            skip.append(pool(kernel_size=tuple(stride), stride=tuple(stride)))
        if in_channels != out_channels:
            skip.append(_conv(dims, in_channels, out_channels, (1,) * dims, 1, norm, None, bias=False))
        self.skip: nn.Module = nn.Sequential(*skip) if skip else nn.Identity()
        act_name, act_args = act
        self.act = Act[act_name](**act_args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.skip(x))


class ResidualEncoderUNet(nn.Module):
    """Residual encoder + plain decoder U-Net with deep supervision (see the module docstring).

    Args:
        dims: 2 or 3.
        in_channels: input channels C.
        num_classes: output channels K.
        features: feature maps per stage.
        kernel_sizes: conv kernel per stage.
        strides: stride per stage (stage 0 is all ones in a plan).
        blocks_encoder: residual blocks per encoder stage (``len == len(features)``).
        blocks_decoder: convs per decoder stage, deepest first (``len == len(features) - 1``).
        norm, act: MONAI factory specs, e.g. ``("INSTANCE", {"affine": True, "eps": 1e-5})``.
        deep_supervision: build a head on every decoder stage and return them all in ``train()``.

    Shapes: ``(B, C, *patch) -> (B, K, *patch)`` in ``eval()``; in ``train()`` with deep supervision a
    list of ``num_heads`` logits ``(B, K, *patch // 2**i)`` (per the strides), highest first.

    Example:
        >>> norm, act = ("INSTANCE", {"affine": True}), ("LEAKYRELU", {"negative_slope": 0.01})
        >>> net = ResidualEncoderUNet(2, 1, 3, [8, 16, 32], [[3, 3]] * 3, [[1, 1], [2, 2], [2, 2]],
        ...                           [1, 3, 4], [1, 1], norm, act)
        >>> [tuple(o.shape) for o in net.train()(torch.zeros(2, 1, 32, 32))]
        [(2, 3, 32, 32), (2, 3, 16, 16)]
        >>> net.eval()(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        dims: int,
        in_channels: int,
        num_classes: int,
        features: Sequence[int],
        kernel_sizes: Sequence[Sequence[int]],
        strides: Sequence[Sequence[int]],
        blocks_encoder: Sequence[int],
        blocks_decoder: Sequence[int],
        norm: NormSpec,
        act: NormSpec,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        n = len(features)
        self.deep_supervision = deep_supervision
        self.stem = _conv(dims, in_channels, features[0], kernel_sizes[0], 1, norm, act)
        self.encoder = nn.ModuleList()
        channels = features[0]
        for s in range(n):
            blocks = [
                ResidualBlock(
                    dims, channels if b == 0 else features[s], features[s], kernel_sizes[s],
                    strides[s] if b == 0 else (1,) * dims, norm, act,
                )
                for b in range(blocks_encoder[s])
            ]  # fmt: skip
            self.encoder.append(nn.Sequential(*blocks))
            channels = features[s]
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.heads = nn.ModuleList()
        for level in range(n - 1):  # deepest decoder stage first
            s = n - 2 - level
            stride = tuple(strides[s + 1])
            self.upsample.append(
                Convolution(
                    dims, features[s + 1], features[s], strides=stride, kernel_size=stride,
                    padding=0, output_padding=0, is_transposed=True, conv_only=True, bias=True,
                )
            )  # fmt: skip
            convs = [
                _conv(dims, (2 if c == 0 else 1) * features[s], features[s], kernel_sizes[s], 1, norm, act)
                for c in range(blocks_decoder[level])
            ]
            self.decoder.append(nn.Sequential(*convs))
            if deep_supervision or level == n - 2:
                self.heads.append(_conv(dims, features[s], num_classes, (1,) * dims))
        self.apply(_init_he)
        for module in self.modules():  # each residual block starts as its shortcut, as in nnU-Net
            if isinstance(module, ResidualBlock):
                for param in module.conv2.get_submodule("adn.N").parameters():  # norm scale and shift
                    nn.init.zeros_(param)

    @property
    def num_heads(self) -> int:
        """Number of outputs in training mode (1 without deep supervision)."""
        return len(self.heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = []
        x = self.stem(x)
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        all_heads = self.deep_supervision and self.training
        outputs = []
        for level, (up, convs) in enumerate(zip(self.upsample, self.decoder, strict=True)):
            x = convs(torch.cat([up(x), skips.pop()], dim=1))
            if all_heads:
                outputs.append(self.heads[level](x))
        if not all_heads:
            return self.heads[-1](x)  # eval(), or no deep supervision: full-resolution logits only
        return outputs[::-1]  # highest resolution first


def _init_he(module: nn.Module) -> None:
    """He (Kaiming normal, LeakyReLU slope 0.01) conv weights and zero biases, as nnU-Net."""
    if isinstance(module, nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.ConvTranspose3d):
        nn.init.kaiming_normal_(module.weight, a=0.01)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def resenc_from_architecture(
    arch: Architecture, in_channels: int, num_classes: int, ds: bool, norm: NormSpec, act: NormSpec
) -> ResidualEncoderUNet:
    """Build from a plan's checked :class:`~autoseg.contracts.Architecture` (its blocks cover every stage)."""
    return ResidualEncoderUNet(
        dims=arch.spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        features=list(arch.features_per_stage),
        kernel_sizes=[list(k) for k in arch.kernel_sizes],
        strides=[list(s) for s in arch.strides],
        blocks_encoder=list(arch.blocks_per_stage_encoder),
        blocks_decoder=list(arch.blocks_per_stage_decoder),
        norm=norm,
        act=act,
        deep_supervision=ds,
    )
