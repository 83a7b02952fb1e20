"""Build plans.json from a fingerprint: the contract between planning and everything after it.

Training and prediction read every decision from here (spacing, axis order, normalization,
resampling, patch, batch, network) and never re-derive it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoseg.contracts.labels import LabelManager
from autoseg.contracts.plans import DEFAULT_RESAMPLING, PLANS_SCHEMA_VERSION
from autoseg.planning.planner import Explanation, PlannedConfiguration, plan_configuration, plan_lowres
from autoseg.planning.presets import PlannerConfig
from autoseg.planning.spacing import median_shape_at, target_spacing, transpose_axes
from autoseg.preprocessing.steps import PreprocessingChoice

__all__ = [
    "PLANS_SCHEMA_VERSION",
    "build_plans",
    "histogram_channels",
    "normalization_for",
    "parse_plan_overrides",
]

NORMALIZATION_BY_NAME = {
    "ct": "ct",
    "nonorm": "nonorm",
    "zscore": "zscore",
    "rescale_to_0_1": "rescale_to_0_1",
    "rgb_to_0_1": "rescale_to_0_1",
}
#: Plan fields a user may override per configuration; anything else is derived from these.
OVERRIDABLE = (
    "spacing",
    "patch_size",
    "batch_size",
    "normalization_schemes",
    "use_mask_for_norm",
    "batch_dice",
)


def normalization_for(
    channel_names: Mapping[int, str], median_relative_size: float
) -> tuple[list[str], list[bool]]:
    """Scheme per channel from its name (``CT`` -> global CT normalization, else per-image z-score)
    and whether to normalize inside the non-zero mask (z-score when cropping removed over 25%)."""
    schemes = [
        NORMALIZATION_BY_NAME.get(channel_names[c].strip().lower(), "zscore") for c in sorted(channel_names)
    ]
    use_mask = [s == "zscore" and median_relative_size < 0.75 for s in schemes]
    return schemes, use_mask


def _configuration_dict(
    name: str,
    plan: PlannedConfiguration,
    cfg: PlannerConfig,
    schemes: list[str],
    use_mask: list[bool],
    batch_dice: bool,
) -> dict[str, Any]:
    topo = plan.topology
    return {
        "data_identifier": name,
        "spacing": list(plan.spacing),
        "median_image_size_in_voxels": list(plan.median_shape),
        "patch_size": list(topo.patch_size),
        "batch_size": plan.batch_size,
        "batch_dice": batch_dice,
        "normalization_schemes": list(schemes),
        "use_mask_for_norm": list(use_mask),
        "resampling": dict(DEFAULT_RESAMPLING),
        "architecture": {
            "network": cfg.network,
            "n_stages": topo.num_stages,
            "features_per_stage": list(plan.network.features),
            "kernel_sizes": [list(k) for k in topo.kernel_sizes],
            "strides": [list(s) for s in topo.strides],
            "blocks_per_stage_encoder": list(plan.network.blocks_encoder),
            "blocks_per_stage_decoder": list(plan.network.blocks_decoder),
            "norm": "instance",
            "nonlinearity": "leakyrelu",
            "deep_supervision": True,
        },
        "memory": {
            "estimate_feature_map_elements": plan.estimate,
            "budget": plan.budget,
            "gpu_memory_gb": cfg.gpu_memory_gb,
        },
    }


def parse_plan_overrides(overrides: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["3d_fullres.patch_size=[48,64,48]", "2d.batch_size=32"]`` -> ``{config: {field: value}}``.

    Values are YAML (``[48,64,48]``, ``4``, ``true``); unknown configurations or fields are an
    error that lists all of them at once, with the nearest valid name.
    """
    import yaml

    parsed: dict[str, dict[str, Any]] = {}
    problems = []
    for item in overrides:
        key, sep, value = item.partition("=")
        config, dot, fld = key.partition(".")
        if not sep or not dot:
            problems.append(f"{item!r}: expected CONFIG.FIELD=VALUE, e.g. 3d_fullres.batch_size=4")
            continue
        if config not in ("2d", "3d_fullres", "3d_lowres"):
            problems.append(f"{item!r}: unknown configuration {config!r} (2d, 3d_fullres, 3d_lowres)")
        if fld not in OVERRIDABLE:
            near = difflib.get_close_matches(fld, OVERRIDABLE, 1)
            problems.append(
                f"{item!r}: {fld!r} cannot be overridden"
                + (f" (did you mean {near[0]!r}?)" if near else f"; fields: {', '.join(OVERRIDABLE)}")
            )
        parsed.setdefault(config, {})[fld] = yaml.safe_load(value)
    if problems:
        raise ValueError("plan overrides:\n  " + "\n  ".join(problems))
    return parsed


