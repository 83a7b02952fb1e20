from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from autoseg.config import compose
from autoseg.training.config import TrainerConfig
from autoseg.training.loop import poly_lr


@pytest.mark.parametrize("preset", ["default", "quick"])
def test_presets_load(preset):
    cfg = TrainerConfig.from_mapping(
        OmegaConf.to_container(compose([f"trainer={preset}"]).trainer, resolve=True)
    )
    assert cfg.name == preset
    if preset == "default":  # nnU-Net's schedule
        assert (cfg.epochs, cfg.iterations_per_epoch, cfg.lr, cfg.momentum) == (1000, 250, 0.01, 0.99)


def test_overrides_and_errors():
    cfg = compose(["trainer=quick", "trainer.epochs=3", "trainer.patch_size=[16,16,16]"])
    t = TrainerConfig.from_mapping(OmegaConf.to_container(cfg.trainer, resolve=True))
    assert t.epochs == 3 and t.patch_size == (16, 16, 16)
    with pytest.raises(ValueError, match="did you mean"):
        TrainerConfig.from_mapping({"epoch": 3})
    with pytest.raises(ValueError, match="epochs=0"):
        TrainerConfig(epochs=0)


def test_poly_lr():
    cfg = TrainerConfig(epochs=10, lr=0.01)
    assert poly_lr(cfg, 0) == pytest.approx(0.01)
    assert poly_lr(cfg, 5) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_lr(cfg, 9) < poly_lr(cfg, 8)
