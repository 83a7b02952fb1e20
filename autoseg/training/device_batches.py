"""Host-to-device: training batches on the device, the next one already on its way.

The data loader pins its batches when training on CUDA (``make_loader(pin_memory=True)``), so
the copies here are asynchronous (``non_blocking=True``). :class:`DevicePrefetcher` starts the
copy of batch k+1 (and, with augmentation on the device, its augmentation) on a side CUDA stream
as soon as batch k is handed out, so it overlaps step k. On the CPU the same code runs without a
stream: the copy is a no-op and the next batch is simply fetched one step early.

Example:
    >>> batches = DevicePrefetcher(iter(loader), torch.device("cuda"))  # doctest: +SKIP
    >>> image, target = next(batches)  # (B, C, *patch) and (B, 1, *patch) on the GPU  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

DeviceTransform = Callable[[torch.Tensor, torch.Tensor, dict[str, Any]], tuple[torch.Tensor, torch.Tensor]]


class DevicePrefetcher:
    """An iterator of ``(image, target)`` on ``device`` over host batches ``{"image", "target", ...}``.

    Args:
        batches: host batches (pinned for CUDA, so the copies are asynchronous).
        device: the training device.
        transform: applied on the device to each copied batch, ``transform(image, target, batch)``
            (e.g. augmentation with ``Augmenter.apply_batch``), or None.

    On CUDA the copy and the transform of the next batch run on a side stream; the training
    stream waits for it only when the batch is handed out.
    """

    def __init__(
        self,
        batches: Iterator[dict[str, Any]],
        device: torch.device,
        transform: DeviceTransform | None = None,
    ) -> None:
        self.source = batches
        self.device = device
        self.transform = transform
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._next: tuple[torch.Tensor, torch.Tensor] | None = None
        self._started = False

    def __iter__(self) -> DevicePrefetcher:
        return self

    def _load(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            batch = next(self.source)
        except StopIteration:
            return None
        context = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        with context:
            image = batch["image"].to(self.device, non_blocking=True)
            target = batch["target"].to(self.device, non_blocking=True)
            if self.transform is not None:
                image, target = self.transform(image, target, batch)
        return image, target

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._started:
            self._next, self._started = self._load(), True
        current = self._next
        if current is None:
            raise StopIteration
        if self.stream is not None:
            main = torch.cuda.current_stream(self.device)
            main.wait_stream(self.stream)
            for tensor in current:
                tensor.record_stream(main)  # the side stream's allocator must not reuse it early
        self._next = self._load()
        return current


def augment_on_device(augmenter: Any) -> DeviceTransform:
    """The transform that augments crops on the device: ``augmenter.apply_batch`` with the batch's
    parameters (from ``BatchDataset(augment_on_device=True)``, so batch k still comes from (seed, k))."""

    def transform(
        image: torch.Tensor, target: torch.Tensor, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return augmenter.apply_batch(image, target, batch["params"])  # type: ignore[no-any-return]

    return transform


def peak_memory_gb(device: torch.device) -> float | None:
    """The peak memory allocated on a CUDA ``device`` since the last reset, GB (None elsewhere)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 1024**3


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory measurement on a CUDA ``device`` (nothing elsewhere)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
