"""TorchIO transforms from YAML in the training batches: they change the batch, keep labels
aligned, and batch k is still drawn from (seed, k) alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autoseg.data import AugmentConfig, Augmenter, BatchDataset, PatchSampler, PreprocessedCases
from autoseg.data.plugins import ExtraTransforms
from tests.data import write_cases

PATCH = (8, 12, 12)
ELASTIC = {
    "_target_": "torchio.RandomElasticDeformation",
    "num_control_points": 5,
    "max_displacement": 3,
    "p": 1,
}
BIAS = {"_target_": "torchio.RandomBiasField", "coefficients": 0.8, "p": 1.0}


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> PreprocessedCases:
    folder = tmp_path_factory.mktemp("cases")
    names = write_cases(folder, [(14, 24, 22)] * 4, channels=1, radius=3)
    return PreprocessedCases(folder, names)


def _dataset(cases: PreprocessedCases, extra: tuple = ()) -> BatchDataset:
    # no rotation/scaling/intensity noise: what differs comes from the extra transforms alone
    quiet = AugmentConfig(
        p_rotation=0, p_scaling=0, p_noise=0, p_blur=0, p_brightness=0, p_contrast=0, p_lowres=0,
        p_gamma=0, p_gamma_inverted=0, p_mirror=0, extra=extra,
    )  # fmt: skip
    augmenter = Augmenter(PATCH, quiet, num_channels=1)
    return BatchDataset(PatchSampler(cases, PATCH, 2, crop_size=augmenter.crop_size), augmenter, seed=5)


def test_torchio_transform_from_yaml_changes_the_batch_reproducibly(cases: PreprocessedCases) -> None:
    plain, bias = _dataset(cases), _dataset(cases, (BIAS,))
    a, b = plain[2], bias[2]
    assert torch.equal(a["target"], b["target"])  # an intensity transform leaves the labels alone
    assert not torch.allclose(a["image"], b["image"])
    again = _dataset(cases, (BIAS,))[2]
    assert torch.equal(b["image"], again["image"]) and torch.equal(b["target"], again["target"])
    assert not torch.equal(bias[3]["image"], b["image"])


def test_spatial_torchio_transform_keeps_labels_aligned(cases: PreprocessedCases) -> None:
    plain, elastic = _dataset(cases)[1], _dataset(cases, (ELASTIC,))[1]
    assert not torch.equal(elastic["target"], plain["target"])  # the labels moved
    assert elastic["target"].dtype == torch.int64 and set(elastic["target"].unique().tolist()) <= {0, 1, 2}
    # an image that is its own label map: after the deformation, image and labels still coincide
    grid = torch.stack(torch.meshgrid(*(torch.arange(n) for n in (16, 24, 24)), indexing="ij"))
    ball = ((grid - torch.tensor([8, 12, 12])[:, None, None, None]) ** 2).sum(0) <= 36
    seg = ball[None].to(torch.int64)
    image, moved = ExtraTransforms([{**ELASTIC, "max_displacement": 3}])(seg.float(), seg, seed=1)
    assert not torch.equal(moved, seg)
    bright = image[0] > 0.5
    dice = 2 * (bright & (moved[0] > 0)).sum() / (bright.sum() + (moved[0] > 0).sum())
    assert dice > 0.95


def test_same_seed_same_output_2d_and_errors() -> None:
    extra = ExtraTransforms([ELASTIC])
    image = torch.rand(2, 16, 16)
    seg = (image[:1] > 0.5).to(torch.int64)
    one, two = extra(image, seg, seed=3), extra(image, seg, seed=3)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1]) and one[0].shape == (2, 16, 16)
    assert not torch.equal(extra(image, seg, seed=4)[0], one[0])
    with pytest.raises(ValueError, match=r"did you mean 'torchio\.RandomMotion'"):
        ExtraTransforms([{"_target_": "torchio.RandomMotoin"}])
    with pytest.raises(ValueError, match="needs a '_target_'"):
        ExtraTransforms([{"p": 1}])
    with pytest.raises(ValueError, match="run in the data workers"):
        aug = Augmenter(PATCH, AugmentConfig(extra=(BIAS,)))
        params = [aug.draw(np.random.default_rng(0))]
        aug.apply_batch(torch.zeros(1, 1, *aug.crop_size), torch.zeros(1, 1, *aug.crop_size), params)
