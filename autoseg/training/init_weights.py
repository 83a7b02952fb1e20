"""Initialise a network from another model's checkpoint (``autoseg train ... --init-from SOURCE``).

Every tensor whose name and shape match the source's is loaded. Beyond that:

- **output heads** (the final 1x1 convolutions, deep-supervision heads included) are rebuilt for
  the target's outputs: the row of each output whose name the source also has (``background``,
  ``anterior``, a region's name) keeps the source's trained weights, new outputs keep their fresh
  initialisation (nnU-Net re-initialises every head);
- **input convolutions** of another channel count get the mean of the source's input filters,
  repeated for each target channel (as nnU-Net's nnssl fine-tuning does);
- an **architecture** other than the source's (network kind, stages, features, kernels, strides,
  blocks, norm) cannot be mapped: a :class:`TransferError` names the first difference and the
  ``autoseg plan TARGET --plans-from SOURCE`` command that plans the target with the source's.

Which tensors are heads and which are input convolutions is found by building the network once
more on the ``meta`` device with one more output and one more input channel: the tensors whose
shape changes are those, for any registered network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from autoseg.contracts.labels import LabelManager
from autoseg.contracts.plans import Architecture
from autoseg.nets.factory import build_network

__all__ = ["STRUCTURE_KEYS", "TransferError", "TransferReport", "transfer_weights"]

#: Architecture fields that decide the tensors' names and shapes.
STRUCTURE_KEYS = (
    "network",
    "n_stages",
    "features_per_stage",
    "kernel_sizes",
    "strides",
    "blocks_per_stage_encoder",
    "blocks_per_stage_decoder",
    "norm",
    "nonlinearity",
)


class TransferError(ValueError):
    """The source's network cannot be mapped onto the target's."""


@dataclass
class TransferReport:
    """What :func:`transfer_weights` did, for the log and run.json (one entry per distinct tensor)."""

    source: str
    checkpoint: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: dict[str, str] = field(default_factory=dict)  # name -> why
    adapted: dict[str, str] = field(default_factory=dict)  # name -> how
    unused: list[str] = field(default_factory=list)  # source tensors the target has no place for
    outputs_kept: list[str] = field(default_factory=list)
    outputs_new: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "checkpoint": self.checkpoint,
            "loaded": len(self.loaded),
            "reinitialised": dict(self.reinitialised),
            "adapted": dict(self.adapted),
            "unused": list(self.unused),
            "outputs_kept": list(self.outputs_kept),
            "outputs_new": list(self.outputs_new),
            "loaded_tensors": list(self.loaded),
        }

    def lines(self) -> list[str]:
        """The log's summary."""
        total = len(self.loaded) + len(self.reinitialised) + len(self.adapted)
        lines = [
            f"initialised from {self.source} ({self.checkpoint}): {len(self.loaded)} of {total} tensors "
            f"loaded as they were, {len(self.adapted)} adapted, {len(self.reinitialised)} re-initialised"
        ]
        if self.outputs_new or self.outputs_kept:
            lines.append(
                f"output heads rebuilt: trained rows kept for {self.outputs_kept or 'no output'}, "
                f"new rows for {self.outputs_new or 'no output'}"
            )
        lines += [f"  adapted {name}: {how}" for name, how in self.adapted.items()]
        lines += [f"  re-initialised {name}: {why}" for name, why in self.reinitialised.items()]
        if self.unused:
            lines.append(f"  not used from the source: {', '.join(self.unused)}")
        return lines


def _structure_difference(source: Mapping[str, Any], target: Architecture) -> str | None:
    """The first structural difference of the source's architecture from the target's, or None."""
    mine = target.to_dict()
    theirs = Architecture.from_dict(source, "source checkpoint: architecture").to_dict()
    for key in STRUCTURE_KEYS:
        if theirs[key] != mine[key]:
            return f"{key}: the source has {theirs[key]}, the target's plans {mine[key]}"
    return None


def _varying(
    base: Mapping[str, torch.Tensor], arch: Architecture, in_channels: int, outputs: int
) -> tuple[set[str], set[str]]:
    """(head tensor names, input tensor names) of the state ``base``: those whose shape follows the
    outputs / the inputs."""
    with torch.device("meta"):
        more_out = build_network(arch, in_channels, outputs + 1).state_dict()
        more_in = build_network(arch, in_channels + 1, outputs).state_dict()
    heads = {k for k, v in base.items() if more_out[k].shape != v.shape}
    inputs = {k for k, v in base.items() if more_in[k].shape != v.shape}
    return heads, inputs


