"""Names to registered things, with "did you mean" for a typo: the one lookup every registry uses.

Example:
    >>> look_up({"plain": 1, "resenc": 2}, "plian", "network")
    Traceback (most recent call last):
    ...
    ValueError: unknown network 'plian'; did you mean 'plain'? (valid: plain, resenc)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

__all__ = ["closest", "look_up", "unknown_name"]

T = TypeVar("T")


def closest(name: str, valid: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The valid name nearest to ``name`` (difflib's ratio at least ``cutoff``), or None."""
    near = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=cutoff)
    return near[0] if near else None


def unknown_name(what: str, name: str, valid: Iterable[str], cutoff: float = 0.6) -> str:
    """``"unknown <what> 'x'; did you mean 'y'? (valid: a, b)"``: the message of a failed lookup."""
    names = sorted(str(v) for v in valid)
    near = closest(name, names, cutoff)
    hint = f"; did you mean {near!r}?" if near else ""
    return f"unknown {what} {name!r}{hint} (valid: {', '.join(names)})"


def look_up(table: Mapping[str, T], name: str, what: str) -> T:
    """``table[name]``; an unknown name is a ValueError naming the nearest valid one and all of them.

    Args:
        table: a registry (name -> builder, scheme, backend, ...).
        name: what the user asked for.
        what: the kind of thing, for the message (``"network"``, ``"normalization scheme"``).
    """
    if name in table:
        return table[name]
    raise ValueError(unknown_name(what, name, table))
