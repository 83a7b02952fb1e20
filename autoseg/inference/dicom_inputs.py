"""DICOM series as prediction inputs, and the per-case extra outputs (DICOM-SEG, overlay PNG).

Single-channel models: every image series under the input folder is a case, named by its
series UID (:func:`autoseg.io.dicom.series_output_name`; never by patient name).

Multi-channel models: one sub-folder per case, holding one series per channel; a series belongs
to the channel whose name (dataset.json ``channel_names``, e.g. ``T1``, ``FLAIR``) its
SeriesDescription contains (case-insensitive). A case where a channel matches no series or
several is an error for that case; the other cases still run.

Series that cannot be read (missing slices, varying spacing, mixed sizes) are errors of their own
case; non-image objects (SEG, SR, RTSTRUCT, presentation states) are skipped with a note.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.inference.cases import InputCase, stack_channels
from autoseg.io.images import Geometry

__all__ = ["dicom_cases", "dicom_seg_writer", "overlay_writer"]


def _series_case(series: Any) -> InputCase:
    from autoseg.io.dicom import read_series, series_output_name

    def load() -> tuple[np.ndarray, Geometry]:
        array, geometry = read_series(series)
        return array[None].astype(np.float32, copy=False), geometry

    return InputCase(series_output_name(series), ".nii.gz", load, _describe(series), {"series": [series]})


def _describe(series: Any) -> str:
    return f"series {series.description or '(no description)'} in {series.folder}"


def _multi_channel_case(folder: Path, series: list[Any], channel_names: list[str]) -> InputCase:
    from autoseg.io.dicom import read_series

    chosen, problems = [], []
    for name in channel_names:
        hits = [s for s in series if name.lower() in (s.description or "").lower()]
        if len(hits) != 1:
            found = ", ".join(repr(s.description) for s in series) or "none"
            problems.append(f"channel {name!r} matches {len(hits)} series (descriptions: {found})")
        else:
            chosen.append(hits[0])

    def load() -> tuple[np.ndarray, Geometry]:
        if problems:
            raise ValueError("; ".join(problems))
        return stack_channels((_describe(s), *read_series(s)) for s in chosen)

    return InputCase(folder.name, ".nii.gz", load, f"case folder {folder}", {"series": chosen})


def dicom_cases(
    folder: Path, num_channels: int, notes: list[str], channel_names: list[str] | None = None
) -> list[InputCase]:
    """The cases of a DICOM input folder (see the module docstring); notes receive skipped objects."""
    from autoseg.io.dicom import find_series

    if num_channels == 1:
        series, skipped = find_series(folder)
        notes.extend(skipped)
        return [_series_case(s) for s in series]
    if not channel_names or len(channel_names) != num_channels:
        raise ValueError(
            f"a {num_channels}-channel DICOM input needs the model's {num_channels} channel names"
        )
    cases = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        series, skipped = find_series(sub)
        notes.extend(skipped)
        if series:
            cases.append(_multi_channel_case(sub, series, channel_names))
    return cases


def dicom_seg_writer(labels: dict[int, str]) -> Callable[[InputCase, np.ndarray, Geometry, Path], list[Path]]:
    """A writer of ``<case>.seg.dcm`` referencing the case's source series (DICOM inputs only).

    Args:
        labels: every foreground label of the model (1..N) -> its name; one segment each.
    """
    from autoseg.io.dicom_seg import write_dicom_seg

    def write(case: InputCase, seg: np.ndarray, geometry: Geometry, output: Path) -> list[Path]:
        series = case.extra.get("series")
        if not series:
            raise ValueError(f"{case.source}: --dicom-seg needs a DICOM input (it references the series)")
        return [write_dicom_seg(seg, series[0], labels, output / f"{case.name}.seg.dcm")]

    return write


def overlay_writer(names: dict[int, str]) -> Callable[[InputCase, np.ndarray, Geometry, Path], list[Path]]:
    """A writer of ``<case>.png``: the mask over channel 0 of the image, slices through the structures."""
    from autoseg.visualize.overlay import overlay_png

    def write(case: InputCase, seg: np.ndarray, geometry: Geometry, output: Path) -> list[Path]:
        images, _ = case.load()
        return [overlay_png(images[0], seg, geometry.spacing, output / f"{case.name}.png", label_names=names)]

    return write