def _head_rows(
    fresh: torch.Tensor, trained: torch.Tensor, target: Sequence[str], source: Sequence[str]
) -> torch.Tensor | None:
    """``fresh`` with the rows of the outputs the source also has copied from ``trained``; None when
    the tensors differ beyond their first dimension."""
    if fresh.shape[1:] != trained.shape[1:] or trained.shape[0] != len(source):
        return None
    out = fresh.clone()
    for row, name in enumerate(target):
        if name in source:
            out[row] = trained[source.index(name)].to(out.dtype)
    return out


def transfer_weights(
    network: torch.nn.Module,
    source_state: Mapping[str, Any],
    architecture: Architecture,
    labels: LabelManager,
    in_channels: int,
    where: tuple[str, str],
    fix_command: str,
) -> TransferReport:
    """Load a source checkpoint's weights into ``network`` (module docstring); the report.

    Args:
        network: the freshly initialised target network (not wrapped in DDP/compile).
        source_state: the source checkpoint (``network``, ``architecture``, ``labels``, ...).
        architecture / labels / in_channels: the target's.
        where: (the source as given, the checkpoint inside it), for the report and the messages.
        fix_command: the ``autoseg plan ... --plans-from ...`` command named by a :class:`TransferError`.
    """
    difference = _structure_difference(source_state["architecture"], architecture)
    if difference is not None:
        raise TransferError(
            f"--init-from {where[0]} ({where[1]}): its network cannot be mapped onto this one "
            f"({difference}). "
            f"Plan the target with the source's network first: {fix_command}"
        )
    source_labels = LabelManager.from_labels(
        source_state["labels"], source_state.get("regions_class_order"), f"{where[0]}: labels"
    )
    source_names, target_names = list(source_labels.output_names), list(labels.output_names)
    state: dict[str, torch.Tensor] = network.state_dict()
    heads, inputs = _varying(state, architecture, in_channels, labels.num_outputs)
    weights: dict[str, torch.Tensor] = source_state["network"]
    report = TransferReport(where[0], where[1])
    seen: set[Any] = set()
    new_state: dict[str, torch.Tensor] = {}
    for name, fresh in state.items():
        new_state[name], how = _one_tensor(name, fresh, weights, heads, inputs, target_names, source_names)
        key = fresh.data_ptr() if fresh.numel() else name  # aliases (DynUNet's skip_layers) count once
        if key in seen:
            continue
        seen.add(key)
        kind, text = how
        if kind == "loaded":
            report.loaded.append(name)
        elif kind == "adapted":
            report.adapted[name] = text
        else:
            report.reinitialised[name] = text
    network.load_state_dict(new_state)
    report.unused = sorted(k for k in weights if k not in state)
    if source_names != target_names:
        report.outputs_kept = [n for n in target_names if n in source_names]
        report.outputs_new = [n for n in target_names if n not in source_names]
    return report


def _one_tensor(
    name: str,
    fresh: torch.Tensor,
    weights: Mapping[str, torch.Tensor],
    heads: set[str],
    inputs: set[str],
    target_names: Sequence[str],
    source_names: Sequence[str],
) -> tuple[torch.Tensor, tuple[str, str]]:
    """(the tensor to load, (loaded | adapted | reinitialised, why))."""
    if name not in weights:
        return fresh, ("reinitialised", "missing in the source")
    trained = weights[name]
    if name in heads:
        if source_names == target_names and trained.shape == fresh.shape:
            return trained.to(fresh.dtype), ("loaded", "")
        rows = _head_rows(fresh, trained, target_names, source_names)
        if rows is None:
            return fresh, ("reinitialised", f"output head of shape {tuple(trained.shape)} in the source")
        kept = [n for n in target_names if n in source_names]
        return rows, ("adapted", f"output rows of {kept} from the source, the others new")
    if trained.shape == fresh.shape:
        return trained.to(fresh.dtype), ("loaded", "")
    if name in inputs and trained.shape[:1] == fresh.shape[:1] and trained.shape[2:] == fresh.shape[2:]:
        mean = trained.mean(dim=1, keepdim=True).to(fresh.dtype)
        return mean.expand_as(fresh).clone(), (
            "adapted",
            f"{trained.shape[1]} -> {fresh.shape[1]} input channels: the mean of the source's input "
            "filters, repeated per channel",
        )
    return fresh, ("reinitialised", f"shape {tuple(fresh.shape)}, the source's {tuple(trained.shape)}")
