"""The torch resampler (the GPU path, run here on the CPU) against the scipy one it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autoseg.evaluation.metrics import dice_per_label
from autoseg.inference.model import open_model
from autoseg.inference.predictor import ConfigurationPredictor, PredictOptions
from autoseg.inference.resample_torch import resample_to_shape_torch
from autoseg.io.images import Geometry, read_image, write_image
from autoseg.preprocessing.resample import axis_orders, resample_data_to_shape
from tests.inference.conftest import ThresholdNet


@pytest.mark.parametrize(
    ("shape", "new_shape", "spacing", "new_spacing"),
    [
        ((12, 30, 28), (36, 24, 35), (3.0, 0.8, 0.8), (1.0, 1.0, 0.64)),  # separate z: nearest along z
        ((20, 22, 18), (31, 15, 27), (1.0, 1.0, 1.0), (0.65, 1.47, 0.67)),  # linear everywhere
    ],
    ids=["anisotropic", "isotropic"],
)
def test_torch_resampler_matches_scipy(shape, new_shape, spacing, new_spacing) -> None:
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=(3, *shape)).astype(np.float32))
    logits = torch.nn.functional.avg_pool3d(logits[None], 5, stride=1, padding=2)[0] * 4
    probs = torch.softmax(logits, 0)
    orders = axis_orders(spacing, new_spacing, 1, 0)
    ours = resample_to_shape_torch(probs, new_shape, orders).numpy()
    reference = resample_data_to_shape(probs.numpy(), new_shape, spacing, new_spacing, 1, 0)
    assert ours.shape == reference.shape == (3, *new_shape)
    assert np.abs(ours - reference).max() < 1e-4
    assert (ours.argmax(0) == reference.argmax(0)).mean() > 0.999


def test_torch_resampler_refuses_spline_orders() -> None:
    with pytest.raises(ValueError, match=r"orders 0 and 1, not \[3, 3, 3\]"):
        resample_to_shape_torch(torch.zeros(2, 4, 4, 4), (8, 8, 8), (3, 3, 3))


def test_predictor_on_device_path_agrees_with_the_scipy_path(trained, tmp_path) -> None:
    """The GPU code path (logits, softmax, resampling kept on the device) forced on the CPU."""
    shape, spacing = (14, 44, 40), (3.0, 0.8, 0.9)  # thick slices: resampled in and out
    zz, yy, xx = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij")
    label = (((zz - 20) / 12) ** 2 + ((yy - 17) / 9) ** 2 + ((xx - 18) / 10) ** 2 <= 1).astype(np.uint8)
    image = np.where(label > 0, 100.0, 10.0).astype(np.float32)
    geometry = Geometry(shape, spacing, (1.0, 2.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    write_image(image, geometry, tmp_path / "scan_0000.nii.gz")
    images, geometry = read_image(tmp_path / "scan_0000.nii.gz")
    out = {}
    for mode in ("scipy", "torch"):
        with open_model(trained["results"]) as model:
            predictor = ConfigurationPredictor(
                model.configuration("3d_fullres"),
                ["0"],
                torch.device("cpu"),
                PredictOptions(tta=False, resample=mode),
            )
        predictor.networks = [ThresholdNet((55.0 - image.mean()) / image.std())]
        out[mode] = predictor.predict("scan", images[None], geometry)
    assert out["torch"].shape == out["scipy"].shape == (2, *shape)
    seg_torch, seg_scipy = out["torch"].argmax(0), out["scipy"].argmax(0)
    assert dice_per_label(seg_torch, seg_scipy, [1])[1] > 0.99
    assert dice_per_label(seg_torch, label, [1])[1] > 0.95
