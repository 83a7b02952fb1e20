from __future__ import annotations

import random

import numpy as np
import torch

from autoseg.training.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint


def test_round_trip_with_weights_only_and_rng_replay(tmp_path):
    net = torch.nn.Conv3d(1, 2, 3)
    states = rng_states()
    expected = (torch.rand(3), np.random.rand(2), random.random())
    path = save_checkpoint(tmp_path / "c.pt", {"network": net.state_dict(), "rng": states, "epoch": 4})
    loaded = load_checkpoint(path)  # weights_only=True inside
    assert loaded["epoch"] == 4
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded["network"].items())
    restore_rng_states(loaded["rng"])
    again = (torch.rand(3), np.random.rand(2), random.random())
    assert (
        torch.equal(expected[0], again[0])
        and np.array_equal(expected[1], again[1])
        and expected[2] == again[2]
    )
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind
