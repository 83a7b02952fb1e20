"""Filling frozen config dataclasses from (hydra) mappings, with helpful errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from autoseg.utils.lookup import closest

T = TypeVar("T")


def from_mapping(cls: type[T], data: Mapping[str, Any], what: str) -> T:
    """``cls(**data)`` with lists turned into tuples; an unknown key names the nearest valid one.

    Raises:
        ValueError: ``"<what>: unknown keys 'gpu_memory' (did you mean ['gpu_memory_gb'])"``.
    """
    valid = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in valid]
    if unknown:
        hints = [f"{k!r} (did you mean {[n for n in [closest(k, sorted(valid))] if n]})" for k in unknown]
        raise ValueError(f"{what}: unknown keys {', '.join(hints)}")
    return cls(**{k: tuple(v) if isinstance(v, list | tuple) else v for k, v in data.items()})
