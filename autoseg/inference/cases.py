"""A case to segment, whatever it was read from (image files or a DICOM series)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autoseg.io.images import Geometry

__all__ = ["InputCase", "stack_channels"]


@dataclass(frozen=True)
class InputCase:
    """One case to segment.

    Attributes:
        name: the output file's stem (the case name; a DICOM series' UID-based name).
        output_ending: the mask's file format, the input's own (``.nii.gz`` for DICOM).
        load: returns (images (C, Z, Y, X) float32, geometry of channel 0).
        source: what was read, for messages (a path; never a patient identifier).
        extra: whatever an output writer needs besides the mask (e.g. the DICOM series).
        files: the file of each channel, in order, for messages (empty for DICOM series).
    """

    name: str
    output_ending: str
    load: Callable[[], tuple[np.ndarray, Geometry]]
    source: str
    extra: dict[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()


def stack_channels(volumes: Iterable[tuple[str, np.ndarray, Geometry]]) -> tuple[np.ndarray, Geometry]:
    """(C, Z, Y, X) float32 from per-channel ``(source, array, geometry)``; geometry of channel 0.

    Raises:
        ValueError: a channel whose shape differs from channel 0's (naming its source).
    """
    arrays, geometry = [], None
    for source, array, geom in volumes:
        if array.ndim == 2:
            array = array[None]
        if geometry is not None and geom.shape != geometry.shape:
            raise ValueError(f"{source}: shape {geom.shape} differs from channel 0's {geometry.shape}")
        geometry = geometry or geom
        arrays.append(array.astype(np.float32, copy=False))
    if geometry is None:
        raise ValueError("no channels to stack")
    return np.stack(arrays), geometry
