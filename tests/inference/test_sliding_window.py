"""Sliding-window prediction: tiling, Gaussian normalisation, padding, mirroring, 2D slice-wise."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from autoseg.inference.sliding_window import (
    compute_tile_starts,
    gaussian_importance,
    predict_sliding_window,
    predict_volume_2d,
)
from autoseg.nets import build_network


class OneHotThreshold(nn.Module):
    """A pointwise 'network': one-hot of (x > 0); its output does not depend on the tiling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = (x[:, :1] > 0).float()
        return torch.cat([1 - fg, fg], 1)


class TileCounter(nn.Module):
    """Pointwise 1x1 conv that counts the tiles it sees."""

    def __init__(self, dims: int = 3) -> None:
        super().__init__()
        self.conv = (nn.Conv3d if dims == 3 else nn.Conv2d)(1, 3, 1)
        self.tiles = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tiles += x.shape[0]
        return self.conv(x)


def _image(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _symmetric_conv() -> nn.Conv3d:
    """3x3x3 conv whose kernel is symmetric under every axis flip: equivariant to mirroring."""
    conv = nn.Conv3d(1, 2, 3, padding=1)
    with torch.no_grad():
        flips = [torch.flip(conv.weight, d) for r in range(4) for d in itertools.combinations((2, 3, 4), r)]
        conv.weight.copy_(torch.stack(flips).sum(0))
    return conv


@pytest.mark.parametrize(
    ("shape", "patch"),
    [((37, 50, 29), (16, 24, 16)), ((10, 12, 9), (16, 16, 16)), ((16, 40, 7), (16, 16, 16))],
    ids=["larger", "smaller", "mixed"],
)
def test_pointwise_network_is_reproduced_everywhere(shape: tuple[int, ...], patch: tuple[int, ...]) -> None:
    image = _image(1, *shape)
    out = predict_sliding_window(OneHotThreshold(), image, patch, 2, mirror_axes=(0, 1, 2))
    assert out.shape == (2, *shape) and out.dtype == torch.float32
    expected = OneHotThreshold()(image[None])[0]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("use_gaussian", [True, False])
def test_linear_pointwise_network_gives_exact_logits(use_gaussian: bool) -> None:
    net = TileCounter()
    image = _image(1, 40, 33, 21)
    out = predict_sliding_window(net, image, (16, 16, 16), 3, mirror_axes=None, use_gaussian=use_gaussian)
    with torch.no_grad():
        expected = net.conv(image[None])[0]
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("size", "patch", "step"),
    [(128, 64, 0.5), (100, 64, 0.5), (64, 64, 0.5), (57, 16, 0.5), (90, 40, 0.25), (33, 32, 1.0)],
)
def test_tile_count_is_nnunet_formula_and_spread_evenly(size: int, patch: int, step: float) -> None:
    starts = compute_tile_starts((size,), (patch,), step)[0]
    assert len(starts) == math.ceil((size - patch) / (patch * step)) + 1
    assert starts[0] == 0 and starts[-1] == size - patch
    gaps = np.diff(starts)
    assert len(gaps) == 0 or gaps.max() - gaps.min() <= 1


def test_number_of_network_calls() -> None:
    net = TileCounter()
    shape, patch = (40, 33, 16), (16, 16, 16)
    predict_sliding_window(net, _image(1, *shape), patch, 3, mirror_axes=None, batch_size=4)
    tiles = math.prod(len(s) for s in compute_tile_starts(shape, patch, 0.5))
    assert tiles == 4 * 4 * 1 and net.tiles == tiles
    net.tiles = 0
    predict_sliding_window(net, _image(1, *shape), patch, 3, mirror_axes=(0, 2))
    assert net.tiles == tiles * 4


def test_gaussian_matches_nnunet_construction() -> None:
    patch = (16, 24, 10)
    delta = np.zeros(patch)
    delta[tuple(p // 2 for p in patch)] = 1
    reference = gaussian_filter(delta, [p / 8 for p in patch], 0, mode="constant", cval=0)
    reference /= reference.max()
    ours = gaussian_importance(patch).numpy()
    assert ours.max() == pytest.approx(1.0)
    mask = reference > 0
    np.testing.assert_allclose(ours[mask], reference[mask], rtol=1e-4, atol=1e-7)
    assert (ours > 0).all()
    assert gaussian_importance(patch, peak=10).max().item() == pytest.approx(10.0)


def test_mirroring_a_flip_equivariant_net_changes_nothing() -> None:
    net = _symmetric_conv()
    image = _image(1, 24, 20, 18)
    plain = predict_sliding_window(net, image, (16, 16, 16), 2, mirror_axes=None)
    mirrored = predict_sliding_window(net, image, (16, 16, 16), 2, mirror_axes=(0, 1, 2))
    torch.testing.assert_close(mirrored, plain, atol=1e-5, rtol=1e-5)
    lopsided = nn.Conv3d(1, 2, 3, padding=1)
    changed = predict_sliding_window(lopsided, image, (16, 16, 16), 2, mirror_axes=(0,))
    assert not torch.allclose(
        changed, predict_sliding_window(lopsided, image, (16, 16, 16), 2, mirror_axes=None)
    )


def test_batch_size_does_not_change_the_result() -> None:
    net = nn.Conv3d(1, 2, 3, padding=1)
    image = _image(1, 30, 20, 20)
    one = predict_sliding_window(net, image, (16, 16, 16), 2, mirror_axes=(1,), batch_size=1)
    many = predict_sliding_window(net, image, (16, 16, 16), 2, mirror_axes=(1,), batch_size=5)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=1e-5)


def test_plan_network_in_train_mode_is_evaluated_and_restored() -> None:
    arch = {
        "network": "plain",
        "n_stages": 3,
        "features_per_stage": [4, 8, 16],
        "kernel_sizes": [[3, 3, 3]] * 3,
        "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
    }
    net = build_network(arch, 1, 3).train()
    out = predict_sliding_window(net, _image(1, 20, 16, 12), (16, 16, 16), 3, mirror_axes=(0,), batch_size=2)
    assert out.shape == (3, 20, 16, 12) and torch.isfinite(out).all()
    assert net.training


def test_volume_2d_runs_slice_by_slice() -> None:
    net = TileCounter(dims=2)
    image = _image(1, 5, 30, 12)
    out = predict_volume_2d(net, image, (16, 16), 3, batch_size=4)
    assert out.shape == (3, 5, 30, 12)
    with torch.no_grad():
        expected = net.conv(image.permute(1, 0, 2, 3)).permute(1, 0, 2, 3)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    tiles_per_slice = math.prod(len(s) for s in compute_tile_starts((30, 16), (16, 16), 0.5))
    assert net.tiles == 5 * tiles_per_slice * 4  # 4 mirror combinations of 2 axes


def test_invalid_arguments_are_listed_together() -> None:
    with pytest.raises(ValueError, match=r"patch_size .* 2 axes.*step_size=0.*mirror_axes \[3\]"):
        predict_sliding_window(
            OneHotThreshold(), _image(1, 8, 8, 8), (8, 8), 2, step_size=0, mirror_axes=(3,)
        )
    with pytest.raises(ValueError, match=r"expected logits \(B, 3"):
        predict_sliding_window(OneHotThreshold(), _image(1, 8, 8, 8), (8, 8, 8), 3, mirror_axes=None)
    with pytest.raises(ValueError, match=r"\(C, Z, Y, X\)"):
        predict_volume_2d(OneHotThreshold(), _image(1, 8, 8), (8, 8), 2)
