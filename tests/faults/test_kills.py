"""SIGKILL `autoseg plan`, `train` and `predict` at chosen points and rerun: as if never killed.

A few kill points here (CI); ``benchmarks/bench_faults.py --long`` tries many seeded ones.
"""

from __future__ import annotations

import pytest

# (stage, kill point): the process kills itself the N-th time it reaches the point
POINTS = [
    ("plan", "write:2"),  # plans.json written, not yet renamed
    ("plan", "case:3"),  # preprocessing, the third case
    ("train", "iteration:5"),  # mid-epoch 1 (3 iterations per epoch): resumes from epoch 0
    ("train", "write:7"),  # epoch 1's checkpoint_latest.pt written, not yet renamed
    ("predict", "write:1"),  # the first mask written, not yet renamed (its temporary file is cleaned up)
]


@pytest.mark.parametrize(("stage", "point"), POINTS)
def test_killed_stage_reruns_to_the_uninterrupted_result(scenario, stage, point):
    scn, reference = scenario
    tag = f"{stage}_{point.replace(':', '_')}"
    result = getattr(scn, f"kill_{stage}")(tag, point, reference[stage])
    assert result.killed, f"{stage} was not killed at {point}"
    assert result.identical, f"{stage} killed at {point} ({result.where}) differs after the rerun"
    if point == "write:7":
        assert result.where.endswith("checkpoint_latest.pt")
