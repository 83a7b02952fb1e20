"""Defaults in one place: every conf/*.yaml loads into its frozen dataclass, and each group's
default.yaml holds exactly the dataclass's defaults (so neither can drift from the other)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from autoseg.commands.config import compose
from autoseg.data.augment import AugmentConfig
from autoseg.planning.presets import PlannerConfig
from autoseg.preprocessing.steps import PreprocessingChoice
from autoseg.sweep.slurm import SlurmConfig
from autoseg.training.config import TrainerConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def _group(group: str, name: str) -> dict[str, Any]:
    cfg = compose([f"{group}={name}"])
    return OmegaConf.to_container(cfg[group], resolve=True)  # type: ignore[return-value]


def _build(group: str, data: dict[str, Any]) -> Any:
    if group == "trainer":
        return TrainerConfig.from_mapping(data, _group("augment", "default"))
    if group == "augment":
        return TrainerConfig.from_mapping({}, data).augment
    if group == "planner":
        return PlannerConfig.from_mapping(data)
    if group == "launcher":  # launcher/slurm.yaml: the SLURM settings (its name picks the launcher)
        return SlurmConfig.from_mapping({k: v for k, v in data.items() if k != "name"})
    return PreprocessingChoice.from_mapping(data)


DEFAULTS = {
    "trainer": TrainerConfig(),
    "augment": AugmentConfig(),
    "planner": PlannerConfig(),
    "preprocessing": PreprocessingChoice(),
    "launcher": SlurmConfig(),
}
#: Presets whose dataclass default is another file's name than default.yaml.
DEFAULT_NAMED = {("launcher", "slurm")}
PRESETS = sorted(
    (p.parent.name, p.stem)
    for g in DEFAULTS
    for p in (CONF / g).glob("*.yaml")
    if (g, p.stem) != ("launcher", "local")  # the local queue has nothing to set (parallel, device: CLI)
)


def test_every_group_with_a_dataclass_is_covered() -> None:
    groups = {p.name for p in CONF.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert groups - set(DEFAULTS) == {"paths"}  # paths: environment variables, no defaults of their own
    assert len(PRESETS) >= 10


@pytest.mark.parametrize(("group", "name"), PRESETS, ids=[f"{g}/{n}" for g, n in PRESETS])
def test_each_yaml_loads_into_its_dataclass(group: str, name: str) -> None:
    built = _build(group, _group(group, name))
    assert type(built) is type(DEFAULTS[group])
    if name == "default" or (group, name) in DEFAULT_NAMED:  # the YAML writes out the defaults
        assert built == DEFAULTS[group]
    else:
        assert built != DEFAULTS[group]  # a preset that changes nothing is a stale copy
