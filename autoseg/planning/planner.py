"""Plan one configuration: patch size, topology and batch size from a GPU-memory budget.

Start from a patch with the aspect ratio of the physical voxel grid (256^3 voxels in 3D,
2048^2 in 2D), clipped to the median image; while the network's memory estimate exceeds the
budget, shrink the axis that covers the largest share of the median image by one pooling
step and re-derive the topology; then fill the budget with samples, capped so that one
batch covers at most a set share of the dataset (reference/nnunet-v2-facts.md §3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from autoseg.planning.memory import NetworkShape, estimate_feature_map_elements, expand_per_stage
from autoseg.planning.presets import PlannerConfig
from autoseg.planning.topology import Topology, Vector, derive_topology, features_per_stage


@dataclass
class Explanation:
    """Why the planner decided what it decided: lines for ``autoseg plan --explain``."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


@dataclass(frozen=True)
class PlannedConfiguration:
    """The network-facing part of one configuration."""

    spacing: tuple[float, ...]
    median_shape: tuple[int, ...]
    topology: Topology
    network: NetworkShape
    batch_size: int
    estimate: int
    budget: float


def _network(cfg: PlannerConfig, topology: Topology, num_classes: int) -> NetworkShape:
    dim = len(topology.patch_size)
    stages = topology.num_stages
    features = features_per_stage(
        stages, cfg.base_features, cfg.max_features_3d if dim == 3 else cfg.max_features_2d
    )
    return NetworkShape(
        kind=cfg.network,
        features=features,
        blocks_encoder=expand_per_stage(cfg.blocks_per_stage_encoder, stages),
        blocks_decoder=expand_per_stage(cfg.blocks_per_stage_decoder, stages - 1),
        num_classes=num_classes,
    )


def initial_patch(spacing: Vector, median_shape: Vector) -> tuple[float, ...]:
    """A patch of 256^3 (3D) or 2048^2 (2D) voxels shaped like the physical grid, clipped to the median."""
    inv = 1.0 / np.asarray(spacing, dtype=np.float64)
    volume = 256.0**3 if len(spacing) == 3 else 2048.0**2
    patch = [round(v) for v in inv * (volume / np.prod(inv)) ** (1.0 / len(spacing))]
    # kept fractional (a median can be x.5): the topology pads it up to whole, divisible sizes
    return tuple(float(min(p, m)) for p, m in zip(patch, median_shape, strict=True))


