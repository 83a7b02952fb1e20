"""Measure a built network: the feature-map elements the planner's memory model estimates.

The planner budgets GPU memory by the number of feature-map elements one sample produces
(:func:`autoseg.planning.memory.estimate_feature_map_elements`, nnU-Net's
``compute_conv_feature_map_size``). :func:`feature_map_elements` counts the same quantity on a
built module with forward hooks, so tests and benchmarks can check that the plan describes the
network that is trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from autoseg.nets.resenc import ResidualBlock

__all__ = ["feature_map_elements"]

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _counted_modules(net: nn.Module) -> list[nn.Module]:
    """Every conv and transposed conv, except that a residual shortcut counts as one output."""
    shortcut_parts: set[int] = set()
    counted: list[nn.Module] = []
    for module in net.modules():
        if isinstance(module, ResidualBlock) and not isinstance(module.skip, nn.Identity):
            counted.append(module.skip)  # pool and/or 1x1 conv: one stored output, as nnU-Net counts it
            shortcut_parts.update(id(m) for m in module.skip.modules())
    counted += [m for m in net.modules() if isinstance(m, CONVS) and id(m) not in shortcut_parts]
    return counted


def feature_map_elements(
    net: nn.Module, input_shape: Sequence[int], device: torch.device | str = "meta"
) -> int:
    """Elements of all conv, transposed-conv, shortcut and head outputs, per sample, in ``train()`` mode.

    Args:
        net: a segmentation network (its deep-supervision heads are counted in train mode).
        input_shape: ``(B, C, *patch)``; the total is divided by ``B``.
        device: where to run the forward; ``"meta"`` computes shapes only (no memory, no time) and
            needs ``net`` built on the meta device too (``with torch.device("meta"): build_network(...)``).

    Example:
        >>> from autoseg.nets import build_network
        >>> arch = {"network": "resenc", "n_stages": 3, "features_per_stage": [4, 8, 16],
        ...         "kernel_sizes": [[3, 3]] * 3, "strides": [[1, 1], [2, 2], [2, 2]],
        ...         "blocks_per_stage_encoder": [1, 1, 1], "blocks_per_stage_decoder": [1, 1]}
        >>> feature_map_elements(build_network(arch, 1, 2), (1, 1, 8, 8), "cpu")
        2272
    """
    total = 0

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel()

    handles = [m.register_forward_hook(hook) for m in _counted_modules(net)]
    was_training = net.training
    try:
        with torch.no_grad():
            net.train()(torch.zeros(*input_shape, device=device))
    finally:
        net.train(was_training)
        for handle in handles:
            handle.remove()
    return total // int(input_shape[0])