def build_plans(
    fingerprint: Mapping[str, Any],
    cfg: PlannerConfig,
    overrides: Sequence[str] = (),
    preprocessing: PreprocessingChoice | None = None,
) -> tuple[dict[str, Any], Explanation]:
    """Plan every configuration of ``cfg.configurations`` from a fingerprint.

    Args:
        fingerprint: fingerprint.json as parsed.
        cfg: the planner preset.
        overrides: ``CONFIG.FIELD=VALUE`` strings (see :func:`parse_plan_overrides`); recorded in the plans.
        preprocessing: optional steps and a normalisation for every channel (default: nnU-Net's);
            ``histogram`` landmarks are fitted afterwards (:func:`~autoseg.planning.stages.run_plan`).

    Returns:
        The plans (a JSON-able dict, schema :data:`PLANS_SCHEMA_VERSION`) and the explanation.

    Example:
        >>> plans, why = build_plans(fingerprint, PlannerConfig())  # doctest: +SKIP
        >>> plans["configurations"]["3d_fullres"]["patch_size"]  # doctest: +SKIP
        [40, 56, 40]
    """
    fixed = parse_plan_overrides(overrides)
    explain = Explanation()
    labels = fingerprint["labels"]
    order = fingerprint.get("regions_class_order")  # only region datasets have it
    # network outputs: one per class (ignore excluded), or one per region
    num_classes = LabelManager.from_labels(labels, order, strict=False).num_outputs if labels else 2
    channel_names = {int(k): v for k, v in fingerprint["channel_names"].items()}
    choice = preprocessing or PreprocessingChoice()
    schemes, use_mask = _normalization(fingerprint, channel_names, choice, explain)
    grid = _grid(fingerprint, cfg, fixed, explain)
    full, lowres = _plan_3d(grid, num_classes, cfg, fixed, explain)
    configs: dict[str, dict[str, Any]] = {}
    if full is not None and "3d_fullres" in cfg.configurations:
        configs["3d_fullres"] = _configuration_dict(
            "3d_fullres", full, cfg, schemes, use_mask, lowres is not None
        )
    if lowres is not None:
        configs["3d_lowres"] = _configuration_dict("3d_lowres", lowres, cfg, schemes, use_mask, False)
        configs["3d_lowres"]["next_stage"] = "3d_cascade_fullres"
        configs["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    if "2d" in cfg.configurations:
        plan2d = plan_configuration(
            grid.spacing[1:],
            grid.median[1:],
            grid.dataset_voxels,
            num_classes,
            cfg,
            explain,
            patch_size=fixed.get("2d", {}).get("patch_size"),
            tag="2d",
        )
        configs["2d"] = _configuration_dict("2d", plan2d, cfg, schemes, use_mask, True)
    _apply_simple_overrides(configs, fixed, explain)
    _add_denoising(configs, choice, explain)
    plans = {
        "dataset_name": fingerprint["dataset_name"],
        "plans_name": cfg.name,
        "planner": _planner_record(cfg),
        "overrides": list(overrides),
        "transpose_forward": grid.forward,
        "transpose_backward": grid.backward,
        "original_median_spacing_after_transp": [float(s) for s in grid.spacing],
        "original_median_shape_after_transp": [int(round(m)) for m in grid.median],
        "channel_names": {str(k): v for k, v in channel_names.items()},
        "labels": labels,
        **({"regions_class_order": list(order)} if order else {}),
        "foreground_intensity_properties_per_channel": fingerprint[
            "foreground_intensity_properties_per_channel"
        ],
        "configurations": configs,
        "fingerprint": dict(fingerprint),
    }
    return plans, explain


def _planner_record(cfg: PlannerConfig) -> dict[str, Any]:
    """The planner settings as plans.json records them (``gpu_memory_source`` only when not the default)."""
    record = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}
    if record.get("gpu_memory_source") == "default":
        del record["gpu_memory_source"]
    return record


@dataclass(frozen=True)
class _Grid:
    """The full-resolution grid, in the transposed axis order."""

    spacing: np.ndarray
    median: np.ndarray
    forward: list[int]
    backward: list[int]
    num_cases: int

    @property
    def dataset_voxels(self) -> float:
        return float(np.prod(self.median)) * self.num_cases


def _normalization(
    fingerprint: Mapping[str, Any],
    channel_names: Mapping[int, str],
    choice: PreprocessingChoice,
    explain: Explanation,
) -> tuple[list[str], list[bool]]:
    relative = fingerprint["median_relative_size_after_cropping"]
    schemes, use_mask = normalization_for(channel_names, relative)
    if choice.normalization != "auto":
        schemes = [choice.normalization] * len(schemes)
        use_mask = [s in ("zscore", "histogram") and relative < 0.75 for s in schemes]
        explain.add(f"normalization {choice.normalization!r} for every channel (preprocessing.normalization)")
    explain.add(
        f"normalization per channel: {dict(zip(channel_names.values(), schemes, strict=True))}, "
        f"non-zero mask {use_mask} (median size after cropping "
        f"{relative:.0%} of the image; the mask is used below 75%)"
    )
    return schemes, use_mask


