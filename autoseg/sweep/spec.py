"""The sweep file (``autoseg sweep SWEEP.yaml``): what to train, read into frozen dataclasses.

Example (every key but ``datasets`` and ``configurations`` is optional)::

    name: baseline-vs-resenc        # the sweep's folder: <results>/sweeps/<name>
    datasets: [Dataset004_Hippocampus, /data/raw/Dataset027_ACDC]
    configurations: [3d_fullres, 2d]
    folds: all                       # or a list, e.g. [0, 1]; find-best needs every fold
    num_folds: 5
    seeds: [12345]                   # trainer.seed of each row
    presets:                         # name -> planner preset, trainer preset, extra overrides
      default: {}
      resenc-m: {planner: resenc-m}
      short: {trainer: quick, overrides: [trainer.epochs=50]}
    baseline: default/3d_fullres     # the row every other row is tested against
    overrides: []                    # hydra overrides of every training
    plan_overrides: []               # overrides of every `autoseg plan` (3d_fullres.batch_size=4)
    launcher: {name: slurm, partition: gpu}   # or {name: local, parallel: 2, device: cpu}

A row of the leaderboard is (preset, configuration[, seed]): ``default/3d_fullres``, with
``/seed<N>`` appended when the sweep has several seeds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Preset", "Row", "SweepSpec", "read_sweep"]

SWEEP_KEYS = (
    "name", "datasets", "configurations", "folds", "num_folds", "seeds", "presets", "baseline",
    "overrides", "plan_overrides", "launcher",
)  # fmt: skip
PRESET_KEYS = ("planner", "trainer", "overrides")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Preset:
    """A planner preset, a trainer preset and overrides; its plans are named after its planner."""

    name: str
    planner: str = "default"
    trainer: str = "default"
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    """One row of the leaderboard: a preset's configuration trained with one seed."""

    preset: Preset
    configuration: str
    seed: int
    name: str

    @property
    def run_name(self) -> str:
        """The folder of this row's results root inside the sweep folder (shared by its configurations)."""
        return f"{self.preset.name}-seed{self.seed}"


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file."""

    path: Path
    name: str
    datasets: tuple[str, ...]
    configurations: tuple[str, ...]
    folds: tuple[int, ...]
    num_folds: int
    seeds: tuple[int, ...]
    presets: tuple[Preset, ...]
    baseline: str
    overrides: tuple[str, ...] = ()
    plan_overrides: tuple[str, ...] = ()
    launcher: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> list[Row]:
        """Every (preset, configuration, seed), in the file's order."""
        several = len(self.seeds) > 1
        return [
            Row(p, c, s, f"{p.name}/{c}" + (f"/seed{s}" if several else ""))
            for p in self.presets
            for c in self.configurations
            for s in self.seeds
        ]

    @property
    def all_folds(self) -> bool:
        return self.folds == tuple(range(self.num_folds))


def _strings(value: Any, key: str, problems: list[str], allow_empty: bool = True) -> tuple[str, ...]:
    if (
        isinstance(value, str)
        or not isinstance(value, list | tuple)
        or not all(isinstance(v, str) for v in value)
    ):
        problems.append(f"{key}: give a list of strings, got {value!r}")
        return ()
    if not value and not allow_empty:
        problems.append(f"{key}: give at least one")
    return tuple(value)


def _presets(value: Any, problems: list[str]) -> tuple[Preset, ...]:
    if value is None:
        return (Preset("default"),)
    if not isinstance(value, Mapping) or not value:
        problems.append(f"presets: give a mapping name -> {{planner, trainer, overrides}}, got {value!r}")
        return ()
    presets = []
    for name, body in value.items():
        body = body or {}
        if not _NAME.match(str(name)):
            problems.append(f"presets.{name}: a name of letters, digits, '.', '_' and '-'")
        if not isinstance(body, Mapping):
            problems.append(f"presets.{name}: give a mapping with {', '.join(PRESET_KEYS)}, got {body!r}")
            continue
        unknown = [k for k in body if k not in PRESET_KEYS]
        if unknown:
            problems.append(f"presets.{name}: unknown keys {unknown} (valid: {', '.join(PRESET_KEYS)})")
        overrides = _strings(body.get("overrides", []), f"presets.{name}.overrides", problems)
        planner, trainer = str(body.get("planner", "default")), str(body.get("trainer", "default"))
        presets.append(Preset(str(name), planner, trainer, overrides))
    return tuple(presets)


def _ints(value: Any, key: str, problems: list[str]) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        problems.append(f"{key}: give a non-empty list of whole numbers, got {value!r}")
        return ()
    return tuple(value)


def read_sweep(path: Path) -> SweepSpec:
    """Read and check ``path``; every problem is listed at once.

    Raises:
        ValueError: ``"<path>: <problem>; <problem>"``.
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the sweep file: {err}") from err
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: the sweep file must be a YAML mapping (see autoseg sweep --help)")
    problems = [f"unknown key {k!r} (valid: {', '.join(SWEEP_KEYS)})" for k in data if k not in SWEEP_KEYS]
    name = str(data.get("name", Path(path).stem))
    if not _NAME.match(name):
        problems.append(f"name {name!r}: use letters, digits, '.', '_' and '-'")
    datasets = _strings(data.get("datasets"), "datasets", problems, allow_empty=False)
    configurations = _strings(data.get("configurations"), "configurations", problems, allow_empty=False)
    num_folds = data.get("num_folds", 5)
    if not isinstance(num_folds, int) or num_folds < 2:
        problems.append(f"num_folds: give a whole number >= 2, got {num_folds!r}")
        num_folds = 5
    folds_value = data.get("folds", "all")
    folds = tuple(range(num_folds)) if folds_value == "all" else _ints(folds_value, "folds", problems)
    bad = [f for f in folds if not 0 <= f < num_folds]
    if bad:
        problems.append(f"folds {bad}: outside 0..{num_folds - 1} (num_folds {num_folds})")
    seeds = _ints(data.get("seeds", [12345]), "seeds", problems)
    presets = _presets(data.get("presets"), problems)
    launcher = data.get("launcher", {"name": "local"})
    if not isinstance(launcher, Mapping) or launcher.get("name", "local") not in ("local", "slurm"):
        problems.append(f"launcher: give a mapping with name: local or name: slurm, got {launcher!r}")
        launcher = {"name": "local"}
    spec = SweepSpec(
        path=Path(path),
        name=name,
        datasets=datasets,
        configurations=configurations,
        folds=folds,
        num_folds=num_folds,
        seeds=seeds,
        presets=presets,
        baseline=str(data.get("baseline", "")),
        overrides=_strings(data.get("overrides", []), "overrides", problems),
        plan_overrides=_strings(data.get("plan_overrides", []), "plan_overrides", problems),
        launcher={"name": "local", **launcher},
    )
    rows = [r.name for r in spec.rows]
    if rows and spec.baseline not in rows:
        problems.append(f"baseline {spec.baseline!r}: name one of the rows ({', '.join(rows)})")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return spec
