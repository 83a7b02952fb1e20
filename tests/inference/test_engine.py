"""The one prediction engine: the sliding window hands each mirror's logits to a hook without changing
the averaged logits, and a region model's uncertainty uses its sigmoids (no softmax)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autoseg.cli import main
from autoseg.contracts.plans import Plans
from autoseg.inference.predictor import ConfigurationPredictor, PredictOptions
from autoseg.inference.sliding_window import WindowOptions, mirror_count, sliding_window
from autoseg.inference.uncertainty import MemberStatistics, entropy_map
from autoseg.synthetic.labels import generate_regions_dataset


def _net(dims: int, seed: int, channels: int = 1, gain: float = 1.0) -> torch.nn.Module:
    """A small two-layer convolution (C -> 3 outputs): fast, and not mirror-symmetric."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
    layers = [conv(channels, 4, 3, padding=1), torch.nn.ReLU(), conv(4, 3, 3, padding=1)]
    with torch.no_grad():  # logits spread over a few units: confident and unsure voxels
        layers[-1].weight.mul_(gain)
        layers[-1].bias.mul_(gain)
    return torch.nn.Sequential(*layers).eval()


@pytest.mark.parametrize(
    ("patch", "axes", "shape"), [((16, 16, 16), (0, 1, 2), (20, 24, 18)), ((16, 16), (0, 1), (5, 20, 24))]
)
def test_members_hook_leaves_the_logits_bit_identical(patch, axes, shape) -> None:
    net = _net(len(patch), seed=0)
    image = torch.randn(1, *shape, generator=torch.Generator().manual_seed(2))
    options = WindowOptions(mirror_axes=axes, batch=4)
    plain = sliding_window(net, image, patch, 3, options)
    members: dict[int, torch.Tensor] = {}
    observed = sliding_window(net, image, patch, 3, options, lambda m, lg: members.setdefault(m, lg.clone()))
    assert torch.equal(plain, observed)  # the members change no bit of the mean
    assert sorted(members) == list(range(mirror_count(axes))) == list(range(2 ** len(axes)))
    stacked = torch.stack([members[m] for m in sorted(members)])
    assert stacked.shape == (2 ** len(axes), 3, *shape)
    torch.testing.assert_close(stacked.mean(0), plain, atol=1e-5, rtol=1e-5)
    # a convolution is not mirror-symmetric: the mirrors disagree somewhere
    assert (stacked - plain).abs().amax() > 1e-3


def test_one_mirror_hands_over_the_logits_themselves() -> None:
    net, image = _net(3, seed=1), torch.randn(1, 18, 18, 18)
    seen: list[torch.Tensor] = []
    out = sliding_window(net, image, (16, 16, 16), 3, WindowOptions(), lambda m, lg: seen.append(lg.clone()))
    assert len(seen) == 1 and torch.equal(seen[0], out)


@pytest.fixture(scope="module")
def region_plans(tmp_path_factory: pytest.TempPathFactory) -> Plans:
    root = tmp_path_factory.mktemp("region_engine")
    raw = generate_regions_dataset(
        root / "raw" / "Dataset952_Engine", num_cases=2, shape=(16, 24, 24), seed=3
    )
    paths = [f"paths.preprocessed={root / 'pre'}", f"paths.results={root / 'results'}", "num_folds=2"]
    assert main(["plan", str(raw), *paths, "-c", "3d_fullres", "--num-workers", "1"]) == 0
    return Plans.load(root / "pre" / raw.name / "default" / "plans.json")


def _region_predictor(plans: Plans, seeds: list[int], tta: bool) -> ConfigurationPredictor:
    networks = [
        _net(3, seed, channels=plans.num_channels, gain=10) for seed in seeds
    ]  # 3 outputs: the regions
    options = PredictOptions(tta=tta, resample="scipy")
    return ConfigurationPredictor.from_networks(plans, "3d_fullres", networks, torch.device("cpu"), options)


