from __future__ import annotations

import random

import numpy as np
import pytest
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


def _replay() -> tuple[torch.Tensor, np.ndarray, float]:
    return torch.rand(3), np.random.rand(2), random.random()


def test_resume_reads_the_checkpoint_onto_the_cpu_whatever_the_device(tmp_path):
    """A run on another device (here ``meta``, the only non-CPU device type of a CPU-only machine)
    must get CPU RNG states: ``torch.set_rng_state`` refuses anything else (today's bug on CUDA)."""
    from autoseg.training.fold_io import resume_checkpoint
    from autoseg.training.setup import SINGLE_PROCESS, FoldSpec

    states = rng_states()
    expected = _replay()
    save_checkpoint(tmp_path / "checkpoint_latest.pt", {"rng": states, "network": {"w": torch.ones(2)}})
    spec = FoldSpec(tmp_path, {}, "3d_fullres", 0, (), (), tmp_path)
    checkpoint = resume_checkpoint(spec, torch.device("meta"), SINGLE_PROCESS)
    assert checkpoint["rng"]["torch"].device.type == "cpu"
    restore_rng_states(checkpoint["rng"])
    again = _replay()
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])


def test_rng_states_without_data_are_a_clear_error():
    states = rng_states()
    states["torch"] = states["torch"].to("meta")
    with pytest.raises(ValueError, match=r"meta device.*map_location='cpu'"):
        restore_rng_states(states)


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_restore_moves_a_cpu_checkpoint_to_the_networks_device(tmp_path):
    """Weights and optimiser state written on one device land on the device of the resumed network."""
    from autoseg.training.fold_io import restore_parts
    from autoseg.training.loop import TrainingParts

    torch.manual_seed(0)
    source = torch.nn.Conv3d(1, 2, 3)
    optimizer = torch.optim.SGD(source.parameters(), lr=0.1, momentum=0.9)
    source(torch.rand(1, 1, 4, 4, 4)).sum().backward()
    optimizer.step()
    states = rng_states()
    expected = _replay()
    path = save_checkpoint(
        tmp_path / "c.pt",
        {"network": source.state_dict(), "optimizer": optimizer.state_dict(), "scaler": None, "rng": states},
    )
    target = torch.nn.Conv3d(1, 2, 3, device="meta")
    target_optimizer = torch.optim.SGD(target.parameters(), lr=0.1, momentum=0.9)
    parts = TrainingParts(target, target_optimizer, None, None, iter(()), iter(()), [1], torch.device("meta"))  # type: ignore[arg-type]
    restore_parts(parts, load_checkpoint(path))
    buffers = [s["momentum_buffer"] for s in target_optimizer.state.values()]
    assert len(buffers) == 2 and all(b.device.type == "meta" for b in buffers)
    again = _replay()
    assert torch.equal(expected[0], again[0]) and expected[2] == again[2]
