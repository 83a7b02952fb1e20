"""LabelManager's probabilities -> label map, and its activation (softmax vs sigmoid per region)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autoseg.contracts.labels import LabelError, LabelManager

BRATS = LabelManager.from_labels(
    {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": [3]}, regions_class_order=[1, 2, 3]
)


def test_regions_paint_in_order_later_regions_over_earlier() -> None:
    # voxel: outside, whole only, whole+core, all three, enhancing alone (painted anyway, as nnU-Net)
    probs = np.array([[0.1, 0.9, 0.9, 0.9, 0.2], [0.1, 0.2, 0.8, 0.8, 0.1], [0.3, 0.1, 0.4, 0.7, 0.6]])
    assert BRATS.segmentation(probs).tolist() == [0, 1, 2, 3, 3]
    reordered = LabelManager.from_labels(dict(BRATS.to_json()), regions_class_order=[3, 2, 1])
    assert reordered.segmentation(probs).tolist() == [0, 3, 2, 1, 1]


def test_plain_labels_argmax_and_never_the_ignore_value() -> None:
    lm = LabelManager.from_labels({"background": 0, "a": 1, "b": 2, "ignore": 3})
    assert lm.num_outputs == 3
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(4, 5)).transpose(2, 0, 1)
    seg = lm.segmentation(probs)
    assert seg.dtype == np.uint8 and np.array_equal(seg, probs.argmax(0)) and 3 not in seg
    with pytest.raises(ValueError, match="need 3"):
        lm.segmentation(probs[:2])


def test_activation_is_softmax_or_sigmoid() -> None:
    logits = torch.randn(3, 4, 5)
    assert torch.allclose(BRATS.activate(logits), torch.sigmoid(logits))
    plain = LabelManager.from_labels({"background": 0, "a": 1, "b": 2})
    assert torch.allclose(plain.activate(logits).sum(0), torch.ones(4, 5))


def test_ignore_must_be_the_highest_value_with_the_fix() -> None:
    with pytest.raises(LabelError, match="renumber it to 3"):
        LabelManager.from_labels({"background": 0, "ignore": 1, "a": 2})


def test_label_map_names_name_the_painted_values() -> None:
    assert BRATS.label_map_names == {0: "background", 1: "whole", 2: "core", 3: "enhancing"}
    plain = LabelManager.from_labels({"background": 0, "a": 1, "ignore": 2})
    assert plain.label_map_names == {0: "background", 1: "a"}
