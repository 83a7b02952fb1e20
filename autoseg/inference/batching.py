"""How many network inputs go through one forward pass: measured on the running machine, not guessed.

The sliding window feeds the network *items*: a tile, or one mirrored copy of a tile. A
:class:`BatchSizer` decides how many items share a forward pass:

* on a GPU, the memory of a one-item forward is measured (``torch.cuda.max_memory_allocated``)
  and the batch is as many items as fit in 80 % of the free memory (``torch.cuda.mem_get_info``),
  at most ``max_items``; running out of memory anyway halves the batch and redoes the pass;
* on the CPU, more items per pass is not always faster (measured here: torch 2.13 on 2 cores
  runs 8 single passes of a 40x56x40 tile as fast as one pass of 8, onnxruntime runs the batch of
  8 faster), so the sizer times both: the first ``probe_items`` items one at a time, the next
  ``probe_items`` in one pass, and keeps the batch whose seconds per item were lower (the batch
  needs to be 5 % faster to win). Both probes are real work of the prediction, nothing is redone.

A sizer belongs to one network (or backend session) and keeps its decision across cases.

Example:
    >>> sizer = BatchSizer(fixed=4)
    >>> sizer.size(remaining=10)
    4
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["BatchSizer", "CudaMemory", "is_out_of_memory"]

log = logging.getLogger(__name__)

GPU_MEMORY_FRACTION = 0.8
BATCH_MUST_WIN_BY = 0.95


def is_out_of_memory(err: BaseException) -> bool:
    """True for CUDA out-of-memory errors and the CPU allocator's failure to allocate."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class CudaMemory:
    """Allocated, peak and free memory of a CUDA device (what the GPU sizing measures)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def start(self) -> int:
        """Synchronise, reset the peak statistics; the bytes allocated now."""
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        return torch.cuda.memory_allocated(self.device)

    def peak(self) -> int:
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device)

    def free(self) -> int:
        return torch.cuda.mem_get_info(self.device)[0]


class BatchSizer:
    """Items per forward pass: ``fixed``, or measured (see the module docstring).

    Args:
        fixed: always this many items per pass (None: measure).
        max_items: the largest batch a measurement may choose.
        probe_items: items per probe on the CPU (the number of mirrored copies of a tile is a good
            choice: the batched probe then holds every copy of one tile).
        memory: measures device memory (default :class:`CudaMemory` on CUDA; the tests give a
            stand-in to run the GPU sizing on the CPU).
    """

    def __init__(
        self,
        fixed: int | None = None,
        max_items: int = 64,
        probe_items: int = 8,
        memory: Any | None = None,
    ) -> None:
        if fixed is not None and fixed < 1:
            raise ValueError(f"batch size {fixed} must be >= 1")
        self.fixed = fixed
        self.max_items = max(1, max_items)
        self.probe_items = max(2, min(probe_items, self.max_items))
        self.chosen: int | None = fixed
        self._single: list[float] = []  # seconds per item of one-item passes (CPU probe)
        self.reason = "fixed" if fixed is not None else "not measured yet"
        self.memory = memory

    def size(self, remaining: int) -> int:
        """Items for the next pass, at most ``remaining``."""
        if self.chosen is not None:
            return max(1, min(self.chosen, remaining))
        if len(self._single) < self.probe_items:
            return 1
        return max(1, min(self.probe_items, remaining))

    def forward(self, run: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """``run(x)``, measured while the batch is not chosen yet; halves the batch on running out of memory.

        Returns the output of the whole ``x`` (the items are split into smaller passes after an
        out-of-memory error).
        """
        try:
            if self.chosen is not None:
                return run(x)
            return self._measured(run, x)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
            if not is_out_of_memory(err) or x.shape[0] == 1:
                raise
            half = max(1, x.shape[0] // 2)
            log.warning("out of memory with %d items per forward pass; trying %d", x.shape[0], half)
            self.chosen, self.reason = half, f"halved after running out of memory at {x.shape[0]}"
            if x.device.type == "cuda":
                torch.cuda.empty_cache()
            return torch.cat([self.forward(run, part) for part in x.split(half)])

    def _measured(self, run: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        if x.device.type == "cuda" or self.memory is not None:
            return self._measure_gpu(run, x, self.memory or CudaMemory(x.device))
        start = time.perf_counter()
        out = run(x)
        per_item = (time.perf_counter() - start) / x.shape[0]
        if x.shape[0] == 1:
            self._single.append(per_item)
            return out
        single = sorted(self._single)[len(self._single) // 2]  # the median of the one-item passes
        batched = per_item <= BATCH_MUST_WIN_BY * single
        self.chosen = x.shape[0] if batched else 1
        self.reason = (
            f"measured on the CPU: {per_item:.3f} s/item with {x.shape[0]} per pass, "
            f"{single:.3f} s/item one by one"
        )
        log.info("forward batch %d (%s)", self.chosen, self.reason)
        return out

    def _measure_gpu(self, run: Callable[[Tensor], Tensor], x: Tensor, memory: Any) -> Tensor:
        base = memory.start()
        out = run(x[:1])
        per_item = max(1, memory.peak() - base)
        free = memory.free()
        fits = int(GPU_MEMORY_FRACTION * free // per_item)
        self.chosen = max(1, min(self.max_items, fits))
        self.reason = f"measured on the GPU: {per_item / 2**20:.0f} MiB per item, {free / 2**30:.1f} GiB free"
        log.info("forward batch %d (%s)", self.chosen, self.reason)
        if x.shape[0] == 1:
            return out
        return torch.cat([out, *(run(part) for part in x[1:].split(self.chosen))])
