"""DevicePrefetcher: the CPU run of the host-to-device path (copy, transform, one batch ahead)."""

from __future__ import annotations

import pytest
import torch

from autoseg.training.device_batches import DevicePrefetcher, peak_memory_gb


def test_prefetcher_hands_out_every_batch_in_order_one_ahead():
    host = [{"image": torch.full((1, 1, 2), float(k)), "target": torch.full((1, 1, 2), k)} for k in range(3)]
    pulled = []

    def source():
        for batch in host:
            pulled.append(int(batch["target"][0, 0, 0]))
            yield batch

    def double(image, target, batch):
        return image * 2, target

    batches = DevicePrefetcher(source(), torch.device("cpu"), double)
    image, target = next(batches)
    assert pulled == [0, 1]  # the next batch is already loaded while step 0 runs
    assert float(image[0, 0, 0]) == 0.0 and int(target[0, 0, 0]) == 0
    rest = [(float(i[0, 0, 0]), int(t[0, 0, 0])) for i, t in batches]
    assert rest == [(2.0, 1), (4.0, 2)]
    with pytest.raises(StopIteration):
        next(batches)
    assert peak_memory_gb(torch.device("cpu")) is None
