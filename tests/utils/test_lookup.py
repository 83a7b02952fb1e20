"""One lookup for every registry: the registered thing, or the nearest name and all valid ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoseg.nets.factory import NETWORKS
from autoseg.preprocessing.normalize import get_normalizer
from autoseg.utils.lookup import closest, look_up, unknown_name

PACKAGE = Path(__file__).resolve().parents[2] / "autoseg"


def test_look_up_returns_the_registered_thing_or_names_the_nearest() -> None:
    table = {"zscore": 1, "ct": 2}
    assert look_up(table, "ct", "scheme") == 2
    with pytest.raises(
        ValueError, match=r"^unknown scheme 'zscroe'; did you mean 'zscore'\? \(valid: ct, zscore\)$"
    ):
        look_up(table, "zscroe", "scheme")
    assert unknown_name("scheme", "qqq", table) == "unknown scheme 'qqq' (valid: ct, zscore)"
    assert closest("resnc", NETWORKS) == "resenc" and closest("xyz", NETWORKS) is None


def test_registries_answer_through_it() -> None:
    with pytest.raises(ValueError, match=r"unknown normalization scheme 'zscor'; did you mean 'zscore'"):
        get_normalizer("zscor")


def test_difflib_is_used_in_one_place() -> None:
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "difflib" in p.read_text())
    assert users == ["utils/lookup.py"]
