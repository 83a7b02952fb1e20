from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from autoseg.preprocessing.crop import OUTSIDE_LABEL, crop_to_nonzero, fill_holes, nonzero_bbox, paste_into


def test_bbox_of_a_known_block_over_any_channel() -> None:
    images = np.zeros((2, 10, 12, 14), np.float32)
    images[0, 2:5, 3:6, 4:8] = 1.0
    images[1, 3:4, 5:9, 9:11] = -2.0  # a second channel widens the box
    cropped, label, bbox = crop_to_nonzero(images, None)
    assert bbox == [[2, 5], [3, 9], [4, 11]]
    assert cropped.shape == (2, 3, 6, 7)
    assert label is None
    np.testing.assert_array_equal(cropped, images[:, 2:5, 3:9, 4:11])


def test_label_outside_the_mask_becomes_minus_one() -> None:
    images = np.zeros((1, 8, 8, 8), np.float32)
    images[0, 1:4, 1:4, 1:4] = 5.0
    images[0, 6, 6, 6] = 5.0  # widens the bbox: the voxels in between are outside the mask
    label = np.zeros((8, 8, 8), np.int16)
    label[2, 2, 2] = 1
    label[6, 6, 6] = 2
    cropped, out, bbox = crop_to_nonzero(images, label)
    assert bbox == [[1, 7], [1, 7], [1, 7]]
    assert out is not None and out.dtype == np.int16
    assert out[1, 1, 1] == 1 and out[5, 5, 5] == 2  # labels inside the mask kept
    assert out[0, 0, 0] == 0  # background inside the mask stays 0
    assert out[4, 4, 4] == OUTSIDE_LABEL  # zero voxel outside the mask
    expected_outside = (cropped[0] == 0).sum()
    assert (out == OUTSIDE_LABEL).sum() == expected_outside


def test_holes_in_the_mask_are_filled() -> None:
    images = np.zeros((1, 9, 9, 9), np.float32)
    images[0, 1:8, 1:8, 1:8] = 1.0
    images[0, 3:6, 3:6, 3:6] = 0.0  # a dark cavity inside: still inside the body
    bbox, mask = nonzero_bbox(images)
    assert bbox == [[1, 8], [1, 8], [1, 8]]
    assert mask[4, 4, 4] and not mask[0, 0, 0]
    _, label, _ = crop_to_nonzero(images, np.zeros((9, 9, 9), np.int16))
    assert label is not None and (label != OUTSIDE_LABEL).all()


def test_all_zero_image_keeps_everything() -> None:
    images = np.zeros((1, 3, 4, 5), np.float32)
    bbox, mask = nonzero_bbox(images)
    assert bbox == [[0, 3], [0, 4], [0, 5]] and mask.all()
    _, label, _ = crop_to_nonzero(images, np.ones((3, 4, 5), np.int16))
    assert label is not None and (label == 1).all()


def test_paste_into_inverts_the_crop_with_channels() -> None:
    rng = np.random.default_rng(0)
    images = np.zeros((2, 10, 11, 12), np.float32)
    images[:, 2:7, 4:9, 1:5] = rng.uniform(1, 2, (2, 5, 5, 4))
    cropped, _, bbox = crop_to_nonzero(images)
    restored = paste_into(cropped, bbox, images.shape[1:], fill=0)
    np.testing.assert_array_equal(restored, images)
    filled = paste_into(cropped[0], bbox, images.shape[1:], fill=7)
    assert filled.shape == images.shape[1:] and filled[0, 0, 0] == 7


def test_paste_into_rejects_a_mismatched_array() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        paste_into(np.zeros((3, 3)), [[0, 2], [0, 3]], (5, 5))


def test_fill_holes_equals_scipy() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = ndimage.binary_dilation(rng.random((12, 15, 17)) > 0.9) ^ (rng.random((12, 15, 17)) > 0.95)
        np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
    flat = rng.random((1, 30, 30)) > 0.3  # a single slice: every background voxel touches the border
    np.testing.assert_array_equal(fill_holes(flat), ndimage.binary_fill_holes(flat))
    assert fill_holes(np.ones((3, 3, 3), bool)).all()
