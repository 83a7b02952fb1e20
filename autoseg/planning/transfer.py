"""Plans for one dataset with another's network: ``autoseg plan TARGET --plans-from SOURCE``.

From the **source's** plans: every planned configuration's network topology (the architecture),
patch, spacing, batch size, batch Dice and resampling, the axis order (``transpose_forward``) and
the cascade's links, so that a model trained on the source initialises the target's network
tensor for tensor (``autoseg train ... --init-from``), as nnU-Net's
``move_plans_between_datasets`` does.

From the **target's** own data: the intensity statistics and the normalisation per channel (so
the channel count), the label set, the median sizes (recomputed at the source's spacing), the
fingerprint and the splits.

A source whose images have another number of spatial axes, or a 3D source for 2D target images
(and the other way round), is refused with the reason. plans.json records the source and the
sha256 of its plans (``transferred_from``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoseg.planning.planner import Explanation
from autoseg.planning.spacing import median_shape_at

__all__ = ["FROM_SOURCE", "PlansSource", "plans_sha256", "transfer_plans"]

#: Per configuration, the fields taken from the source (the rest is the target's).
FROM_SOURCE = (
    "spacing",
    "patch_size",
    "batch_size",
    "batch_dice",
    "architecture",
    "resampling",
    "memory",
    "next_stage",
)
#: Per configuration, the fields the target keeps (they depend on its channels and data).
FROM_TARGET = ("normalization_schemes", "use_mask_for_norm", "preprocessing")


@dataclass(frozen=True)
class PlansSource:
    """The plans to take the network from, and how the user named them (recorded in plans.json)."""

    name: str
    plans: Mapping[str, Any]


def plans_sha256(plans: Mapping[str, Any]) -> str:
    """sha256 of plans as canonical JSON without the fingerprint and the run record (so the copy
    beside a model and the preprocessed plans.json of the same plan hash the same)."""
    core = {k: v for k, v in plans.items() if k not in ("fingerprint", "run")}
    return hashlib.sha256(json.dumps(core, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _planned(plans: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {n: c for n, c in plans["configurations"].items() if "inherits_from" not in c}


def _is_3d(plans: Mapping[str, Any]) -> bool:
    return any(len(c.get("patch_size", ())) == 3 for c in _planned(plans).values())


def _refusal(target: Mapping[str, Any], source: PlansSource, target_3d: bool) -> str | None:
    """Why the source's network cannot serve the target's images, or None."""
    axes_t, axes_s = len(target["transpose_forward"]), len(source.plans.get("transpose_forward", ()))
    if axes_t != axes_s:
        return f"its images have {axes_s} spatial axes, the target's {axes_t}"
    if _is_3d(source.plans) and not target_3d:
        shape = target["original_median_shape_after_transp"]
        return (
            f"it is planned for 3D images ({', '.join(_planned(source.plans))}) and the target's images are "
            f"2D (median shape {shape}): a 3D network cannot run on them"
        )
    if not _is_3d(source.plans) and target_3d:
        return (
            "it is planned for 2D images only (2d) and the target's images are 3D; plan the target on its "
            "own, or transfer from a source with 3D configurations"
        )
    return None


def transfer_plans(
    plans: dict[str, Any], source: PlansSource, fingerprint: Mapping[str, Any], explain: Explanation
) -> dict[str, Any]:
    """The target's freshly built ``plans`` with the network part of ``source`` (module docstring).

    Raises:
        ValueError: the source cannot serve the target (the reason), or is not plans.
    """
    if not isinstance(source.plans.get("configurations"), Mapping) or not _planned(source.plans):
        raise ValueError(f"--plans-from {source.name}: no planned configuration in its plans")
    target_3d = float(plans["original_median_shape_after_transp"][0]) > 1
    why = _refusal(plans, source, target_3d)
    if why is not None:
        raise ValueError(
            f"--plans-from {source.name}: cannot transfer its plans to {plans['dataset_name']}: {why}"
        )
    own = next(iter(_planned(plans).values()))
    forward = [int(a) for a in source.plans["transpose_forward"]]
    backward = [int(a) for a in np.argsort(forward)]
    spacings = [c["spacing"] for c in fingerprint["cases"]]
    shapes = [c["shape_after_crop"] for c in fingerprint["cases"]]
    original = np.asarray(plans["original_median_spacing_after_transp"])[
        np.argsort(plans["transpose_forward"])
    ]
    configs: dict[str, Any] = {}
    for name, conf in source.plans["configurations"].items():
        new = {k: copy.deepcopy(v) for k, v in conf.items() if k not in FROM_TARGET}
        if "inherits_from" not in conf:
            new.update({k: copy.deepcopy(own[k]) for k in FROM_TARGET if k in own})
            spacing = [float(s) for s in conf["spacing"]]
            full = spacing if len(spacing) == len(forward) else [float(original[forward[0]]), *spacing]
            median = median_shape_at(shapes, spacings, np.asarray(full)[backward])[forward]
            new["median_image_size_in_voxels"] = [float(m) for m in median[len(forward) - len(spacing) :]]
            explain.add(
                f"[{name}] from {source.name}: spacing {spacing}, patch {list(conf['patch_size'])}, batch "
                f"{conf['batch_size']}, network {conf['architecture'].get('network', 'plain')} with "
                f"{conf['architecture']['n_stages']} stages; from {plans['dataset_name']}: normalization "
                f"{new['normalization_schemes']} ({len(new['normalization_schemes'])} channel(s)), "
                "median size "
                f"{[round(m) for m in new['median_image_size_in_voxels']]} at that spacing"
            )
        configs[name] = new
    out = dict(plans)
    out["configurations"] = configs
    out["transpose_forward"], out["transpose_backward"] = forward, backward
    out["original_median_spacing_after_transp"] = [float(original[a]) for a in forward]
    shape = np.asarray(plans["original_median_shape_after_transp"])[np.argsort(plans["transpose_forward"])]
    out["original_median_shape_after_transp"] = [int(shape[a]) for a in forward]
    out["transferred_from"] = {
        "source": source.name,
        "dataset_name": source.plans.get("dataset_name"),
        "plans_name": source.plans.get("plans_name"),
        "plans_sha256": plans_sha256(source.plans),
        "configurations": list(configs),
        "from_source": ["transpose_forward", *FROM_SOURCE],
        "from_target": [
            "labels",
            "channel_names",
            "foreground_intensity_properties_per_channel",
            *FROM_TARGET,
        ],
    }
    explain.add(
        f"network, patch, spacing and batch from {source.name} (plans {source.plans.get('plans_name')!r} of "
        f"{source.plans.get('dataset_name')}); intensity statistics, normalization, labels "
        f"({len(plans['labels'])} values) and channels ({len(plans['channel_names'])}) from "
        f"{plans['dataset_name']}; axis order {forward} from the source"
    )
    return out
