"""plans.json as typed, validated objects: the one place that reads the plans.

``autoseg plan`` writes plans.json (:mod:`autoseg.planning.plans` builds it); every stage after
it (preprocessing, training, prediction, evaluation) reads it through :class:`Plans`, never as
a dict. A file of another ``schema_version`` is refused with what to do.

Example:
    >>> plans = Plans.load("preprocessed/Dataset004_Hippocampus/default/plans.json")  # doctest: +SKIP
    >>> conf = plans.configuration("3d_fullres")  # doctest: +SKIP
    >>> conf.patch_size, conf.batch_size, plans.labels.num_outputs  # doctest: +SKIP
    ((40, 56, 40), 4, 3)
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoseg.contracts.architecture import Architecture
from autoseg.contracts.case import DEFAULT_RESAMPLING, Resampling
from autoseg.contracts.labels import LabelError, LabelManager
from autoseg.contracts.reading import FieldReader, PlansError, as_floats, as_ints

__all__ = [
    "DEFAULT_RESAMPLING",
    "PLANS_SCHEMA_VERSION",
    "Architecture",
    "ConfigurationPlan",
    "Plans",
    "PlansError",
]  # Architecture, PlansError and DEFAULT_RESAMPLING are re-exported from their own modules

PLANS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ConfigurationPlan:
    """One configuration (``2d``, ``3d_fullres``, ``3d_lowres``, ``3d_cascade_fullres``), inheritance done.

    Attributes:
        spacing: target spacing in the transposed axis order; the 2d configuration has one value
            fewer (its z axis stays at each case's own spacing).
        normalization_schemes / use_mask_for_norm: one per channel.
        preprocessing: extra preprocessing steps (``denoise``, histogram standardisation), as planned.
        previous_stage / next_stage: the cascade's links (``3d_lowres`` -> ``3d_cascade_fullres``).
    """

    name: str
    data_identifier: str
    spacing: tuple[float, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    normalization_schemes: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    architecture: Architecture
    batch_dice: bool = False
    median_image_size_in_voxels: tuple[float, ...] = ()
    resampling: Resampling = field(default_factory=Resampling)
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    previous_stage: str | None = None
    next_stage: str | None = None

    @classmethod
    def _read(cls, name: str, data: Mapping[str, Any], where: str, problems: list[str]) -> ConfigurationPlan:
        r = FieldReader(data, where, problems)
        schemes = r.get("normalization_schemes", list, convert=lambda v: tuple(str(s).lower() for s in v))
        arch = r.get("architecture", dict)
        res = r.get("resampling", dict, {})
        return cls(
            name=name,
            data_identifier=r.get("data_identifier", str, name),
            spacing=r.get("spacing", list, convert=as_floats),
            patch_size=r.get("patch_size", list, convert=as_ints),
            batch_size=r.get("batch_size", int),
            normalization_schemes=schemes,
            use_mask_for_norm=r.get(
                "use_mask_for_norm", list, (False,) * len(schemes or ()), lambda v: tuple(bool(x) for x in v)
            ),
            architecture=Architecture.read(arch, f"{where}.architecture", problems) if arch else None,  # type: ignore[arg-type]
            batch_dice=r.get("batch_dice", bool, False),
            median_image_size_in_voxels=r.get("median_image_size_in_voxels", list, (), as_floats),
            resampling=Resampling.read(res, f"{where}.resampling", problems),
            preprocessing=dict(r.get("preprocessing", dict, {})),
            previous_stage=r.get("previous_stage", str, None),
            next_stage=r.get("next_stage", str, None),
        )

    @property
    def num_channels(self) -> int:
        return len(self.normalization_schemes)

    @property
    def mirror_axes(self) -> tuple[int, ...]:
        """The axes mirrored by augmentation and test-time augmentation: all of the patch's."""
        return tuple(range(len(self.patch_size)))


@dataclass(frozen=True)
class Plans:
    """plans.json, read and validated (module docstring); build with :meth:`load` or :meth:`from_dict`.

    Attributes:
        transpose_forward / transpose_backward: the axis order of the preprocessed arrays.
        channel_names: ``channel index -> name`` (``{0: "MRI"}``).
        labels: the :class:`~autoseg.contracts.labels.LabelManager` of the dataset.
        configurations: every configuration by name, inheritance resolved.
        planned: the configurations with a plan of their own (not the cascade entry).
        foreground_intensities: ``channel -> {mean, std, percentile_00_5, ...}`` of the labelled voxels.
        histogram_landmarks: ``channel -> landmarks`` of the ``histogram`` normalisation (empty unless used).
        nonfinite_replacement: the value NaN/inf intensities were replaced with (``plan --allow-nonfinite``),
            or None (they were refused).
        reasons: why the planner decided what it decided (``autoseg plan --explain``), stored when
            planning; empty for plans written before autoseg stored them.
        raw: the file's content, for writing it beside a model (read nothing from it).
    """

    dataset_name: str
    plans_name: str
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...] | None
    channel_names: Mapping[int, str]
    labels: LabelManager
    configurations: Mapping[str, ConfigurationPlan]
    planned: tuple[str, ...]
    foreground_intensities: Mapping[str, Mapping[str, float]]
    original_median_spacing: tuple[float, ...] = ()
    original_median_shape: tuple[int, ...] = ()
    overrides: tuple[str, ...] = ()
    planner: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: Mapping[str, Any] | None = None
    histogram_landmarks: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    nonfinite_replacement: float | None = None
    reasons: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- reading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Plans:
        """Read and validate a plans.json (the preprocessed one, or the copy beside a model).

        Raises:
            PlansError: missing, not JSON, another schema version (with what to do), or inconsistent.
        """
        path = Path(path)
        if not path.is_file():
            raise PlansError(f"{path}: not found. Run `autoseg plan DATASET` first.")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise PlansError(f"{path}: not valid JSON ({err}). Run `autoseg plan DATASET` again.") from err
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "plans") -> Plans:
        """Validate parsed plans (schema version, required fields, types); every problem listed."""
        _check_schema(data, source)
        problems: list[str] = []
        r = FieldReader(data, "plans", problems)
        configs_raw = r.get("configurations", dict, {})
        configurations, planned = _configurations(configs_raw, problems)
        labels = LabelManager(())  # replaced below; kept empty when the labels are refused
        try:
            labels = LabelManager.from_labels(
                r.get("labels", dict, {}), data.get("regions_class_order"), source=f"{source}: labels"
            )
        except LabelError as err:
            problems.append(str(err))
        plans = cls(
            dataset_name=r.get("dataset_name", str),
            plans_name=r.get("plans_name", str),
            transpose_forward=r.get("transpose_forward", list, convert=as_ints),
            transpose_backward=r.get("transpose_backward", (list, type(None)), None, _maybe_ints),
            channel_names=r.get("channel_names", dict, {}, lambda v: {int(k): str(n) for k, n in v.items()}),
            labels=labels,
            configurations=configurations,
            planned=planned,
            foreground_intensities=r.get("foreground_intensity_properties_per_channel", dict, {}),
            original_median_spacing=r.get("original_median_spacing_after_transp", list, (), as_floats),
            original_median_shape=r.get("original_median_shape_after_transp", list, (), as_ints),
            overrides=r.get("overrides", list, (), lambda v: tuple(str(x) for x in v)),
            planner=r.get("planner", dict, {}),
            fingerprint=r.get("fingerprint", dict, None),
            histogram_landmarks=r.get(
                "histogram_landmarks", dict, {}, lambda v: {str(k): as_floats(x) for k, x in v.items()}
            ),
            nonfinite_replacement=_replacement(r.get("nonfinite_intensities", dict, {}), problems),
            reasons=r.get("reasons", list, (), lambda v: tuple(str(x) for x in v)),
            raw=dict(data),
        )
        problems += plans._consistency()
        if problems:
            raise PlansError(f"{source} is inconsistent:\n  " + "\n  ".join(problems))
        return plans

    def _consistency(self) -> list[str]:
        problems = []
        fwd = self.transpose_forward or ()
        if sorted(fwd) != list(range(len(fwd))):
            problems.append(f"transpose_forward {list(fwd)} is not a permutation")
        elif self.transpose_backward is not None and [fwd[a] for a in self.transpose_backward] != sorted(fwd):
            problems.append(
                f"transpose_backward {list(self.transpose_backward)} is not the inverse of {list(fwd)}"
            )
        for conf in self.configurations.values():
            n = len(conf.normalization_schemes or ())
            if self.channel_names and n != len(self.channel_names):
                problems.append(
                    f"{conf.name}: {n} normalization scheme(s) for {len(self.channel_names)} channel(s)"
                )
            if len(conf.use_mask_for_norm or ()) != n:
                problems.append(f"{conf.name}: use_mask_for_norm needs {n} value(s)")
            for c, scheme in enumerate(conf.normalization_schemes or ()):
                if scheme == "histogram" and str(c) not in self.histogram_landmarks:
                    problems.append(
                        f"{conf.name}: channel {c} uses 'histogram' normalization but histogram_landmarks "
                        "has none for it; plan again with preprocessing.normalization=histogram"
                    )
        return problems

    # -- questions -------------------------------------------------------------------------------
    @property
    def num_channels(self) -> int:
        """Image channels (modalities) a case has."""
        return len(self.channel_names)

    @property
    def case_names(self) -> tuple[str, ...]:
        """The training cases the plans were made from (from the fingerprint)."""
        cases = (self.fingerprint or {}).get("cases") or []
        return tuple(str(c["name"]) for c in cases)

    def intensity_properties(self) -> dict[str, dict[str, Any]]:
        """Per channel what normalisation needs: the foreground statistics (``ct``) and the
        histogram landmarks (``histogram``)."""
        channels = set(self.foreground_intensities) | set(self.histogram_landmarks)
        return {
            c: {
                **dict(self.foreground_intensities.get(c, {})),
                **(
                    {"histogram_landmarks": list(self.histogram_landmarks[c])}
                    if c in self.histogram_landmarks
                    else {}
                ),
            }
            for c in channels
        }

    def configuration(self, name: str) -> ConfigurationPlan:
        """The configuration ``name``; KeyError listing the planned ones otherwise."""
        if name not in self.configurations:
            raise KeyError(
                f"configuration {name!r} is not in the plans {self.plans_name!r} "
                f"(planned: {', '.join(self.configurations)})"
            )
        return self.configurations[name]

    def with_patch_size(self, configuration: str, patch_size: Sequence[int], reason: str) -> Plans:
        """These plans with another patch for ``configuration``, recorded in ``overrides`` with ``reason``.

        A trainer's ``patch_size`` goes into the plans the fold is trained with (and the copy beside
        the model), so that prediction reads the patch from the plans, never from a checkpoint.
        """
        conf = self.configuration(configuration)
        patch = [int(p) for p in patch_size]
        if tuple(patch) == conf.patch_size:
            return self
        if len(patch) != len(conf.patch_size) or min(patch) < 1:
            raise PlansError(
                f"{reason}: patch_size {patch} does not fit {configuration} "
                f"(its plan's patch is {list(conf.patch_size)}: {len(conf.patch_size)} positive sizes)"
            )
        raw = copy.deepcopy(dict(self.raw))
        raw["configurations"][configuration]["patch_size"] = patch
        raw["overrides"] = [*raw.get("overrides", []), f"{configuration}.patch_size={patch} ({reason})"]
        return Plans.from_dict(raw, source=f"plans {self.plans_name!r} with {reason}")

    def to_dict(self, with_fingerprint: bool = True) -> dict[str, Any]:
        """The file's content (what :meth:`load` read), for a copy beside a model."""
        return {k: v for k, v in self.raw.items() if with_fingerprint or k != "fingerprint"}


