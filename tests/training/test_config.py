from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from autoseg.commands.config import compose
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


def _trainer(overrides: list[str]) -> TrainerConfig:
    cfg = compose(overrides)
    return TrainerConfig.from_mapping(
        OmegaConf.to_container(cfg.trainer, resolve=True),  # type: ignore[arg-type]
        OmegaConf.to_container(cfg.augment, resolve=True),  # type: ignore[arg-type]
    )


def test_augmentation_loss_and_optimizer_come_from_yaml_with_nnunet_defaults():
    from autoseg.data.augment import AugmentConfig

    t = _trainer([])
    assert t.augment == AugmentConfig()  # conf/augment/default.yaml is nnU-Net's set, as the code's
    assert (t.loss.weight_ce, t.loss.weight_dice, t.loss.deep_supervision) == (1.0, 1.0, True)
    assert (t.optimizer.name, t.optimizer.nesterov) == ("sgd", True)
    t = _trainer(
        [
            "augment.p_rotation=0.5",
            "augment.scaling=[0.8,1.2]",
            "trainer.loss.weight_ce=0.5",
            "trainer.optimizer.name=adamw",
        ]
    )
    assert t.augment.p_rotation == 0.5 and t.augment.scaling == (0.8, 1.2)
    assert t.loss.weight_ce == 0.5 and t.optimizer.name == "adamw"
    recorded = t.to_dict()  # what run.json and the checkpoints hold
    assert recorded["augment"]["scaling"] == [0.8, 1.2] and recorded["optimizer"]["name"] == "adamw"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("augment.p_rotation=1.5", "p_rotation=1.5 .a probability in"),
        ("augment.scaling=[1.4,0.7]", "scaling=.1.4, 0.7. .a .low, high. pair"),
        ("trainer.optimizer.name=adamm", "did you mean 'adam'"),
        ("trainer.loss.weight_ce=-1", "weight_ce=-1"),
    ],
)
def test_invalid_values_are_refused_with_the_fix(override, message):
    with pytest.raises(ValueError, match=message):
        _trainer([override])


def test_unknown_nested_keys_name_the_nearest():
    with pytest.raises(ValueError, match=r"did you mean \['weight_dice'\]"):
        TrainerConfig.from_mapping({"loss": {"weight_dise": 1.0}})
    with pytest.raises(ValueError, match=r"did you mean \['p_rotation'\]"):
        TrainerConfig.from_mapping({}, {"p_rotaton": 0.1})


def test_optimizer_registry_builds_each():
    import torch

    from autoseg.training.optim import build_optimizer

    net = torch.nn.Linear(2, 2)
    sgd = build_optimizer(net.parameters(), TrainerConfig())
    assert type(sgd).__name__ == "SGD" and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.99
    adamw = build_optimizer(net.parameters(), _trainer(["trainer.optimizer.name=adamw", "trainer.lr=0.001"]))
    assert type(adamw).__name__ == "AdamW" and adamw.defaults["lr"] == 0.001


def test_mr_artefacts_preset_adds_torchio_transforms():
    from autoseg.data.augment import Augmenter

    t = _trainer(["augment=mr-artefacts"])
    targets = [e["_target_"] for e in t.augment.extra]
    assert targets == [
        "torchio.RandomBiasField",
        "torchio.RandomMotion",
        "torchio.RandomGhosting",
        "torchio.RandomSpike",
        "torchio.RandomElasticDeformation",
    ]
    assert t.augment.p_rotation == 0.2  # nnU-Net's set stays underneath
    assert len(Augmenter((16, 16, 16), t.augment).extra or ()) == 5
