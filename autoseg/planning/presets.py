"""Planner presets: a frozen dataclass filled from conf/planner/<name>.yaml.

A preset is a few lines of YAML (see conf/planner/resenc-l.yaml); adding one needs no code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from autoseg.utils.dataclasses import from_mapping

NETWORK_KINDS = ("plain", "resenc")


@dataclass(frozen=True)
class PlannerConfig:
    """Every number the planner uses (nnU-Net v2's defaults; reference/nnunet-v2-facts.md §3).

    Attributes:
        name: preset name; also the plans name (the folder of plans.json).
        network: ``plain`` (2 convs per stage) or ``resenc`` (residual encoder).
        gpu_memory_gb: the GPU memory to plan for (``--gpu-memory``).
        gpu_memory_source: where ``gpu_memory_gb`` came from: ``default``, ``--gpu-memory``, or
            ``auto: <GPU name>, ...`` (:mod:`autoseg.planning.gpu`).
        reference_gpu_gb: the GPU size the reference values stand for.
        reference_value_3d: feature-map elements that fit ``reference_batch_3d`` samples there.
        reference_value_2d: the same for 2D.
        budget_per_sample_pair: shrink the patch while ``estimate * 2 / reference_batch``
            exceeds the reference (nnU-Net's plain planner); else while ``estimate`` does
            (its residual-encoder planners). Identical in 3D, where the reference batch is 2.
        max_dataset_covered: one batch covers at most this share of the dataset's voxels.
        lowres_threshold: a 3d_lowres configuration is made when the full-resolution patch
            covers less than this share of the median image.
    """

    name: str = "default"
    network: str = "plain"
    gpu_memory_gb: float = 8.0
    gpu_memory_source: str = "default"
    reference_gpu_gb: float = 8.0
    reference_value_3d: float = 560e6
    reference_value_2d: float = 85e6
    reference_batch_3d: int = 2
    reference_batch_2d: int = 12
    budget_per_sample_pair: bool = True
    max_dataset_covered: float = 0.05
    min_batch_size: int = 2
    base_features: int = 32
    max_features_3d: int = 320
    max_features_2d: int = 512
    blocks_per_stage_encoder: tuple[int, ...] = (2,)
    blocks_per_stage_decoder: tuple[int, ...] = (2,)
    featuremap_min_edge: int = 4
    anisotropy_threshold: float = 3.0
    lowres_threshold: float = 0.25
    lowres_spacing_factor: float = 1.03
    configurations: tuple[str, ...] = field(default=("2d", "3d_fullres", "3d_lowres"))

    def __post_init__(self) -> None:
        problems = []
        if self.network not in NETWORK_KINDS:
            problems.append(f"network={self.network!r} is not one of {NETWORK_KINDS}")
        if self.gpu_memory_gb <= 0:
            problems.append(f"gpu_memory_gb={self.gpu_memory_gb} must be positive")
        unknown = set(self.configurations) - {"2d", "3d_fullres", "3d_lowres"}
        if unknown:
            problems.append(f"configurations {sorted(unknown)} unknown; use 2d, 3d_fullres, 3d_lowres")
        if problems:
            raise ValueError(f"planner preset {self.name!r}: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PlannerConfig:
        """Build from a (hydra) mapping; an unknown key names the nearest valid one."""
        return from_mapping(cls, data, "planner config")


def available_presets() -> list[str]:
    """Names of the YAML presets shipped in conf/planner/."""
    folder = resources.files("autoseg.conf") / "planner"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))
