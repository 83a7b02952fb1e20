"""Temperature scaling: lowers the calibration error of an over-confident model, keeps the argmax."""

from __future__ import annotations

import numpy as np
import pytest

from autoseg.evaluation.calibration import expected_calibration_error, fit_temperature
from autoseg.postprocessing.temperature import apply_temperature


def _overconfident(n: int = 20_000, k: int = 3, sharpen: float = 4.0, seed: int = 0) -> tuple:
    """Labels drawn from softmax(z); the model reports softmax(sharpen * z): right argmax, too sure."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.0, (k, n))
    true = np.exp(z) / np.exp(z).sum(0)
    labels = np.array([rng.choice(k, p=true[:, i]) for i in range(n)])
    reported = np.exp(sharpen * z) / np.exp(sharpen * z).sum(0)
    return reported, labels, true


def test_temperature_lowers_ece_of_an_overconfident_model_and_keeps_the_argmax() -> None:
    probs, labels, _ = _overconfident()
    temperature = fit_temperature(probs, labels)
    assert 2.5 < temperature < 6  # about the sharpening factor 4 that made it over-confident
    calibrated = apply_temperature(probs, temperature)
    before, after = expected_calibration_error(probs, labels), expected_calibration_error(calibrated, labels)
    assert after < 0.5 * before and after < 0.03
    assert np.array_equal(calibrated.argmax(0), probs.argmax(0))
    np.testing.assert_allclose(calibrated.sum(0), 1, atol=1e-5)


def test_a_calibrated_model_keeps_a_temperature_near_one() -> None:
    _, labels, true = _overconfident(sharpen=1.0, seed=1)
    assert 0.85 < fit_temperature(true, labels) < 1.15
    assert expected_calibration_error(true, labels) < 0.03


def test_temperature_on_spatial_probabilities_and_bad_values() -> None:
    probs = np.random.default_rng(2).dirichlet([1, 1, 1], size=(4, 5, 6)).transpose(3, 0, 1, 2)
    out = apply_temperature(probs, 2.0)
    assert out.shape == probs.shape and np.array_equal(out.argmax(0), probs.argmax(0))
    assert out.max() < probs.max()  # softer
    with pytest.raises(ValueError, match="temperature must be > 0"):
        apply_temperature(probs, 0.0)
