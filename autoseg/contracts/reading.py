"""Reading a JSON artifact into typed fields while collecting every problem, not only the first.

The contracts (plans, architecture, selection, case properties) read their JSON through
:class:`FieldReader`; each problem is ``"<where>.<key>: expected <kind>, got <value>"`` and the
contract raises one error listing all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ContractError", "FieldReader", "PlansError", "as_floats", "as_int_rows", "as_ints"]


class ContractError(ValueError):
    """An artifact is missing, of another schema version, or inconsistent (every problem listed).

    ``problems`` holds the problems one by one (the message lists them all).
    """

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class PlansError(ContractError):
    """plans.json (or a checkpoint's architecture) is missing, of another schema version, or
    inconsistent (every problem listed)."""


class FieldReader:
    """Collects every problem of one mapping instead of stopping at the first.

    Example:
        >>> problems: list[str] = []
        >>> r = FieldReader({"batch_size": "2"}, "plans", problems)
        >>> r.get("batch_size", int), problems
        (None, ["plans.batch_size: expected int, got '2'"])
    """

    def __init__(self, data: Mapping[str, Any], where: str, problems: list[str]) -> None:
        self.data, self.where, self.problems = data, where, problems

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., convert: Any = None) -> Any:
        """``data[key]`` checked against ``kind`` and converted; ``default`` (or a problem) when absent."""
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


def as_ints(v: Any) -> tuple[int, ...]:
    """A JSON list of integers as a tuple (TypeError/ValueError when it is not one)."""
    return tuple(int(x) for x in v)


def as_floats(v: Any) -> tuple[float, ...]:
    """A JSON list of numbers as a tuple of floats."""
    return tuple(float(x) for x in v)


def as_int_rows(v: Any) -> tuple[tuple[int, ...], ...]:
    """A JSON list of integer lists (kernel sizes, strides) as nested tuples."""
    return tuple(as_ints(row) for row in v)
