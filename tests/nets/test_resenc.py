"""The residual-encoder U-Net: shapes, nnU-Net's parameter count, and the plan it is built from."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from autoseg.nets import ResidualEncoderUNet, build_network, count_parameters, num_outputs

RESENC_2D = {
    "network": "resenc",
    "n_stages": 4,
    "features_per_stage": [4, 8, 16, 16],
    "kernel_sizes": [[3, 3]] * 4,
    "strides": [[1, 1], [2, 2], [2, 2], [2, 2]],
    "blocks_per_stage_encoder": [1, 3, 4, 6],
    "blocks_per_stage_decoder": [1, 1, 1],
}
RESENC_ANISO_3D = {
    **RESENC_2D,
    "features_per_stage": [4, 8, 16, 32],
    "kernel_sizes": [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]],
    "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [1, 2, 2]],
    "blocks_per_stage_encoder": [1, 2, 2, 3],
    "blocks_per_stage_decoder": [1, 2, 1],
}


@pytest.mark.parametrize(
    ("arch", "patch", "heads"),
    [
        (RESENC_2D, (32, 24), [(32, 24), (16, 12), (8, 6)]),
        (RESENC_ANISO_3D, (8, 32, 32), [(8, 32, 32), (8, 16, 16), (4, 8, 8)]),
    ],
)
def test_deep_supervision_outputs_per_decoder_stage(arch: dict[str, Any], patch: tuple, heads: list) -> None:
    net = build_network(arch, in_channels=2, num_classes=3)
    assert isinstance(net, ResidualEncoderUNet) and num_outputs(net) == 3
    x = torch.randn(2, 2, *patch)
    outputs = net.train()(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 3, *h) for h in heads]
    with torch.no_grad():
        logits = net.eval()(x)
    assert logits.shape == (2, 3, *patch)
    plain = build_network(arch, 2, 3, deep_supervision=False)
    assert num_outputs(plain) == 1 and plain.train()(x).shape == (2, 3, *patch)
    assert count_parameters(plain) < count_parameters(net)  # no lower-resolution heads


def test_blocks_and_strides_come_from_the_plan() -> None:
    net = build_network(RESENC_ANISO_3D, 1, 2)
    assert [len(stage) for stage in net.encoder] == [1, 2, 2, 3]
    assert [len(stage) for stage in net.decoder] == [1, 2, 1]
    firsts = [stage[0] for stage in net.encoder]
    assert [list(b.conv1.conv.stride) for b in firsts] == RESENC_ANISO_3D["strides"]
    assert [list(b.conv1.conv.kernel_size) for b in firsts] == RESENC_ANISO_3D["kernel_sizes"]
    # later blocks of a stage keep the resolution and have identity shortcuts
    assert all(list(b.conv1.conv.stride) == [1, 1, 1] for stage in net.encoder for b in list(stage)[1:])
    assert all(isinstance(b.skip, torch.nn.Identity) for stage in net.encoder for b in list(stage)[1:])


def conv(k: int, cin: int, cout: int, bias: bool = True, norm: bool = True) -> int:
    return k * cin * cout + (cout if bias else 0) + (2 * cout if norm else 0)


def resenc_parameters(features: list[int], blocks: list[int], k: int, cin: int, K: int) -> int:
    """nnU-Net's ResEnc size by hand: stem, blocks (2 convs, 1x1 projection on a width change),
    transposed conv (kernel 2**dim) + one conv per decoder stage, one head per decoder stage."""
    up = 2 ** round(math.log(k, 3))
    total = conv(k, cin, features[0])
    width = features[0]
    for f, n in zip(features, blocks, strict=True):
        total += conv(k, width, f) + conv(k, f, f) + (conv(1, width, f, bias=False) if width != f else 0)
        total += (n - 1) * 2 * conv(k, f, f)
        width = f
    for low, high in zip(features[1:], features[:-1], strict=True):
        total += up * low * high + high + conv(k, 2 * high, high) + conv(1, high, K, norm=False)
    return total


@pytest.mark.parametrize("dims", [2, 3])
def test_parameter_count_matches_the_formula(dims: int) -> None:
    features, blocks = [4, 8, 16, 16], [1, 2, 3, 2]  # the last stage keeps its width: pool-only shortcut
    arch = {
        "network": "resenc",
        "n_stages": 4,
        "features_per_stage": features,
        "kernel_sizes": [[3] * dims] * 4,
        "strides": [[1] * dims] + [[2] * dims] * 3,
        "blocks_per_stage_encoder": blocks,
        "blocks_per_stage_decoder": [1, 1, 1],
    }
    net = build_network(arch, in_channels=2, num_classes=3)
    assert count_parameters(net) == resenc_parameters(features, blocks, 3**dims, 2, 3)


def test_hippocampus_resenc_m_has_nnunets_parameter_count() -> None:
    """nnU-Net 2.8.1 builds 25,895,593 (3d) and 8,728,681 (2d) parameters for this plan (facts §3)."""
    for dims, expected in ((3, 25_895_593), (2, 8_728_681)):
        arch = {
            "network": "resenc",
            "n_stages": 4,
            "features_per_stage": [32, 64, 128, 256],
            "kernel_sizes": [[3] * dims] * 4,
            "strides": [[1] * dims] + [[2] * dims] * 3,
            "blocks_per_stage_encoder": [1, 3, 4, 6],
            "blocks_per_stage_decoder": [1, 1, 1],
        }
        with torch.device("meta"):
            net = build_network(arch, in_channels=1, num_classes=3)
        assert count_parameters(net) == expected


def test_residual_blocks_start_as_their_shortcut() -> None:
    """As nnU-Net, the last norm of each block is zero at init: a block passes act(shortcut(x))."""
    net = build_network(RESENC_2D, 1, 2)
    block = net.encoder[2][1]  # an identity-shortcut block
    x = torch.randn(1, 16, 8, 6)
    assert torch.equal(block(x), torch.nn.functional.leaky_relu(x, 0.01))


def test_blocks_per_stage_must_cover_every_stage() -> None:
    arch = {**RESENC_2D, "blocks_per_stage_encoder": [1, 3], "blocks_per_stage_decoder": [1, 1, 1, 1]}
    with pytest.raises(ValueError, match=r"(?s)blocks_per_stage_encoder=\[1, 3\] needs 4.*decoder.*needs 3"):
        build_network(arch, 1, 2)
    with pytest.raises(
        ValueError, match=r"(?s)plain.*blocks_per_stage_encoder=\[3, 3, 3, 3\].*2 convs per stage"
    ):
        build_network({**RESENC_2D, "network": "plain", "blocks_per_stage_encoder": [3] * 4}, 1, 2)
