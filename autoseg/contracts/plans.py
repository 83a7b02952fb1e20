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

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoseg.contracts.labels import LabelError, LabelManager

__all__ = [
    "DEFAULT_RESAMPLING",
    "PLANS_SCHEMA_VERSION",
    "Architecture",
    "ConfigurationPlan",
    "Plans",
    "PlansError",
]

PLANS_SCHEMA_VERSION = 1
#: Resampling orders and the anisotropy threshold, as nnU-Net's (filled in for missing keys).
DEFAULT_RESAMPLING: dict[str, float | int] = {
    "data_order": 3,
    "data_order_z": 0,
    "seg_order": 1,
    "seg_order_z": 0,
    "probabilities_order": 1,
    "separate_z_anisotropy_threshold": 3.0,
}


class PlansError(ValueError):
    """plans.json is missing, of another schema version, or inconsistent (every problem listed)."""


class _Reader:
    """Collects every problem of one mapping instead of stopping at the first."""

    def __init__(self, data: Mapping[str, Any], where: str, problems: list[str]) -> None:
        self.data, self.where, self.problems = data, where, problems

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., convert: Any = None) -> Any:
        if key not in self.data:
            if default is ...:
                self.problems.append(f"{self.where}: missing {key!r}")
            return None if default is ... else default
        value = self.data[key]
        ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
        if not ok:
            self.problems.append(f"{self.where}.{key}: expected {_kind_name(kind)}, got {value!r}")
            return None if default is ... else default
        try:
            return convert(value) if convert is not None else value
        except (TypeError, ValueError) as err:
            self.problems.append(f"{self.where}.{key}: {value!r} is malformed ({err})")
            return None if default is ... else default


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))


def _ints(v: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in v)


def _floats(v: Any) -> tuple[float, ...]:
    return tuple(float(x) for x in v)


def _int_rows(v: Any) -> tuple[tuple[int, ...], ...]:
    return tuple(_ints(row) for row in v)


@dataclass(frozen=True)
class Architecture:
    """The network a configuration trains (``architecture`` in plans.json and in checkpoints)."""

    network: str
    n_stages: int
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    blocks_per_stage_encoder: tuple[int, ...] = (2,)
    blocks_per_stage_decoder: tuple[int, ...] = (2,)
    norm: str = "instance"
    nonlinearity: str = "leakyrelu"
    deep_supervision: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "architecture") -> Architecture:
        problems: list[str] = []
        arch = cls._read(data, where, problems)
        if problems:
            raise PlansError("\n  ".join(["architecture is inconsistent:", *problems]))
        assert arch is not None
        return arch

    @classmethod
    def _read(cls, data: Mapping[str, Any], where: str, problems: list[str]) -> Architecture | None:
        r = _Reader(data, where, problems)
        before = len(problems)
        kernels = r.get("kernel_sizes", list, convert=_int_rows)
        strides = r.get("strides", list, convert=_int_rows)
        arch = dict(
            network=r.get("network", str, "plain"),
            n_stages=r.get("n_stages", int, len(kernels) if kernels else 0),
            features_per_stage=r.get("features_per_stage", list, convert=_ints),
            kernel_sizes=kernels,
            strides=strides,
            blocks_per_stage_encoder=r.get("blocks_per_stage_encoder", list, (2,), _ints),
            blocks_per_stage_decoder=r.get("blocks_per_stage_decoder", list, (2,), _ints),
            norm=r.get("norm", str, "instance"),
            nonlinearity=r.get("nonlinearity", str, "leakyrelu"),
            deep_supervision=r.get("deep_supervision", bool, True),
        )
        if len(problems) > before:
            return None
        lengths = {k: len(arch[k]) for k in ("features_per_stage", "kernel_sizes", "strides")}  # type: ignore[arg-type]
        if len(set(lengths.values())) != 1 or arch["n_stages"] != lengths["kernel_sizes"]:
            problems.append(f"{where}: n_stages={arch['n_stages']} but {lengths}")
            return None
        return cls(**arch)  # type: ignore[arg-type]

    @property
    def spatial_dims(self) -> int:
        return len(self.kernel_sizes[0])

    def to_dict(self) -> dict[str, Any]:
        """As plans.json and checkpoints write it."""
        return {
            "network": self.network,
            "n_stages": self.n_stages,
            "features_per_stage": list(self.features_per_stage),
            "kernel_sizes": [list(k) for k in self.kernel_sizes],
            "strides": [list(s) for s in self.strides],
            "blocks_per_stage_encoder": list(self.blocks_per_stage_encoder),
            "blocks_per_stage_decoder": list(self.blocks_per_stage_decoder),
            "norm": self.norm,
            "nonlinearity": self.nonlinearity,
            "deep_supervision": self.deep_supervision,
        }


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
    resampling: Mapping[str, float | int] = field(default_factory=lambda: dict(DEFAULT_RESAMPLING))
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    previous_stage: str | None = None
    next_stage: str | None = None

    @classmethod
    def _read(cls, name: str, data: Mapping[str, Any], where: str, problems: list[str]) -> ConfigurationPlan:
        r = _Reader(data, where, problems)
        schemes = r.get("normalization_schemes", list, convert=lambda v: tuple(str(s).lower() for s in v))
        arch = r.get("architecture", dict)
        res = r.get("resampling", dict, {})
        return cls(
            name=name,
            data_identifier=r.get("data_identifier", str, name),
            spacing=r.get("spacing", list, convert=_floats),
            patch_size=r.get("patch_size", list, convert=_ints),
            batch_size=r.get("batch_size", int),
            normalization_schemes=schemes,
            use_mask_for_norm=r.get(
                "use_mask_for_norm", list, (False,) * len(schemes or ()), lambda v: tuple(bool(x) for x in v)
            ),
            architecture=Architecture._read(arch, f"{where}.architecture", problems) if arch else None,  # type: ignore[arg-type]
            batch_dice=r.get("batch_dice", bool, False),
            median_image_size_in_voxels=r.get("median_image_size_in_voxels", list, (), _floats),
            resampling={**DEFAULT_RESAMPLING, **res},
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
        r = _Reader(data, "plans", problems)
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
            transpose_forward=r.get("transpose_forward", list, convert=_ints),
            transpose_backward=r.get("transpose_backward", (list, type(None)), None, _maybe_ints),
            channel_names=r.get("channel_names", dict, {}, lambda v: {int(k): str(n) for k, n in v.items()}),
            labels=labels,
            configurations=configurations,
            planned=planned,
            foreground_intensities=r.get("foreground_intensity_properties_per_channel", dict, {}),
            original_median_spacing=r.get("original_median_spacing_after_transp", list, (), _floats),
            original_median_shape=r.get("original_median_shape_after_transp", list, (), _ints),
            overrides=r.get("overrides", list, (), lambda v: tuple(str(x) for x in v)),
            planner=r.get("planner", dict, {}),
            fingerprint=r.get("fingerprint", dict, None),
            histogram_landmarks=r.get(
                "histogram_landmarks", dict, {}, lambda v: {str(k): _floats(x) for k, x in v.items()}
            ),
            nonfinite_replacement=_replacement(r.get("nonfinite_intensities", dict, {}), problems),
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
    return None if v is None else _ints(v)


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