def _replacement(record: Mapping[str, Any], problems: list[str]) -> float | None:
    value = record.get("replaced_with")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"plans.nonfinite_intensities.replaced_with: expected a number, got {value!r}")
        return None
    return float(value)


def _maybe_ints(v: Any) -> tuple[int, ...] | None:
    return None if v is None else as_ints(v)


def _check_schema(data: Mapping[str, Any], source: str) -> None:
    if not isinstance(data, Mapping) or data.get("kind", "plans") != "plans":
        kind = data.get("kind") if isinstance(data, Mapping) else type(data).__name__
        raise PlansError(f"{source}: not a plans file (kind={kind!r}); give the plans.json of `autoseg plan`")
    version = data.get("schema_version")
    if version == PLANS_SCHEMA_VERSION:
        return
    if isinstance(version, int) and version < PLANS_SCHEMA_VERSION:
        raise PlansError(
            f"{source}: plans of schema_version {version}, written by an older autoseg; this one reads "
            f"schema_version {PLANS_SCHEMA_VERSION}. Run `autoseg plan DATASET` again to rewrite them "
            "(preprocessed cases are redone only where the plan changed)."
        )
    if isinstance(version, int):
        raise PlansError(
            f"{source}: plans of schema_version {version}, written by a newer autoseg; this one reads "
            f"schema_version {PLANS_SCHEMA_VERSION}. Upgrade autoseg (pip install -U autoseg), or plan "
            "again with this version."
        )
    raise PlansError(f"{source}: schema_version is {version!r}, not an integer; run `autoseg plan` again")


def _configurations(
    raw: Mapping[str, Any], problems: list[str]
) -> tuple[dict[str, ConfigurationPlan], tuple[str, ...]]:
    configs: dict[str, ConfigurationPlan] = {}
    planned = tuple(n for n, c in raw.items() if isinstance(c, Mapping) and "inherits_from" not in c)
    for name, conf in raw.items():
        if not isinstance(conf, Mapping):
            problems.append(f"configurations.{name}: expected an object, got {conf!r}")
            continue
        merged, seen = dict(conf), {name}
        while "inherits_from" in merged:
            parent = merged.pop("inherits_from")
            if parent in seen or not isinstance(raw.get(parent), Mapping):
                problems.append(f"configurations.{name}: cannot inherit from {parent!r}")
                break
            seen.add(parent)
            parent_conf = {k: v for k, v in raw[parent].items() if k != "next_stage"}
            merged = {**parent_conf, **merged}
        else:
            configs[name] = ConfigurationPlan._read(name, merged, f"configurations.{name}", problems)
    return configs, planned