def plan_configuration(
    spacing: Vector,
    median_shape: Vector,
    dataset_voxels: float,
    num_classes: int,
    cfg: PlannerConfig,
    explain: Explanation,
    patch_size: Vector | None = None,
    tag: str = "",
) -> PlannedConfiguration:
    """Choose patch, topology and batch size for one configuration.

    Args:
        spacing: target spacing in the network's axis order (coarsest first).
        median_shape: median image shape at that spacing.
        dataset_voxels: voxels of the whole dataset (median 3D image x cases), for the batch cap.
        num_classes: labels including background (segmentation head channels).
        cfg: the planner preset.
        explain: collects the reasons.
        patch_size: a fixed patch (a user override): no shrinking, only divisibility padding.
        tag: the configuration's name, for the explanation.
    """
    dim = len(spacing)
    ref_value = cfg.reference_value_3d if dim == 3 else cfg.reference_value_2d
    ref_batch = cfg.reference_batch_3d if dim == 3 else cfg.reference_batch_2d
    budget = ref_value * cfg.gpu_memory_gb / cfg.reference_gpu_gb
    start = tuple(patch_size) if patch_size is not None else initial_patch(spacing, median_shape)
    topo = derive_topology(spacing, start, cfg.featuremap_min_edge)
    estimate = estimate_feature_map_elements(topo, _network(cfg, topo, num_classes))
    source = "given on the command line" if patch_size is not None else "initial"
    explain.add(
        f"[{tag}] {source} patch {[round(float(p), 1) for p in start]} -> {list(topo.patch_size)} "
        f"(divisible by "
        f"{list(topo.divisible_by)}), {topo.num_stages} stages, estimate {estimate / 1e6:.1f}M "
        f"feature-map elements per sample, budget {budget / 1e6:.0f}M for {cfg.gpu_memory_gb:g} GB"
    )

    def over_budget(est: int) -> bool:
        return est * 2 / ref_batch > budget if cfg.budget_per_sample_pair else est > budget

    while patch_size is None and over_budget(estimate):
        patch = list(topo.patch_size)
        ratios = [p / m for p, m in zip(patch, median_shape, strict=True)]
        axis = len(ratios) - 1 - int(np.argmax(ratios[::-1]))  # on a tie, the last axis (as nnU-Net)
        trial = list(patch)
        trial[axis] -= topo.divisible_by[axis]
        step = derive_topology(spacing, trial, cfg.featuremap_min_edge).divisible_by[axis]
        patch[axis] -= step
        topo = derive_topology(spacing, patch, cfg.featuremap_min_edge)
        estimate = estimate_feature_map_elements(topo, _network(cfg, topo, num_classes))
        explain.add(
            f"[{tag}] over budget: shrink axis {axis} by {step} -> patch {list(topo.patch_size)}, "
            f"{topo.num_stages} stages, estimate {estimate / 1e6:.1f}M"
        )

    batch = round(budget / estimate * ref_batch)
    cap = round(cfg.max_dataset_covered * dataset_voxels / math.prod(topo.patch_size))
    final = max(min(batch, cap), cfg.min_batch_size)
    explain.add(
        f"[{tag}] batch size {final}: memory allows {batch} ({budget / 1e6:.0f}M / "
        f"{estimate / 1e6:.1f}M x {ref_batch}), a batch may cover {cfg.max_dataset_covered:g} of the "
        f"dataset's voxels -> at most {cap}, minimum {cfg.min_batch_size}"
    )
    return PlannedConfiguration(
        spacing=tuple(float(s) for s in spacing),
        median_shape=tuple(int(round(m)) for m in median_shape),
        topology=topo,
        network=_network(cfg, topo, num_classes),
        batch_size=int(final),
        estimate=int(estimate),
        budget=float(budget),
    )


def plan_lowres(
    full: PlannedConfiguration,
    median_shape: Vector,
    num_cases: int,
    num_classes: int,
    cfg: PlannerConfig,
    explain: Explanation,
) -> PlannedConfiguration | None:
    """A coarser 3D configuration when the full-resolution patch sees too little of the image.

    The spacing grows by ``lowres_spacing_factor`` per step (only the finer axes while some
    axis is more than 2x finer than the coarsest) until the patch covers at least
    ``lowres_threshold`` of the median image. Dropped when it would be less than 2x coarser.
    """
    median = np.asarray(median_shape, dtype=np.float64)
    coverage = math.prod(full.topology.patch_size) / float(np.prod(median))
    if coverage >= cfg.lowres_threshold:
        explain.add(
            f"[3d_lowres] not needed: the full-resolution patch covers {coverage:.0%} of the median "
            f"image (threshold {cfg.lowres_threshold:.0%})"
        )
        return None
    full_spacing = np.asarray(full.spacing, dtype=np.float64)
    spacing = full_spacing.copy()
    plan, median_voxels, patch_voxels = full, float(np.prod(median)), math.prod(full.topology.patch_size)
    quiet = Explanation()
    while patch_voxels / median_voxels < cfg.lowres_threshold:
        ratio = spacing.max() / spacing
        if np.any(ratio > 2):
            spacing[ratio > 2] *= cfg.lowres_spacing_factor
        else:
            spacing *= cfg.lowres_spacing_factor
        lowres_median = full_spacing / spacing * median
        median_voxels = float(np.prod(lowres_median))
        rounded = np.round(lowres_median)
        plan = plan_configuration(
            spacing, rounded, float(np.prod(rounded)) * num_cases, num_classes, cfg, quiet, tag="3d_lowres"
        )
        patch_voxels = math.prod(plan.topology.patch_size)
    if float(np.prod(median)) / median_voxels < 2:
        explain.add("[3d_lowres] dropped: it would be less than 2x coarser than 3d_fullres")
        return None
    explain.add(
        f"[3d_lowres] the full-resolution patch covers {coverage:.0%} of the median image (< "
        f"{cfg.lowres_threshold:.0%}): spacing grown by x{cfg.lowres_spacing_factor} steps to "
        f"{[round(float(s), 4) for s in spacing]}"
    )
    explain.lines.extend(quiet.lines[-2:])
    return plan
