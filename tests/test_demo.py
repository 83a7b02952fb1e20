"""The demo's presets and task: a narrow network planned by the default rules, a task with a small
bright and a large faint structure (the demo itself runs in `make demo`, not in the suite)."""

from __future__ import annotations

import numpy as np
from omegaconf import OmegaConf

from autoseg.commands.config import compose
from autoseg.commands.demo import DEMO_TASK
from autoseg.planning.presets import PlannerConfig
from autoseg.synthetic.dataset import SyntheticSpec, generate_case
from autoseg.training.config import TrainerConfig


def test_demo_presets_compose_into_a_narrow_network_and_a_short_training() -> None:
    cfg = compose(["planner=demo", "trainer=demo"])
    planner = PlannerConfig.from_mapping(OmegaConf.to_container(cfg.planner, resolve=True))  # type: ignore[arg-type]
    default = PlannerConfig.from_mapping(OmegaConf.to_container(compose().planner, resolve=True))  # type: ignore[arg-type]
    assert planner.name == "demo" and planner.base_features == 8 and planner.max_features_3d == 32
    assert (planner.reference_value_3d, planner.min_batch_size) == (
        default.reference_value_3d,
        default.min_batch_size,
    )
    trainer = TrainerConfig.from_mapping(OmegaConf.to_container(cfg.trainer, resolve=True))  # type: ignore[arg-type]
    assert trainer.epochs * trainer.iterations_per_epoch <= 1000 and not trainer.tta_mirroring


def test_demo_task_has_a_small_bright_and_a_large_faint_structure() -> None:
    spec = SyntheticSpec(seed=0, **DEMO_TASK)
    images, label, _ = generate_case(spec, 0)
    small, large = label == 1, label == 2
    assert 0 < small.sum() < large.sum()
    tissue = np.median(images[0][(label == 0) & (images[0] > 0)])
    assert np.median(images[0][small]) > tissue > np.median(images[0][large])
