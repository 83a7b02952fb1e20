"""BatchDataset and make_loader: reproducible batches, resuming, workers, device augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autoseg.data import Augmenter, BatchDataset, PatchSampler, PreprocessedCases, make_loader
from tests.data import write_cases

PATCH = (8, 12, 12)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> PreprocessedCases:
    folder = tmp_path_factory.mktemp("cases")
    names = write_cases(folder, [(14, 24, 22)] * 4, channels=2, radius=3)
    return PreprocessedCases(folder, names)


@pytest.fixture(scope="module")
def dataset(cases: PreprocessedCases) -> BatchDataset:
    augmenter = Augmenter(PATCH, num_channels=2)
    sampler = PatchSampler(cases, PATCH, 3, crop_size=augmenter.crop_size)
    return BatchDataset(sampler, augmenter, seed=11)


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_item_is_a_reproducible_batch(dataset: BatchDataset) -> None:
    item = dataset[3]
    assert item["image"].shape == (3, 2, *PATCH) and item["image"].dtype == torch.float32
    assert item["target"].shape == (3, 1, *PATCH) and item["target"].dtype == torch.int64
    assert item["target"].min() >= 0
    assert item["forced"].tolist() == [False, False, True]
    assert torch.equal(item["foreground"], (item["target"].flatten(1) > 0).any(1))
    assert _equal(item, dataset[3])
    assert not torch.equal(item["image"], dataset[4]["image"])
    other_stream = BatchDataset(dataset.sampler, dataset.augmenter, seed=11, stream=1)
    assert not torch.equal(item["image"], other_stream[3]["image"])


def test_batches_do_not_depend_on_workers_or_on_where_a_run_starts(dataset: BatchDataset) -> None:
    expected = [dataset[k] for k in range(8)]
    serial = list(make_loader(dataset, 0, 8, num_workers=0, pin_memory=False))
    parallel = list(make_loader(dataset, 0, 8, num_workers=2, pin_memory=False))
    resumed = list(make_loader(dataset, 5, 8, num_workers=2, pin_memory=False))
    assert len(serial) == len(parallel) == 8 and len(resumed) == 3
    for k in range(8):
        assert _equal(serial[k], expected[k])
        assert _equal(parallel[k], expected[k])
    for k in range(3):
        assert _equal(resumed[k], expected[5 + k])


def test_loader_settings(dataset: BatchDataset) -> None:
    loader = make_loader(dataset, 2, 6, num_workers=2, pin_memory=False)
    assert loader.batch_size is None and loader.persistent_workers and loader.prefetch_factor == 2
    assert list(loader.sampler) == [2, 3, 4, 5]
    with pytest.raises(ValueError, match="start <= stop"):
        make_loader(dataset, 5, 2, num_workers=0, pin_memory=False)


def test_validation_batches_are_unaugmented_patches(cases: PreprocessedCases) -> None:
    sampler = PatchSampler(cases, PATCH, 2)
    val = BatchDataset(sampler, None, seed=11, stream=1)
    item = val[0]
    assert item["image"].shape == (2, 2, *PATCH) and item["target"].dtype == torch.int64
    rng = val.rng(0)
    specs = sampler.draw(rng)
    for b, spec in enumerate(specs):
        image, seg = sampler.crop(spec)
        np.testing.assert_array_equal(item["image"][b].numpy(), image)
        np.testing.assert_array_equal(item["target"][b].numpy(), np.maximum(seg, 0))


def test_device_augmentation_matches_the_worker(dataset: BatchDataset) -> None:
    device = BatchDataset(dataset.sampler, dataset.augmenter, seed=11, augment_on_device=True)
    assert dataset.augmenter is not None
    for k in range(6):
        crops = device[k]
        assert crops["target"].dtype == torch.int16 and len(crops["params"]) == 3
        assert crops["image"].shape[2:] == crops["target"].shape[2:]
        image, target = dataset.augmenter.apply_batch(crops["image"], crops["target"], crops["params"])
        expected = dataset[k]
        torch.testing.assert_close(image, expected["image"], atol=1e-3, rtol=1e-4)
        assert (target != expected["target"]).float().mean() < 1e-3


def test_dataset_checks_its_parts(cases: PreprocessedCases) -> None:
    sampler = PatchSampler(cases, PATCH, 2)
    with pytest.raises(ValueError, match=r"num_channels=cases\.num_channels"):
        BatchDataset(sampler, Augmenter(PATCH), seed=0)
    with pytest.raises(ValueError, match="needs an augmenter"):
        BatchDataset(sampler, None, seed=0, augment_on_device=True)
