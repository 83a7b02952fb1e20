"""Hydra at the edge: compose conf/config.yaml with the user's overrides, resolve the paths.

Everything below the CLI receives plain values or frozen dataclasses built from this
config; nothing deeper reads environment variables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The resolved root config with hydra ``key=value`` overrides applied.

    Example:
        >>> cfg = compose(["planner=resenc-l", "paths.preprocessed=/tmp/pre"])
        >>> cfg.planner.name, cfg.paths.preprocessed
        ('resenc-l', '/tmp/pre')
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="autoseg.conf", version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


@dataclass(frozen=True)
class Paths:
    """The three roots, as nnU-Net users know them (any may be unset until a stage needs it)."""

    raw: Path | None
    preprocessed: Path | None
    results: Path | None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Paths:
        def one(value: Any) -> Path | None:
            return Path(str(value)).expanduser() if value not in (None, "") else None

        return cls(one(cfg.paths.raw), one(cfg.paths.preprocessed), one(cfg.paths.results))

    def require(self, which: str) -> Path:
        """The root ``which``, or a ValueError saying how to set it."""
        value = getattr(self, which)
        if value is None:
            env = f"AUTOSEG_{which.upper()}"
            raise ValueError(f"the {which} root is not set: export {env}=/path or pass paths.{which}=/path")
        return value


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The config as a JSON-able dict (for saving beside artifacts)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(data, dict):
        raise TypeError(f"expected a mapping config, got {type(data).__name__}")
    return {str(k): v for k, v in data.items()}
