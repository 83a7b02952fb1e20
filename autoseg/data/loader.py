"""Batches for training and validation, reproducible per batch index.

Item ``k`` of a :class:`BatchDataset` is the whole batch ``k``, built only from
``np.random.default_rng([seed, stream, k])``. So a run resumed at batch ``k`` sees exactly
the batches an uninterrupted run would, and the batches do not depend on the number of
workers (each item is built with one torch thread; results of float reductions would
otherwise depend on the thread count). Under data-parallel training each rank builds only its
``samples`` of every batch (drawn in full, so the global batches do not depend on the number of
ranks either).

Typical use::

    cases = PreprocessedCases(folder, split["train"])
    augmenter = Augmenter(plan["patch_size"], num_channels=cases.num_channels)
    sampler = PatchSampler(cases, plan["patch_size"], plan["batch_size"], crop_size=augmenter.crop_size)
    train = make_loader(BatchDataset(sampler, augmenter, seed), start_batch, total_batches, 4, True)
    val_cases = PreprocessedCases(folder, split["val"])
    val_sampler = PatchSampler(val_cases, plan["patch_size"], plan["batch_size"])
    val = make_loader(BatchDataset(val_sampler, None, seed, stream=1), 0, n_val_batches, 2, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from autoseg.data.augment import Augmenter, AugmentParams
from autoseg.data.sampling import CropSpec, PatchSampler, patch_region
from autoseg.data.spatial import empty

__all__ = ["BatchDataset", "make_loader"]


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one torch thread (restored afterwards)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class BatchDataset(Dataset):
    """Map-style dataset whose item ``k`` is batch ``k``.

    Args:
        sampler: where the crops come from (its batch size is the batch size).
        augmenter: training augmentation; None for validation batches (the centred patch
            of each crop, no augmentation).
        seed: the run's seed.
        stream: separates independent streams of one seed (e.g. 0 train, 1 validation).
        augment_on_device: return the crops and parameters instead of augmented patches, for
            ``augmenter.apply_batch`` on the GPU.
        samples: build only samples ``[start, stop)`` of each batch (a data-parallel rank's share,
            :func:`autoseg.training.distributed.batch_share`); the whole batch is still drawn, so
            which sample is forced to foreground and how it is augmented is that of the full
            batch. None: the whole batch.

    Item ``k`` (a dict; B is the number of samples built):
        - ``image``: (B, C, *patch) float32;
        - ``target``: (B, 1, *patch) int64, labels >= 0 (-1 mapped to 0);
        - ``foreground``: (B,) bool, whether the target contains a label > 0;
        - ``forced``: (B,) bool, whether the sample was forced to foreground.

        With ``augment_on_device``, ``image`` (B, C, *crop) and ``target`` (B, 1, *crop)
        int16 (-1 outside the image) are the crops, of the smallest common size that every
        sample of the batch needs (``Augmenter.required_crop``), ``params`` is the list of
        B :class:`~autoseg.data.augment.AugmentParams`, and ``foreground`` refers to the
        un-augmented centre patch. Then::

            image, target = augmenter.apply_batch(item["image"].cuda(), item["target"].cuda(), item["params"])
    """

    def __init__(
        self,
        sampler: PatchSampler,
        augmenter: Augmenter | None,
        seed: int,
        stream: int = 0,
        augment_on_device: bool = False,
        samples: tuple[int, int] | None = None,
        post: Callable[[dict[str, Any], np.random.Generator], dict[str, Any]] | None = None,
    ) -> None:
        problems = []
        if post is not None and augment_on_device:
            problems.append("a post step (the cascade's previous-stage channels) runs in the workers only")
        if augmenter is not None:
            if augmenter.patch_size != sampler.patch_size:
                problems.append(
                    f"augmenter patch {augmenter.patch_size} != sampler patch {sampler.patch_size}"
                )
            channels = sampler.cases.num_channels
            if augmenter.num_channels != channels:
                problems.append(
                    f"the augmenter draws parameters for {augmenter.num_channels} channel(s), the cases have "
                    f"{channels} (pass num_channels=cases.num_channels to Augmenter)"
                )
        elif augment_on_device:
            problems.append("augment_on_device needs an augmenter")
        if seed < 0 or stream < 0:
            problems.append(f"seed and stream must be >= 0, got {seed} and {stream}")
        if samples is not None and not 0 <= samples[0] < samples[1] <= sampler.batch_size:
            problems.append(f"samples {samples} must be a non-empty part of 0..{sampler.batch_size}")
        if problems:
            raise ValueError("BatchDataset: " + "; ".join(problems))
        self.sampler = sampler
        self.augmenter = augmenter
        self.seed = int(seed)
        self.stream = int(stream)
        self.augment_on_device = bool(augment_on_device)
        self.samples = slice(*samples) if samples is not None else slice(None)
        self.post = post

    def rng(self, k: int) -> np.random.Generator:
        """The generator batch ``k`` is built from."""
        return np.random.default_rng([self.seed, self.stream, int(k)])

    def __getitem__(self, k: int) -> dict[str, Any]:
        if k < 0:
            raise IndexError(f"batch index must be >= 0, got {k}")
        rng = self.rng(k)
        drawn = self.sampler.draw(rng)
        specs = drawn[self.samples]
        forced = torch.tensor([s.force_foreground for s in specs], dtype=torch.bool)
        with single_thread():
            if self.augmenter is None:
                item = self._plain(specs)
            else:
                params = [self.augmenter.draw(rng) for _ in drawn][self.samples]
                item = (
                    self._crops(specs, params) if self.augment_on_device else self._augmented(specs, params)
                )
            if self.post is not None:  # e.g. autoseg.training.cascade.CascadeDecoder, from the same rng
                item = self.post(item, rng)
        item["forced"] = forced
        return item

    def _plain(self, specs: Sequence[CropSpec]) -> dict[str, Any]:
        patch = self.sampler.patch_size
        images, targets = [], []
        for spec in specs:
            image, seg = self.sampler.crop(spec, _same_parity(patch, self.sampler.crop_size))
            region = (slice(None), *patch_region(image.shape[1:], patch))
            images.append(torch.from_numpy(np.ascontiguousarray(image[region])))
            targets.append(torch.from_numpy(np.ascontiguousarray(seg[region])).to(torch.int64).clamp_(min=0))
        target = torch.stack(targets)
        return {"image": torch.stack(images), "target": target, "foreground": _has_foreground(target)}

    def _augmented(self, specs: Sequence[CropSpec], params: Sequence[AugmentParams]) -> dict[str, Any]:
        assert self.augmenter is not None
        batch, patch = len(specs), self.sampler.patch_size
        image = empty((batch, self.sampler.cases.num_channels, *patch), torch.float32, torch.device("cpu"))
        target = empty((batch, 1, *patch), torch.int64, torch.device("cpu"))
        for b, (spec, p) in enumerate(zip(specs, params, strict=True)):
            size = self.augmenter.required_crop(p, self.sampler.crop_size)
            crop_image, crop_seg = self.sampler.crop(spec, size)
            image[b], target[b] = self.augmenter.apply(
                torch.from_numpy(crop_image), torch.from_numpy(crop_seg), p
            )
        return {"image": image, "target": target, "foreground": _has_foreground(target)}

    def _crops(self, specs: Sequence[CropSpec], params: Sequence[AugmentParams]) -> dict[str, Any]:
        assert self.augmenter is not None
        sizes = np.array([self.augmenter.required_crop(p, self.sampler.crop_size) for p in params])
        size = tuple(int(s) for s in sizes.max(axis=0))  # same parity as the crop for every sample
        region = (slice(None), slice(None), *patch_region(size, self.sampler.patch_size))
        images, segs = [], []
        for spec in specs:
            image, seg = self.sampler.crop(spec, size)
            images.append(torch.from_numpy(image))
            segs.append(torch.from_numpy(seg.astype(np.int16, copy=False)))
        seg_batch = torch.stack(segs)
        foreground = _has_foreground(seg_batch[region])
        return {
            "image": torch.stack(images),
            "target": seg_batch,
            "params": list(params),
            "foreground": foreground,
        }


def _same_parity(patch: Sequence[int], crop: Sequence[int]) -> tuple[int, ...]:
    """The patch, one larger where ``crop - patch`` is odd (so its centre is the crop's)."""
    return tuple(p + (c - p) % 2 for p, c in zip(patch, crop, strict=True))


def _has_foreground(target: torch.Tensor) -> torch.Tensor:
    return target.flatten(1).amax(dim=1) > 0


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)


def make_loader(
    dataset: BatchDataset,
    start: int,
    stop: int,
    num_workers: int,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
) -> DataLoader:
    """A loader over batches ``start, start + 1, ..., stop - 1`` of ``dataset``, in order.

    Resuming at batch ``start`` yields exactly the batches an uninterrupted run yields from
    there, for any number of workers.

    Args:
        dataset: the batches.
        start: first batch index (>= 0).
        stop: one past the last batch index.
        num_workers: worker processes (0: load in the calling process); each uses one torch
            thread and stays alive between epochs (``persistent_workers``).
        pin_memory: pin the batches (for fast copies to a GPU).
        prefetch_factor: batches loaded ahead per worker.

    Returns:
        A DataLoader with ``batch_size=None`` (each item already is a batch).
    """
    if not 0 <= start <= stop or num_workers < 0:
        raise ValueError(f"need 0 <= start <= stop and num_workers >= 0, got {start}, {stop}, {num_workers}")
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs = {
            "persistent_workers": True,
            "prefetch_factor": prefetch_factor,
            "worker_init_fn": _worker_init,
        }
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=range(start, stop),
        num_workers=num_workers,
        pin_memory=pin_memory,
        **kwargs,
    )
