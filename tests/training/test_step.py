"""The optimisation step's CPU twins of the CUDA paths: bf16 autocast, fp16 + grad scaler,
torch.compile, and the guard against non-finite losses."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator

import pytest
import torch

from autoseg.training.config import TrainerConfig
from autoseg.training.loop import TrainingParts, train_epoch
from autoseg.training.setup import _mixed_precision
from autoseg.training.step import NonFiniteLossError
from autoseg.utils.device import cpu_native_bf16


class ScriptedLoss(torch.nn.Module):
    """Mean of the output (times ``factor``), or NaN at the calls listed in ``nan_at``."""

    def __init__(self, nan_at: set[int] = frozenset(), factor: float = 1.0) -> None:  # type: ignore[assignment]
        super().__init__()
        self.nan_at, self.factor, self.calls, self.dtypes = nan_at, factor, 0, []

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.dtypes.append(output.dtype)
        call, self.calls = self.calls, self.calls + 1
        loss = output.float().mean() * self.factor
        return loss * math.nan if call in self.nan_at else loss


def batches() -> Iterator[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    while True:
        yield {"image": torch.rand(2, 1, 6, 6, 6, generator=g), "target": torch.zeros(2, 1, 6, 6, 6)}


def tiny_parts(loss: torch.nn.Module, **kwargs) -> TrainingParts:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.LeakyReLU(), torch.nn.Conv3d(4, 2, 1)
    )
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    return TrainingParts(net, optimizer, loss, loss, batches(), batches(), [1], torch.device("cpu"), **kwargs)


def weights(parts: TrainingParts) -> list[torch.Tensor]:
    return [p.detach().clone() for p in parts.network.parameters()]


CFG = TrainerConfig(iterations_per_epoch=4, val_iterations=0, epochs=2)


def test_a_non_finite_loss_skips_the_step_and_is_counted():
    parts = tiny_parts(ScriptedLoss(nan_at={1, 2}), max_nonfinite_steps=3)
    record = train_epoch(parts, CFG, 0)
    assert record["skipped_steps"] == 2 and math.isfinite(record["train_loss"])
    assert record["peak_gpu_mem_gb"] is None and record["step_time"] > 0
    # the skipped steps left the weights alone: the same as a run that only took steps 0 and 3
    reference = tiny_parts(ScriptedLoss())
    source = batches()
    kept = [b for k, b in zip(range(4), source, strict=False) if k in {0, 3}]
    reference.train_batches = iter(kept)
    train_epoch(reference, TrainerConfig(iterations_per_epoch=2, val_iterations=0), 0)
    assert all(torch.equal(a, b) for a, b in zip(weights(parts), weights(reference), strict=True))


def test_too_many_non_finite_losses_in_a_row_stop_the_run_naming_epoch_and_iteration():
    parts = tiny_parts(ScriptedLoss(nan_at={3, 4, 5}), max_nonfinite_steps=3)
    train_epoch(parts, CFG, 0)  # iteration 3 of epoch 0 is the first of the run
    before = weights(parts)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, iteration 1: .* 3 steps in a row"):
        train_epoch(parts, CFG, 1)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(parts), strict=True))
    assert all(torch.isfinite(w).all() for w in weights(parts))


def test_cpu_amp_is_bf16_autocast_and_float16_brings_a_grad_scaler():
    cpu = torch.device("cpu")
    auto = (torch.bfloat16, False) if cpu_native_bf16() else (None, False)  # emulated bf16 is slower
    assert _mixed_precision(TrainerConfig(amp=True), cpu) == auto
    assert _mixed_precision(TrainerConfig(amp=True, amp_dtype="bfloat16"), cpu) == (torch.bfloat16, False)
    assert _mixed_precision(TrainerConfig(amp=True, amp_dtype="float16"), cpu) == (torch.float16, True)
    assert _mixed_precision(TrainerConfig(amp=False), cpu) == (None, False)
    loss = ScriptedLoss()
    train_epoch(tiny_parts(loss, autocast_dtype=torch.bfloat16), CFG, 0)
    assert loss.dtypes and all(d == torch.bfloat16 for d in loss.dtypes)  # the network ran under autocast


def test_fp16_grad_scaler_skips_overflowing_steps_and_backs_off():
    """The fp16 branch on the CPU: a finite loss whose scaled gradients overflow is not applied."""
    loss = ScriptedLoss(factor=1e35)  # finite in fp32, but x 65536 (the initial scale) it overflows
    parts = tiny_parts(loss, autocast_dtype=torch.float16, scaler=torch.amp.GradScaler("cpu"))
    before = weights(parts)
    record = train_epoch(parts, TrainerConfig(iterations_per_epoch=2, val_iterations=0), 0)
    assert all(d == torch.float16 for d in loss.dtypes)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(parts), strict=True))
    assert parts.scaler is not None and parts.scaler.get_scale() == 65536.0 / 4
    assert record["skipped_steps"] == 0  # the loss itself was finite: the scaler's business
    # with a sane loss the scaled steps are taken
    sane = tiny_parts(ScriptedLoss(), autocast_dtype=torch.float16, scaler=torch.amp.GradScaler("cpu"))
    before = weights(sane)
    train_epoch(sane, TrainerConfig(iterations_per_epoch=2, val_iterations=0), 0)
    assert not all(torch.equal(a, b) for a, b in zip(before, weights(sane), strict=True))


@pytest.mark.skipif(
    shutil.which("gcc") is None and shutil.which("cc") is None, reason="inductor needs a C compiler"
)
def test_compile_on_the_cpu_trains_like_eager():
    """torch.compile (inductor, C++ on the CPU) with bf16 autocast: a tiny network, two steps."""
    eager = tiny_parts(ScriptedLoss(), autocast_dtype=torch.bfloat16)
    compiled = tiny_parts(ScriptedLoss(), autocast_dtype=torch.bfloat16)
    compiled.network = torch.compile(compiled.network)  # type: ignore[assignment]
    cfg = TrainerConfig(iterations_per_epoch=2, val_iterations=0)
    a, b = train_epoch(eager, cfg, 0), train_epoch(compiled, cfg, 0)
    assert type(compiled.network).__name__ == "OptimizedModule"
    assert abs(a["train_loss"] - b["train_loss"]) < 1e-2
    for w_eager, w_compiled in zip(weights(eager), weights(compiled), strict=True):
        torch.testing.assert_close(w_eager, w_compiled, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni", False),  # AVX-512 without BF16
        ("flags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16", True),  # Sapphire Rapids
        ("Features\t: fp asimd sve bf16 i8mm", True),  # ARM (Graviton 3)
        ("processor\t: 0", False),  # no flags line
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\n{flags}\n")
    assert cpu_native_bf16(info) is native
