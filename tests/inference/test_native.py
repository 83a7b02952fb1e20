"""The slab-by-slab native mask equals the whole-array reference (revert the probabilities, argmax)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from autoseg.contracts.labels import LabelManager
from autoseg.contracts.plans import DEFAULT_RESAMPLING
from autoseg.inference.native import compact_logits, native_segmentation, slab_rows
from autoseg.io.images import Geometry
from autoseg.preprocessing.preprocess import revert_preprocessing


def properties(
    network: tuple[int, ...], cropped: tuple[int, ...], full: tuple[int, ...], transpose: list[int]
) -> dict[str, Any]:
    """A case's properties: cropped to ``cropped`` inside ``full`` (transposed), network grid ``network``."""
    backward = [int(a) for a in np.argsort(transpose)]
    spacing = [1.0 * c / n for c, n in zip(network, cropped, strict=True)]  # native mm when the target is 1
    start = [(f - c) // 2 for f, c in zip(full, cropped, strict=True)]
    native_shape = tuple(full[a] for a in backward)
    geometry = Geometry(native_shape, tuple(1.0 for _ in full), (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    return {
        "case": "c",
        "geometry": geometry.to_json(),
        "transpose_forward": transpose,
        "transpose_backward": backward,
        "shape_before_cropping": list(full),
        "bbox_used_for_cropping": [[s, s + c] for s, c in zip(start, cropped, strict=True)],
        "shape_after_cropping_and_before_resampling": list(cropped),
        "shape_after_resampling": list(network),
        "spacing": spacing,
        "target_spacing": [1.0, 1.0, 1.0],
        "resampling": dict(DEFAULT_RESAMPLING),
    }


def smooth_logits(num_classes: int, shape: tuple[int, ...], seed: int, width: int = 5) -> np.ndarray:
    """Logits with class regions of some extent (a blurred random field), so argmax has boundaries."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((1, num_classes, *shape), generator=generator)
    blurred = torch.nn.functional.avg_pool3d(
        noise, width, stride=1, padding=width // 2, count_include_pad=False
    )
    return (blurred[0] * 8).numpy()


def reference(members: list[tuple[np.ndarray, dict]], labels: LabelManager) -> np.ndarray:
    """Today's whole-array path: probabilities reverted to the native grid, averaged, argmax."""
    regions = labels.has_regions
    native = [
        revert_preprocessing(
            labels.activate(torch.from_numpy(a.astype(np.float32))).numpy(), p, regions=regions
        )
        for a, p in members
    ]
    return labels.segmentation(np.mean(native, axis=0))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype
    return float((a == b).mean())


@pytest.mark.parametrize(
    ("network", "cropped", "full", "transpose"),
    [
        ((10, 14, 12), (30, 28, 24), (34, 30, 27), [0, 1, 2]),  # isotropic-ish upsampling, linear
        ((6, 20, 20), (30, 26, 23), (31, 30, 23), [2, 0, 1]),  # anisotropic: nearest along z, transposed
        ((16, 12, 12), (12, 18, 17), (12, 20, 19), [0, 1, 2]),  # first axis shrinks
    ],
)
def test_native_mask_equals_reference(
    network: tuple[int, ...], cropped: tuple[int, ...], full: tuple[int, ...], transpose: list[int]
) -> None:
    labels = LabelManager.from_labels({"background": 0, **{f"c{k}": k for k in range(1, 12)}})
    props = properties(network, cropped, full, transpose)
    logits = smooth_logits(12, network, seed=1)
    expected = reference([(logits, props)], labels)
    assert len(np.unique(expected)) > 5  # boundaries to get wrong
    tiny = 12 * cropped[1] * cropped[2] * 4 * 3  # 3 native rows per slab: many slabs
    float32 = native_segmentation([(logits, props)], labels, activated=False, slab_bytes=tiny)
    assert agreement(float32, expected) >= 0.99999
    probs = labels.activate(torch.from_numpy(logits)).numpy()
    assert agreement(native_segmentation([(probs, props)], labels, activated=True), expected) >= 0.99999


def test_compact_float16_logits_keep_the_mask() -> None:
    """Shifted float16 logits (held for very large network grids): 60 classes, a CT-like upsampling."""
    labels = LabelManager.from_labels({"background": 0, **{f"c{k}": k for k in range(1, 60)}})
    props = properties((20, 32, 32), (30, 80, 80), (32, 84, 80), [0, 1, 2])
    logits = smooth_logits(60, (20, 32, 32), seed=7, width=7)
    expected = reference([(logits, props)], labels)
    assert len(np.unique(expected)) > 20
    compact = compact_logits(torch.from_numpy(logits))
    assert compact.dtype == np.float16 and compact.nbytes * 2 == logits.nbytes
    out = native_segmentation([(compact, props)], labels, activated=False)
    assert agreement(out, expected) >= 0.9999
    plain = native_segmentation([(logits.astype(np.float16), props)], labels, activated=False)
    assert agreement(out, expected) > agreement(plain, expected)  # the shift is what makes float16 hold


def test_ensemble_regions_and_class_values() -> None:
    props = properties((8, 12, 12), (20, 24, 22), (22, 26, 22), [0, 1, 2])
    # an ensemble of two members with different network grids averages native probabilities
    other = {**props, "shape_after_resampling": [10, 12, 12], "spacing": [10 / 20, 12 / 24, 12 / 22]}
    labels = LabelManager.from_labels({"background": 0, "a": 3, "b": 7})  # class values, not 0..K-1
    members = [(smooth_logits(3, (8, 12, 12), 2), props), (smooth_logits(3, (10, 12, 12), 3), other)]
    out = native_segmentation(members, labels, activated=False, slab_bytes=1)
    assert agreement(out, reference(members, labels)) >= 0.99999
    assert set(np.unique(out)) == {0, 3, 7}
    regions = LabelManager.from_labels(
        {"background": 0, "whole": [1, 2], "core": [2]}, regions_class_order=[1, 2]
    )
    one = [(smooth_logits(2, (8, 12, 12), 4), props)]
    out = native_segmentation(one, regions, activated=False, slab_bytes=1)
    assert agreement(out, reference(one, regions)) >= 0.99999
    assert out[0, 0, 0] == 0  # outside the crop: no region


def test_members_of_different_cases_are_refused() -> None:
    a = properties((8, 12, 12), (20, 24, 22), (22, 26, 22), [0, 1, 2])
    b = {**a, "bbox_used_for_cropping": [[0, 20], [0, 24], [0, 22]]}
    logits = smooth_logits(2, (8, 12, 12), 5)
    with pytest.raises(ValueError, match="bbox_used_for_cropping"):
        native_segmentation([(logits, a), (logits, b)])


def test_slab_rows_fit_the_budget() -> None:
    assert slab_rows(101, (512, 512), 256 * 2**20) == 2
    assert slab_rows(2, (10, 10), 1) == 1
    assert slab_rows(2, (10, 10), 10_000) == 12
