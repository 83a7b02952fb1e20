"""One tiny synthetic dataset with uninterrupted plan, train and predict runs, shared by tests/faults/."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.driver import Scenario


@pytest.fixture(scope="session")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scenario, dict[str, Any]]:
    """The scenario (4 training cases of 16x24x24, 2 held out) and its reference snapshots.

    The reference model (``scenario.model()``, fold 0 of 3d_fullres, 2 x 3 iterations) also serves
    the stage-guard tests.
    """
    scn = Scenario.create(tmp_path_factory.mktemp("faults"))
    return scn, scn.references()