def _grid(
    fingerprint: Mapping[str, Any], cfg: PlannerConfig, fixed: Mapping[str, Any], explain: Explanation
) -> _Grid:
    cases = fingerprint["cases"]
    spacings = [c["spacing"] for c in cases]
    shapes = [c["shape_after_crop"] for c in cases]
    decision = target_spacing(spacings, shapes, cfg.anisotropy_threshold)
    full_spacing = np.asarray(fixed.get("3d_fullres", {}).get("spacing", decision.spacing), dtype=np.float64)
    if "spacing" in fixed.get("3d_fullres", {}):
        explain.add(f"target spacing {full_spacing.tolist()} (given on the command line)")
    else:
        explain.add(f"target spacing {[round(float(s), 5) for s in full_spacing]}: {decision.rule}")
    forward, backward = transpose_axes(full_spacing)
    explain.add(f"axis order {forward}: the coarsest axis first (transpose_forward)")
    median = median_shape_at(shapes, spacings, full_spacing)[forward]
    return _Grid(full_spacing[forward], median, forward, backward, len(cases))


def _plan_3d(
    grid: _Grid, num_classes: int, cfg: PlannerConfig, fixed: Mapping[str, Any], explain: Explanation
) -> tuple[PlannedConfiguration | None, PlannedConfiguration | None]:
    """(3d_fullres, 3d_lowres) plans; None where not planned (2D data, not asked, or not needed)."""
    if grid.median[0] <= 1 or not {"3d_fullres", "3d_lowres"} & set(cfg.configurations):
        return None, None
    full = plan_configuration(
        grid.spacing,
        grid.median,
        grid.dataset_voxels,
        num_classes,
        cfg,
        explain,
        patch_size=fixed.get("3d_fullres", {}).get("patch_size"),
        tag="3d_fullres",
    )
    if "3d_lowres" not in cfg.configurations:
        return full, None
    over = fixed.get("3d_lowres", {})
    if "spacing" not in over:
        return full, plan_lowres(full, grid.median, grid.num_cases, num_classes, cfg, explain)
    lr_spacing = np.asarray(over["spacing"], dtype=np.float64)
    lr_median = np.round(grid.spacing / lr_spacing * grid.median)
    lowres = plan_configuration(
        lr_spacing,
        lr_median,
        float(np.prod(lr_median)) * grid.num_cases,
        num_classes,
        cfg,
        explain,
        patch_size=over.get("patch_size"),
        tag="3d_lowres",
    )
    return full, lowres


def _add_denoising(
    configs: dict[str, dict[str, Any]], choice: PreprocessingChoice, explain: Explanation
) -> None:
    spec = choice.denoise_spec()
    if spec is None:
        return
    for conf in configs.values():
        if "patch_size" in conf:
            conf["preprocessing"] = {"denoise": spec}
    explain.add(f"denoising {spec} before normalization (preprocessing.denoise)")


def histogram_channels(plans: Mapping[str, Any]) -> list[int]:
    """The channels some configuration of freshly built plans normalises with ``histogram``."""
    return sorted(
        {
            c
            for conf in plans["configurations"].values()
            for c, scheme in enumerate(conf.get("normalization_schemes", []))
            if scheme == "histogram"
        }
    )


def _apply_simple_overrides(
    configs: dict[str, dict[str, Any]], fixed: Mapping[str, Mapping[str, Any]], explain: Explanation
) -> None:
    problems = []
    for name, fields in fixed.items():
        if name not in configs:
            problems.append(f"{name}: not planned for this dataset (planned: {', '.join(configs)})")
            continue
        conf = configs[name]
        n_channels = len(conf["normalization_schemes"])
        for fld, value in fields.items():
            if fld in ("spacing", "patch_size"):
                continue  # applied while planning
            if fld in ("normalization_schemes", "use_mask_for_norm") and (
                not isinstance(value, list) or len(value) != n_channels
            ):
                problems.append(
                    f"{name}.{fld}={value!r}: needs a list of {n_channels} values, one per channel"
                )
                continue
            if fld == "batch_size" and (not isinstance(value, int) or value < 1):
                problems.append(f"{name}.batch_size={value!r}: needs a positive integer")
                continue
            conf[fld] = value
            explain.add(f"[{name}] {fld} = {value!r} (given on the command line)")
    if problems:
        raise ValueError("plan overrides:\n  " + "\n  ".join(problems))
