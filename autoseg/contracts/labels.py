"""Labels, regions and the ignore label, answered in one place.

dataset.json (and the plans after it) describe the label map as ``name -> value``; a region is
``name -> [values]`` (BraTS: ``"whole tumor": [1, 2, 3]``) with ``regions_class_order`` saying
which value each region paints when the region probabilities are turned back into a label map.
A label named ``ignore`` marks voxels without annotation: it is no class, no network output and
counts nowhere in the loss or the evaluation.

Everything that needs "which classes, which outputs, which values" asks a :class:`LabelManager`.

Example:
    >>> lm = LabelManager.from_labels({"background": 0, "left": 1, "right": 2})
    >>> lm.class_values, lm.num_outputs, lm.evaluation_classes
    ((0, 1, 2), 3, {'left': [1], 'right': [2]})
    >>> brats = LabelManager.from_labels(
    ...     {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": [3]},
    ...     regions_class_order=[1, 2, 3])
    >>> brats.has_regions, brats.num_outputs, brats.output_names
    (True, 3, ('whole', 'core', 'enhancing'))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["LabelError", "LabelManager"]

IGNORE_NAME = "ignore"


class LabelError(ValueError):
    """dataset.json's or the plans' labels are inconsistent; the message lists every problem."""


def _values(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (int(value),)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return (int(value),)
    if isinstance(value, list | tuple) and value and all(isinstance(v, int) for v in value):
        return tuple(int(v) for v in value)
    return None


@dataclass(frozen=True)
class LabelManager:
    """The label map's classes, regions and ignore value (build with :meth:`from_labels`).

    Attributes:
        labels: ``name -> value`` (an int) or ``name -> values`` (a region), in dataset.json's order.
        regions_class_order: for region datasets, the value each region (in order) writes into the
            label map; None without regions.
    """

    labels: tuple[tuple[str, tuple[int, ...], bool], ...]  # (name, values, is_region)
    regions_class_order: tuple[int, ...] | None = None

    @classmethod
    def from_labels(
        cls,
        labels: Mapping[str, Any],
        regions_class_order: Sequence[int] | None = None,
        source: str = "labels",
        strict: bool = True,
    ) -> LabelManager:
        """Validate ``labels`` (and ``regions_class_order``); every problem is listed at once.

        ``strict=False`` checks the values' types only (the ignore label's place and the regions'
        order are not needed to evaluate label maps).

        Raises:
            LabelError: naming ``source`` (a file), each bad entry and the fix.
        """
        problems, entries = [], []
        for name, value in labels.items():
            values = _values(value)
            if values is None:
                problems.append(f"label {name!r}: {value!r} is neither an integer nor a list of integers")
                continue
            entries.append((str(name), values, isinstance(value, list | tuple)))
        lm = cls(tuple(entries), tuple(int(v) for v in regions_class_order) if regions_class_order else None)
        if strict:
            problems += lm._problems()
        if problems:
            raise LabelError(f"{source}:\n  " + "\n  ".join(problems))
        return lm

    def _problems(self) -> list[str]:
        problems = []
        ignore = [v for n, v, _ in self.labels if n.lower() == IGNORE_NAME]
        if ignore and (len(ignore[0]) != 1):
            problems.append(f"label 'ignore' must be one integer, got {list(ignore[0])}")
        elif ignore:
            others = [v for n, vs, _ in self.labels if n.lower() != IGNORE_NAME for v in vs]
            if others and ignore[0][0] <= max(others):
                problems.append(
                    f"label 'ignore' = {ignore[0][0]} must be the highest value (the others go up to "
                    f"{max(others)}); renumber it to {max(others) + 1} in dataset.json and the label files"
                )
        if self.has_regions:
            order = self.regions_class_order
            if order is None or len(order) != len(self.regions):
                problems.append(
                    f"regions {list(self.regions)} need 'regions_class_order' in dataset.json with one "
                    f"value per region (got {list(order) if order else None}), e.g. "
                    f"{[max(v) for v in self.regions.values()]}"
                )
        elif self.regions_class_order is not None:
            problems.append("'regions_class_order' is given but no label is a region (a list of values)")
        return problems

    # -- questions -------------------------------------------------------------------------------
    @property
    def has_regions(self) -> bool:
        """Whether any label is a region (a list of values): then the network has one sigmoid per region."""
        return any(is_region for _, _, is_region in self.labels)

    @property
    def ignore_label(self) -> int | None:
        """The value of the ``ignore`` label, or None."""
        for name, values, _ in self.labels:
            if name.lower() == IGNORE_NAME:
                return values[0]
        return None

    @property
    def names(self) -> dict[int, str]:
        """``value -> name`` of the plain (non-region, non-ignore) labels, background included."""
        return {vs[0]: n for n, vs, region in self.labels if not region and n.lower() != IGNORE_NAME}

    @property
    def class_values(self) -> tuple[int, ...]:
        """The plain label values (background included, ignore excluded), sorted."""
        return tuple(sorted(self.names))

    @property
    def foreground_values(self) -> tuple[int, ...]:
        """Every value of a foreground structure (neither background nor ignore), sorted."""
        ignore = self.ignore_label
        return tuple(v for v in self.all_values if v not in (0, ignore))

    @property
    def all_values(self) -> tuple[int, ...]:
        """Every value a label map may contain (background and ignore included), sorted."""
        return tuple(sorted({v for _, vs, _ in self.labels for v in vs} | {0}))

    @property
    def regions(self) -> dict[str, tuple[int, ...]]:
        """``name -> values`` of the network's outputs in a region dataset (each non-background,
        non-ignore label; a plain label ``v`` is the region ``(v,)``); empty without regions."""
        if not self.has_regions:
            return {}
        return {n: vs for n, vs, _ in self.labels if n.lower() != IGNORE_NAME and vs != (0,) and 0 not in vs}

    @property
    def num_outputs(self) -> int:
        """The network's output channels: one per region, or one per class (background included)."""
        return len(self.regions) if self.has_regions else len(self.class_values)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the network's outputs, in channel order."""
        if self.has_regions:
            return tuple(self.regions)
        names = self.names
        return tuple(names[v] for v in self.class_values)

    @property
    def evaluation_classes(self) -> dict[str, list[int]]:
        """``name -> values`` scored by the evaluation: every label but background and ignore
        (regions as their union of values)."""
        return {
            n: sorted(set(vs))
            for n, vs, _ in self.labels
            if n.lower() not in ("background", IGNORE_NAME) and vs != (0,)
        }

    @property
    def label_map_names(self) -> dict[int, str]:
        """``value -> name`` of the values a predicted label map holds (background included): the
        plain labels, or with regions each ``regions_class_order`` value named by its region."""
        if not self.has_regions or self.regions_class_order is None:
            return self.names
        return {0: "background", **dict(zip(self.regions_class_order, self.output_names, strict=False))}

    @property
    def region_values(self) -> tuple[tuple[int, ...], ...]:
        """The values of each region, in output order (empty without regions)."""
        return tuple(self.regions.values())

    def activate(self, logits: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Probabilities of logits: sigmoid per region, else softmax over the classes (axis ``dim``).

        Example:
            >>> import torch
            >>> LabelManager.from_labels({"background": 0, "a": 1}).activate(torch.zeros(2, 3)).sum(0)
            tensor([1., 1., 1.])
        """
        import torch

        return torch.sigmoid(logits) if self.has_regions else torch.softmax(logits, dim=dim)

    def segmentation(self, probabilities: np.ndarray) -> np.ndarray:
        """Label map (uint8, uint16 for larger values) of probabilities (K, *spatial).

        Plain labels: the argmax, mapped to the class values (never the ignore value, which has no
        output). Regions: every region whose probability is > 0.5 paints its
        ``regions_class_order`` value, in output order, so later regions overwrite earlier ones
        (nnU-Net's convention: BraTS whole, core, enhancing -> 1 | 2 | 3).

        Example:
            >>> brats = LabelManager.from_labels({"background": 0, "whole": [1, 2], "core": [2]},
            ...                                  regions_class_order=[1, 2])
            >>> brats.segmentation(np.array([[0.9, 0.9, 0.1], [0.2, 0.8, 0.9]])).tolist()
            [1, 2, 0]
        """
        if probabilities.shape[0] != self.num_outputs:
            raise ValueError(
                f"probabilities have {probabilities.shape[0]} channels, the labels {list(self.output_names)} "
                f"need {self.num_outputs}"
            )
        top = max(self.all_values)
        dtype = np.uint8 if top <= 255 else np.uint16
        if not self.has_regions:
            index = probabilities.argmax(0)
            values = np.asarray(self.class_values, dtype=dtype)
            return index.astype(dtype) if values.tolist() == list(range(len(values))) else values[index]
        assert self.regions_class_order is not None
        seg = np.zeros(probabilities.shape[1:], dtype=dtype)
        for channel, value in enumerate(self.regions_class_order):
            seg[probabilities[channel] > 0.5] = value
        return seg

    def to_json(self) -> dict[str, Any]:
        """The labels as dataset.json writes them (regions as lists)."""
        return {n: (list(vs) if region else vs[0]) for n, vs, region in self.labels}
