"""Choosing the torch device from ``--device auto|cpu|cuda[:k]``, and what the CPU computes natively."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

import torch

__all__ = ["cpu_native_bf16", "pick_device"]

#: CPU flags (``/proc/cpuinfo``) of bf16 arithmetic in hardware: x86 AVX512-BF16 or AMX, ARM's BF16.
BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else CPU; ``cuda`` without a GPU is an error.

    Example:
        >>> pick_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
    return torch.device(name)


@cache
def cpu_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16, AMX or ARM BF16, from its flags).

    Without them oneDNN still runs bf16 autocast by converting every tensor, which measured 2-4x
    slower than float32 per training step on an AVX-512 CPU (benchmarks/RESULTS.md, issue 22), so
    ``trainer.amp_dtype=auto`` trains in float32 there. ``torch.ops.mkldnn._is_mkldnn_bf16_supported``
    answers True on such CPUs too (emulation), which is why the flags are read. Where they cannot be
    read (no /proc, as on macOS), the answer is False: float32, the reference.

    Example:
        >>> isinstance(cpu_native_bf16(), bool)
        True
    """
    if platform.system() != "Linux" or not cpuinfo.is_file():
        return False
    for line in cpuinfo.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return bool(BF16_FLAGS & set(value.split()))
    return False
