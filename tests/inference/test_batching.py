"""Forward batches: measured on the CPU, halved on running out of memory, results unchanged."""

from __future__ import annotations

import torch
from torch import nn

from autoseg.inference.batching import BatchSizer, is_out_of_memory
from autoseg.inference.sliding_window import predict_sliding_window


class SmallMemoryNet(nn.Module):
    """A 3x3x3 conv that 'runs out of memory' on more than ``limit`` inputs per pass; records batches."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(1, 2, 3, padding=1)
        self.limit, self.batches = limit, []  # type: list[int]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            raise RuntimeError(f"CUDA out of memory. Tried to allocate {x.shape[0]} tiles")
        self.batches.append(x.shape[0])
        return self.conv(x)


def _image() -> torch.Tensor:
    return torch.randn(1, 30, 20, 20, generator=torch.Generator().manual_seed(1))


def test_measured_batch_gives_the_one_by_one_result() -> None:
    net = SmallMemoryNet(limit=100)
    reference = predict_sliding_window(net, _image(), (16, 16, 16), 2, mirror_axes=(0, 1, 2), batch_size=1)
    net.batches.clear()
    sizer = BatchSizer(probe_items=8)
    measured = predict_sliding_window(net, _image(), (16, 16, 16), 2, mirror_axes=(0, 1, 2), batch_size=sizer)
    torch.testing.assert_close(measured, reference, atol=1e-5, rtol=1e-5)
    # probes: 8 single passes, then one pass of 8; then the chosen size for the rest
    assert net.batches[:9] == [1] * 8 + [8]
    assert sizer.chosen in (1, 8) and "measured on the CPU" in sizer.reason
    assert set(net.batches[9:]) <= {sizer.chosen}
    assert sum(net.batches) == 12 * 8  # 3 x 2 x 2 tiles, 8 mirrored copies each


def test_out_of_memory_halves_the_batch_and_redoes_it() -> None:
    net = SmallMemoryNet(limit=3)
    reference = predict_sliding_window(net, _image(), (16, 16, 16), 2, mirror_axes=(0, 1), batch_size=1)
    net.batches.clear()
    sizer = BatchSizer(fixed=8)
    out = predict_sliding_window(net, _image(), (16, 16, 16), 2, mirror_axes=(0, 1), batch_size=sizer)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    assert sizer.chosen == 2 and "out of memory at 4" in sizer.reason
    assert max(net.batches) <= 3 and sum(net.batches) == 12 * 4


def test_other_errors_are_not_taken_for_out_of_memory() -> None:
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


class FakeMemory:
    """Stands in for CudaMemory: 100 MiB per input, 1 GiB free; counts the measurements."""

    def __init__(self) -> None:
        self.calls = 0

    def start(self) -> int:
        self.calls += 1
        return 50 * 2**20

    def peak(self) -> int:
        return 150 * 2**20

    def free(self) -> int:
        return 2**30


def test_gpu_sizing_fits_the_measured_memory_of_one_input() -> None:
    """The GPU code path on the CPU: one input measured, then as many as fit in 80 % of the free memory."""
    net = SmallMemoryNet(limit=100)
    reference = predict_sliding_window(net, _image(), (16, 16, 16), 2, mirror_axes=(0, 1, 2), batch_size=1)
    net.batches.clear()
    memory = FakeMemory()
    sizer = BatchSizer(max_items=64, memory=memory)
    out = predict_sliding_window(net, _image(), (16, 16, 16), 2, mirror_axes=(0, 1, 2), batch_size=sizer)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    assert sizer.chosen == 8 and memory.calls == 1  # int(0.8 * 1024 / 100)
    assert "100 MiB per item, 1.0 GiB free" in sizer.reason
    assert net.batches[0] == 1 and max(net.batches) == 8 and sum(net.batches) == 12 * 8
