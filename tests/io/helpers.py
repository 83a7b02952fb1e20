"""Small raw datasets written into a temporary folder, valid until a test breaks one thing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.io.images import Geometry, write_image

SHAPE = (8, 10, 12)
SPACING = (2.5, 0.8, 0.7)
ORIGIN = (-10.0, 20.0, 5.0)
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
LABELS = {"background": 0, "liver": 1, "tumor": 2}


def geometry(
    shape: tuple[int, ...] = SHAPE,
    spacing: tuple[float, ...] = SPACING,
    origin: tuple[float, ...] = ORIGIN,
    direction: tuple[float, ...] = IDENTITY,
) -> Geometry:
    return Geometry(shape=shape, spacing=spacing, origin=origin, direction=direction)


def image_array(seed: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 20.0, shape).astype(np.float32)


def label_array(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """Labels 0, 1 (a box) and 2 (inside it); a 2D shape gets the middle slice."""
    label = np.zeros((8, *shape[-2:]), dtype=np.uint8)
    label[2:5, 3:7, 4:9] = 1
    label[3:4, 4:6, 5:7] = 2
    return label if len(shape) == 3 else label[3]


def write_description(root: Path, desc: dict[str, Any]) -> None:
    (root / "dataset.json").write_text(json.dumps(desc, indent=2))


def make_dataset(
    root: Path,
    num_cases: int = 3,
    channels: tuple[str, ...] = ("MRI",),
    shape: tuple[int, ...] = SHAPE,
    ending: str = ".nii.gz",
    **extra: Any,
) -> Path:
    """Write a valid dataset ``root/{dataset.json, imagesTr, labelsTr}``; extra keys go into dataset.json.

    Cases are ``case_000``, ``case_001``, ...; channel ``c`` of case ``i`` is seeded ``10 * i + c``.
    """
    root.mkdir(parents=True, exist_ok=True)
    geom = geometry(
        shape=shape,
        spacing=SPACING[-len(shape) :],
        origin=ORIGIN[: len(shape)],
        direction=IDENTITY if len(shape) == 3 else (1.0, 0.0, 0.0, 1.0),
    )
    for i in range(num_cases):
        for c in range(len(channels)):
            write_image(
                image_array(10 * i + c, shape), geom, root / "imagesTr" / f"case_{i:03d}_{c:04d}{ending}"
            )
        write_image(label_array(shape), geom, root / "labelsTr" / f"case_{i:03d}{ending}")
    desc = {
        "channel_names": {str(c): name for c, name in enumerate(channels)},
        "labels": LABELS,
        "numTraining": num_cases,
        "file_ending": ending,
        **extra,
    }
    write_description(root, desc)
    return root


def edit_description(root: Path, **changes: Any) -> None:
    """Change dataset.json keys; a value of None removes the key."""
    desc = json.loads((root / "dataset.json").read_text())
    for key, value in changes.items():
        if value is None:
            desc.pop(key, None)
        else:
            desc[key] = value
    write_description(root, desc)
