"""The memory model estimates the network that is built: plan and module must agree.

For every planner preset and a few dataset shapes, the network built from plans.json must have the
stages, widths, kernels, strides and blocks per stage that the planner's memory estimate assumed,
and produce exactly the feature-map elements the plan budgeted (counted with hooks on the module).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from autoseg.commands.config import compose
from autoseg.nets import ResidualEncoderUNet, build_network, feature_map_elements
from autoseg.planning.memory import NetworkShape, estimate_feature_map_elements
from autoseg.planning.plans import build_plans
from autoseg.planning.presets import PlannerConfig, available_presets
from autoseg.planning.topology import Topology
from tests.planning.helpers import make_fingerprint

FINGERPRINTS = {
    "hippocampus": ([1.0, 1.0, 1.0], [36, 50, 35], 100),
    "thick-slice": ([5.0, 0.7, 0.7], [40, 300, 300], 20),
}


def preset(name: str) -> PlannerConfig:
    return PlannerConfig.from_mapping(
        OmegaConf.to_container(compose([f"planner={name}"]).planner, resolve=True)
    )


def estimate_inputs(
    arch: dict[str, Any], patch: list[int], kind: str, classes: int
) -> tuple[Topology, NetworkShape]:
    """The memory model's inputs, as plans.json records them."""
    pools = tuple(sum(s[a] == 2 for s in arch["strides"]) for a in range(len(patch)))
    topology = Topology(
        patch_size=tuple(patch),
        strides=tuple(tuple(s) for s in arch["strides"]),
        kernel_sizes=tuple(tuple(k) for k in arch["kernel_sizes"]),
        pools_per_axis=pools,
        divisible_by=tuple(2**p for p in pools),
    )
    shape = NetworkShape(
        kind,
        tuple(arch["features_per_stage"]),
        tuple(arch["blocks_per_stage_encoder"]),
        tuple(arch["blocks_per_stage_decoder"]),
        classes,
    )
    return topology, shape


def module_layout(net: torch.nn.Module) -> dict[str, list]:
    """Stages, widths, kernels, strides and blocks per stage, read from a built ResidualEncoderUNet."""
    assert isinstance(net, ResidualEncoderUNet)
    firsts = [stage[0] for stage in net.encoder]
    return {
        "features_per_stage": [b.conv2.conv.out_channels for b in firsts],
        "kernel_sizes": [list(b.conv1.conv.kernel_size) for b in firsts],
        "strides": [list(b.conv1.conv.stride) for b in firsts],
        "blocks_per_stage_encoder": [len(stage) for stage in net.encoder],
        "blocks_per_stage_decoder": [len(stage) for stage in net.decoder],
    }


def planned(name: str, data: str) -> tuple[dict[str, Any], list[str]]:
    spacing, shape, cases = FINGERPRINTS[data]
    plans, _ = build_plans(make_fingerprint(spacing, shape, cases), preset(name))
    return plans, [c for c, conf in plans["configurations"].items() if "architecture" in conf]


@pytest.mark.parametrize("data", sorted(FINGERPRINTS))
@pytest.mark.parametrize("name", available_presets())
def test_built_network_is_the_network_the_memory_model_estimated(name: str, data: str) -> None:
    plans, configurations = planned(name, data)
    classes = len(plans["labels"])
    for config in configurations:
        conf = plans["configurations"][config]
        arch, patch = conf["architecture"], conf["patch_size"]
        topology, shape = estimate_inputs(arch, patch, preset(name).network, classes)
        estimate = conf["memory"]["estimate_feature_map_elements"]
        assert estimate_feature_map_elements(topology, shape) == estimate, config  # the recorded inputs
        with torch.device("meta"):
            net = build_network(arch, 1, classes)
        if shape.kind == "resenc":
            layout = module_layout(net)
            assert layout == {key: arch[key] for key in layout}, config
            assert len(net.encoder) == arch["n_stages"] == len(net.decoder) + 1
        assert feature_map_elements(net, (1, 1, *patch)) == estimate, config


def test_a_network_other_than_planned_is_caught() -> None:
    """What the comparison above catches: the old one-block-per-stage ResEnc (MONAI DynUNet)."""
    plans, _ = planned("resenc-m", "hippocampus")
    conf = plans["configurations"]["3d_fullres"]
    arch = {**conf["architecture"], "blocks_per_stage_encoder": [1] * 4, "blocks_per_stage_decoder": [2] * 3}
    with torch.device("meta"):
        shallow = build_network(arch, 1, len(plans["labels"]))  # DynUNet-like depth
    assert (
        module_layout(shallow)["blocks_per_stage_encoder"] != conf["architecture"]["blocks_per_stage_encoder"]
    )
    assert (
        feature_map_elements(shallow, (1, 1, *conf["patch_size"]))
        != conf["memory"]["estimate_feature_map_elements"]
    )
