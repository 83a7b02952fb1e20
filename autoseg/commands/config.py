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
    from hydra.errors import ConfigCompositionException

    try:
        cfg = _hydra_compose(overrides)
    except ConfigCompositionException as err:
        unknown = unknown_override_keys(overrides)
        if unknown:
            raise OverrideKeyError("; ".join(unknown)) from err
        raise
    OmegaConf.resolve(cfg)
    return cfg


class OverrideKeyError(ValueError):
    """A ``key=value`` override names a key the config does not have."""


def _hydra_compose(overrides: Sequence[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="autoseg.conf", version_base=None):
        return hydra_compose(config_name="config", overrides=list(overrides))


def _flat_keys(cfg: Any, prefix: str = "") -> list[str]:
    keys = []
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        keys.append(name)
        if isinstance(value, DictConfig):
            keys += _flat_keys(value, name + ".")
    return keys


def unknown_override_keys(overrides: Sequence[str]) -> list[str]:
    """One message per override whose key the default config lacks, with the nearest valid key.

    Example:
        >>> print(unknown_override_keys(["trainer.epoch=5"])[0])  # doctest: +ELLIPSIS
        override 'trainer.epoch=5': the config has no key 'trainer.epoch'; did you mean 'trainer.epochs'? ...
    """
    import difflib

    known = _flat_keys(_hydra_compose([]))
    messages = []
    for item in overrides:
        key = item.split("=", 1)[0]
        if key.startswith(("+", "~")) or key in known:
            continue
        near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = (
            f"did you mean {near[0]!r}?"
            if near
            else f"valid top-level keys: {', '.join(k for k in known if '.' not in k)}"
        )
        messages.append(f"override {item!r}: the config has no key {key!r}; {hint} (prefix a new key with +)")
    return messages


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
