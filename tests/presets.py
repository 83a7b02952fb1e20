"""The fast trainer and the easy task the tests train on: defined once, varied by what a test changes.

Example:
    >>> fast_trainer(epochs=2).epochs, fast_overrides(epochs=2)[:2]
    (2, ['trainer.epochs=2', 'trainer.iterations_per_epoch=10'])
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from autoseg.contracts.case import CaseProperties
from autoseg.synthetic.dataset import SyntheticSpec
from autoseg.training.config import TrainerConfig

#: A few short epochs on the CPU: enough for the easy task to be learned (Dice > 0.8), seconds each.
FAST_TRAINER: dict[str, Any] = {
    "epochs": 5,
    "iterations_per_epoch": 10,
    "val_iterations": 1,
    "num_workers": 0,
    "amp": False,
    "tta_mirroring": False,
    "seed": 1,
}
#: One high-contrast class without distractors: an untrained network cannot segment it, a briefly
#: trained one does.
EASY_TASK: dict[str, Any] = {"classes": 1, "shape": (24, 32, 32), "noise": 0.05, "distractors": False}


def fast_trainer(**changes: Any) -> TrainerConfig:
    """The fast trainer as a :class:`TrainerConfig`, with ``changes`` (any trainer field)."""
    return replace(TrainerConfig(**FAST_TRAINER), **changes)


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_yaml(v) for v in value) + "]"
    return "null" if value is None else str(value)


def fast_overrides(**changes: Any) -> list[str]:
    """The fast trainer as ``trainer.KEY=VALUE`` overrides of ``autoseg train``, with ``changes``."""
    return [f"trainer.{key}={_yaml(value)}" for key, value in {**FAST_TRAINER, **changes}.items()]


def easy_spec(num_cases: int = 10, seed: int = 7, **changes: Any) -> SyntheticSpec:
    """The easy task's :class:`SyntheticSpec` (``changes``: any other synthetic field, e.g. noise)."""
    return SyntheticSpec(num_cases=num_cases, seed=seed, **{**EASY_TASK, **changes})


def case_properties(name: str, shape: tuple[int, ...]) -> CaseProperties:
    """The properties of a preprocessed case that preprocessing left as it was (1 mm, no crop)."""
    ones = tuple(1.0 for _ in shape)
    axes = tuple(range(len(shape)))
    return CaseProperties(
        case=name,
        configuration="3d_fullres",
        geometry={
            "shape": list(shape),
            "spacing": list(ones),
            "origin": [0.0] * len(shape),
            "direction": [float(i == j) for i in axes for j in axes],
        },
        transpose_forward=axes,
        transpose_backward=axes,
        shape_before_cropping=tuple(shape),
        bbox_used_for_cropping=tuple((0, s) for s in shape),
        shape_after_cropping_and_before_resampling=tuple(shape),
        shape_after_resampling=tuple(shape),
        spacing=ones,
        target_spacing=ones,
    )
