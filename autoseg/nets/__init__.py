"""Networks built from a plan's ``architecture`` entry (MONAI DynUNet, plain or residual encoder)."""

from autoseg.nets.factory import (
    NETWORKS,
    SegmentationUNet,
    build_network,
    count_parameters,
    deep_supervision_weights,
    num_outputs,
    register_network,
)

__all__ = [
    "NETWORKS",
    "SegmentationUNet",
    "build_network",
    "count_parameters",
    "deep_supervision_weights",
    "num_outputs",
    "register_network",
]
