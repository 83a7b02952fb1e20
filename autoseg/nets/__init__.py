"""Networks built from a plan's ``architecture``: plain MONAI DynUNet or nnU-Net's residual-encoder U-Net."""

from autoseg.nets.factory import (
    NETWORKS,
    SegmentationUNet,
    build_network,
    count_parameters,
    deep_supervision_weights,
    num_outputs,
    register_network,
)
from autoseg.nets.measure import feature_map_elements
from autoseg.nets.resenc import ResidualEncoderUNet

__all__ = [
    "NETWORKS",
    "ResidualEncoderUNet",
    "SegmentationUNet",
    "build_network",
    "count_parameters",
    "deep_supervision_weights",
    "feature_map_elements",
    "num_outputs",
    "register_network",
]
