"""Training the 3d cascade's second stage (``3d_cascade_fullres``) on the previous stage's maps.

The network sees the image channels plus one channel per foreground class or region
(:func:`autoseg.cascade.encoding.one_hot_previous`): ``in_channels = C + K``. Each training case's
previous-stage map is the out-of-fold ``3d_lowres`` prediction its final validation wrote
(:mod:`autoseg.cascade.next_stage`), brought into this stage's preprocessed grid.

So that the spatial augmentation treats the map exactly as a label (nearest voxel, never an
intensity transform), :class:`CascadeCases` hands the sampler one *joint* label map,
``target + base * previous`` (``base`` = the largest label value + 1; -1 outside the image as
before); :class:`CascadeDecoder` splits it after the augmentation in the data worker, one-hots the
previous map, corrupts it (training batches only, :func:`autoseg.cascade.encoding.corrupt_previous`,
from the batch's own generator: a batch stays a function of ``(seed, k)``) and appends it to the
image. The map outside the non-zero region of the image reads as background. Augmentation of a
cascade therefore runs in the data workers only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoseg.cascade.encoding import corrupt_previous, one_hot_previous
from autoseg.cascade.next_stage import previous_stage_prediction, to_preprocessed_grid
from autoseg.data.cases import Case, PreprocessedCases
from autoseg.io.images import read_image
from autoseg.preprocessing.storage import read_properties
from autoseg.training.spec import FoldSpec


@dataclass(frozen=True)
class CascadeInputs:
    """Where a cascade stage finds its previous stage's maps, and how it encodes them.

    Attributes:
        plans_results: ``<results>/<dataset>/<plans_name>``.
        previous: the previous stage, e.g. ``"3d_lowres"``.
        ending: the raw dataset's file ending (the maps are written in it).
        channels: label values of each extra channel (one per foreground class or region).
        base: the joint label map's base (largest label value + 1).
    """

    plans_results: Path
    previous: str
    ending: str
    channels: tuple[tuple[int, ...], ...]
    base: int

    @property
    def num_channels(self) -> int:
        return len(self.channels)


def cascade_inputs(spec: FoldSpec) -> CascadeInputs | None:
    """The :class:`CascadeInputs` of a cascade stage, None for any other configuration."""
    previous = spec.conf.previous_stage
    if previous is None:
        return None
    if spec.raw_root is None:
        raise ValueError(f"{spec.configuration} needs the raw dataset (the file ending of {previous}'s maps)")
    from autoseg.io.dataset import load_raw_dataset

    labels = spec.plans.labels
    return CascadeInputs(
        plans_results=spec.output.parent.parent,
        previous=previous,
        ending=load_raw_dataset(spec.raw_root).file_ending,
        channels=tuple(tuple(v) for v in labels.evaluation_classes.values()),
        base=max(labels.all_values) + 1,
    )


def previous_maps(inputs: CascadeInputs, folder: Path, cases: Sequence[str]) -> dict[str, np.ndarray]:
    """Each case's previous-stage map (Z, Y, X) int16 in the preprocessed grid of ``folder``.

    Raises:
        FileNotFoundError: every case without a map, at once, with the command to run.
    """
    missing, maps = [], {}
    for case in cases:
        try:
            path = previous_stage_prediction(inputs.plans_results, inputs.previous, case, inputs.ending)
        except FileNotFoundError:
            missing.append(case)
            continue
        seg = to_preprocessed_grid(read_image(path)[0], read_properties(folder, case))
        maps[case] = seg.astype(np.int16)
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise FileNotFoundError(
            f"{len(missing)} case(s) have no {inputs.previous} prediction under {inputs.plans_results}"
            f"/{inputs.previous}/fold_*/predicted_next_stage/: {shown}. The cascade needs "
            f"{inputs.previous} trained on every fold first "
            f"(autoseg train DATASET {inputs.previous} all-folds)"
        )
    return maps


class CascadeCases(PreprocessedCases):
    """:class:`PreprocessedCases` whose label map is the joint ``target + base * previous``."""

    def __init__(self, folder: Path, names: Sequence[str], maps: dict[str, np.ndarray], base: int) -> None:
        super().__init__(folder, names)
        self.maps, self.base = maps, base
        self._joint: dict[str, Case] = {}

    def load(self, name: str) -> Case:
        case = self._joint.get(name)
        if case is None:
            data, seg, locations = super().load(name)
            previous = self.maps[name][None]
            if previous.shape != seg.shape:
                raise ValueError(f"case {name!r}: previous-stage map {previous.shape} != labels {seg.shape}")
            joint = np.where(seg < 0, -1, seg.astype(np.int32) + self.base * previous.astype(np.int32))
            case = (data, joint.astype(np.int16 if joint.max() < 2**15 else np.int32), locations)
            self._joint[name] = case
        return case

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_joint"] = {}
        return state


class CascadeDecoder:
    """After the augmentation: the joint map -> target, and the image + one-hot previous channels."""

    def __init__(self, inputs: CascadeInputs, corrupt: bool) -> None:
        self.channels, self.base, self.corrupt = inputs.channels, inputs.base, corrupt

    def __call__(self, item: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        joint = item["target"].numpy()
        target, previous = joint % self.base, joint // self.base
        extra = []
        for b in range(joint.shape[0]):
            onehot = one_hot_previous(previous[b, 0], self.channels)
            extra.append(corrupt_previous(onehot, rng) if self.corrupt else onehot)
        item["image"] = torch.cat([item["image"], torch.from_numpy(np.stack(extra))], dim=1)
        item["target"] = torch.from_numpy(target)
        item["foreground"] = item["target"].flatten(1).amax(dim=1) > 0
        return item


def network_in_channels(spec: FoldSpec) -> int:
    """The network's input channels: the image's, plus one per foreground class/region in a cascade."""
    extra = len(spec.plans.labels.evaluation_classes) if spec.conf.previous_stage is not None else 0
    return spec.plans.num_channels + extra


def with_previous(image: np.ndarray, previous: np.ndarray, inputs: CascadeInputs) -> np.ndarray:
    """(C, *spatial) image + (K, *spatial) one-hot of the previous map (*spatial) -> (C + K, *spatial)."""
    return np.concatenate([image, one_hot_previous(previous, inputs.channels)]).astype(np.float32)