def test_region_uncertainty_uses_sigmoids_and_keeps_the_probabilities(region_plans: Plans) -> None:
    labels = region_plans.labels
    assert labels.has_regions and labels.num_outputs == 3
    data = np.random.default_rng(0).normal(size=(region_plans.num_channels, 20, 28, 24)).astype(np.float32)
    properties: dict = {}
    both = _region_predictor(region_plans, [1, 2], tta=False)
    plain = both.export_ready(data, properties)
    statistics = MemberStatistics(labels)
    ready = both.export_ready(data, properties, statistics)
    assert np.array_equal(plain.probabilities, ready.probabilities)  # bit for bit
    assert statistics.count == 2 and ready.maps is not None and ready.maps.shape == (3, 20, 28, 24)

    # the members are the folds: each fold's own sigmoid probabilities
    folds = [torch.sigmoid(_region_predictor(region_plans, [s], tta=False).logits(data)) for s in (1, 2)]
    disagreement = torch.stack(folds).var(0, unbiased=False).sum(0)
    np.testing.assert_allclose(ready.maps[2], disagreement.numpy(), atol=1e-6)
    mean = torch.from_numpy(ready.probabilities)
    np.testing.assert_allclose(ready.maps[1], entropy_map(mean, regions=True).numpy(), atol=1e-6)
    assert not np.allclose(mean.sum(0), 1.0)  # sigmoids: the regions do not sum to one
    softmax_entropy = entropy_map(torch.softmax(both.logits(data), 0)).numpy()
    assert np.abs(ready.maps[1] - softmax_entropy).mean() > 0.05  # not the softmax's entropy
    assert ready.maps[1].min() >= 0 and ready.maps[1].max() <= 1 + 1e-6


def test_region_members_with_mirrors_are_folds_times_mirrors(region_plans: Plans) -> None:
    predictor = _region_predictor(region_plans, [4, 5], tta=True)
    data = np.random.default_rng(1).normal(size=(region_plans.num_channels, 18, 26, 26)).astype(np.float32)
    statistics = MemberStatistics(region_plans.labels)
    ready = predictor.export_ready(data, {}, statistics)
    assert statistics.count == 2 * 2 ** len(predictor.mirror_axes or ())
    assert np.array_equal(predictor.export_ready(data, {}).probabilities, ready.probabilities)
    assert ready.maps is not None and float(ready.maps[2].max()) > 0  # the members disagree somewhere


def test_statistics_refuse_maps_without_members(region_plans: Plans) -> None:
    with pytest.raises(ValueError, match="no member was added"):
        MemberStatistics(region_plans.labels).maps(torch.zeros(3, 2, 2, 2))


def test_uncertainty_keeps_region_masks(region_plans: Plans, tmp_path: Path) -> None:
    from autoseg.inference.inputs import discover_inputs
    from autoseg.inference.run import predict_cases

    raw = generate_regions_dataset(tmp_path / "heldout", num_cases=1, shape=(16, 24, 24), seed=8)
    cases = discover_inputs(raw / "imagesTr", list(region_plans.channel_names.values()))
    predictor = _region_predictor(region_plans, [6, 7], tta=True)
    predict_cases(cases, [predictor], tmp_path / "plain")
    record = predict_cases(cases, [predictor], tmp_path / "maps", uncertainty=True)
    from autoseg.io.images import read_image

    plain, _ = read_image(tmp_path / "plain" / "case_000.nii.gz")
    masked, _ = read_image(tmp_path / "maps" / "case_000.nii.gz")
    assert np.array_equal(plain, masked)
    assert record["uncertainty"]["members"] == {"3d_fullres": "folds x TTA mirrors"}
    entropy, _ = read_image(tmp_path / "maps" / "uncertainty" / "case_000_entropy.nii.gz")
    assert entropy.shape == plain.shape and entropy.min() >= 0 and entropy.max() <= 1
