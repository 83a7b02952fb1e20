"""Network factory: plans of every shape build, forward in train (deep supervision) and eval mode."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

from autoseg.nets import NETWORKS, build_network, count_parameters, deep_supervision_weights, num_outputs

# Architectures as the planner writes them (plans.json "architecture"), with small features.
HIPPOCAMPUS_3D = {
    "network": "plain",
    "n_stages": 4,
    "features_per_stage": [4, 8, 16, 32],
    "kernel_sizes": [[3, 3, 3]] * 4,
    "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
    "blocks_per_stage_encoder": [2, 2, 2, 2],
    "blocks_per_stage_decoder": [2, 2, 2],
    "norm": "instance",
    "nonlinearity": "leakyrelu",
    "deep_supervision": True,
}
ANISOTROPIC_3D = {
    **HIPPOCAMPUS_3D,
    "kernel_sizes": [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]],
    "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
}
HIPPOCAMPUS_2D = {**HIPPOCAMPUS_3D, "kernel_sizes": [[3, 3]] * 4, "strides": [[1, 1], [2, 2], [2, 2], [2, 2]]}
RESENC_3D = {
    **HIPPOCAMPUS_3D,
    "network": "resenc",
    "blocks_per_stage_encoder": [1, 3, 4, 6],
    "blocks_per_stage_decoder": [1, 1, 1],
}

CASES: dict[str, tuple[dict[str, Any], tuple[int, ...], list[tuple[int, ...]]]] = {
    # name: (architecture, patch, spatial shapes of the train-mode outputs, highest resolution first)
    "hippocampus_3d": (HIPPOCAMPUS_3D, (40, 56, 40), [(40, 56, 40), (20, 28, 20), (10, 14, 10)]),
    "anisotropic_3d": (ANISOTROPIC_3D, (8, 32, 32), [(8, 32, 32), (8, 16, 16), (4, 8, 8)]),
    "hippocampus_2d": (HIPPOCAMPUS_2D, (56, 40), [(56, 40), (28, 20), (14, 10)]),
    "resenc_3d": (RESENC_3D, (16, 24, 16), [(16, 24, 16), (8, 12, 8), (4, 6, 4)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_shapes_train_and_eval(name: str) -> None:
    arch, patch, head_shapes = CASES[name]
    net = build_network(arch, in_channels=2, num_classes=3)
    x = torch.randn(1, 2, *patch)
    net.train()
    outputs = net(x)
    assert isinstance(outputs, list)
    assert num_outputs(net) == arch["n_stages"] - 1 == len(outputs)
    assert [tuple(o.shape) for o in outputs] == [(1, 3, *s) for s in head_shapes]
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (1, 3, *patch)


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_every_registered_network_builds_and_backpropagates(network: str) -> None:
    net = build_network({**HIPPOCAMPUS_3D, "network": network}, in_channels=1, num_classes=2)
    outputs = net(torch.randn(1, 1, 16, 16, 16))
    sum(o.float().mean() for o in outputs).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_without_deep_supervision_train_mode_returns_a_tensor() -> None:
    x = torch.randn(1, 1, 16, 16, 16)
    assert num_outputs(build_network(HIPPOCAMPUS_3D, 1, 2, deep_supervision=False)) == 1
    for net in (
        build_network(HIPPOCAMPUS_3D, 1, 2, deep_supervision=False),
        build_network({**HIPPOCAMPUS_3D, "deep_supervision": False}, 1, 2),
    ):
        assert net.train()(x).shape == (1, 2, 16, 16, 16)
        assert not any("deep_supervision_heads" in k for k in net.state_dict())


def test_resenc_has_residual_shortcuts_plain_does_not() -> None:
    plain = build_network(HIPPOCAMPUS_3D, 1, 2)
    resenc = build_network(RESENC_3D, 1, 2)
    assert not any(name.endswith("skip") for name, _ in plain.named_modules())
    assert sum(name.endswith("skip") for name, _ in resenc.named_modules()) == 1 + 3 + 4 + 6


def test_parameter_count_grows_with_features() -> None:
    counts = []
    for base in (4, 8, 16):
        arch = {**HIPPOCAMPUS_3D, "features_per_stage": [base * 2**i for i in range(4)]}
        counts.append(count_parameters(build_network(arch, 1, 2)))
    assert counts[0] < counts[1] < counts[2]
    net = build_network(HIPPOCAMPUS_3D, 1, 2)
    assert count_parameters(net) == sum(p.numel() for p in net.parameters())


def test_unknown_network_lists_valid_names_and_suggests() -> None:
    with pytest.raises(ValueError, match=r"'plian'.*did you mean 'plain'.*valid: plain, resenc"):
        build_network({**HIPPOCAMPUS_3D, "network": "plian"}, 1, 2)
    with pytest.raises(ValueError, match=r"unknown norm 'instnace'.*'instance'"):
        build_network({**HIPPOCAMPUS_3D, "norm": "instnace"}, 1, 2)


def test_inconsistent_architecture_lists_every_problem() -> None:
    arch = copy.deepcopy(HIPPOCAMPUS_3D)
    arch["features_per_stage"] = [4, 8, 16]
    arch["strides"] = [[1, 1, 1], [2, 2, 2], [2, 2, 2]]
    with pytest.raises(ValueError, match=r"(?s)features_per_stage has 3 entries.*strides has 3 entries"):
        build_network(arch, 1, 2)
    with pytest.raises(ValueError, match="missing 'kernel_sizes'"):
        build_network({"network": "plain"}, 1, 2)


@pytest.mark.parametrize(
    ("num_heads", "expected"),
    [
        (1, [1.0]),
        (2, [1.0, 0.0]),
        (3, [2 / 3, 1 / 3, 0.0]),
        (5, [0.5333, 0.2667, 0.1333, 0.0667, 0.0]),
    ],
)
def test_deep_supervision_weights(num_heads: int, expected: list[float]) -> None:
    weights = deep_supervision_weights(num_heads)
    assert weights == pytest.approx(expected, abs=1e-4)
    assert math.isclose(sum(weights), 1.0)
    with pytest.raises(ValueError):
        deep_supervision_weights(0)


def test_a_two_stage_plan_loads_but_no_unet_is_built_from_it() -> None:
    """Images too small to pool twice give a valid 2-stage plan; building its network says why not."""
    from autoseg.contracts.architecture import Architecture

    arch = Architecture("plain", 2, (8, 16), ((3, 3, 3),) * 2, ((1, 1, 1), (2, 2, 2)))
    with pytest.raises(ValueError, match="at least 3 stages"):
        build_network(arch, in_channels=1, num_classes=2)
