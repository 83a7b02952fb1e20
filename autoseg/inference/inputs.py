"""What ``autoseg predict -i`` reads: a folder in raw naming, a single image file, or DICOM series.

A folder in raw naming holds ``<case>_<channel:04d><ending>`` files (``case_0000.nii.gz``,
``case_0001.nii.gz``, ...), as imagesTr/imagesTs of the nnU-Net v2 raw layout; every case needs
every channel the model was trained on. A single file is a one-channel case named after the
file. A folder with DICOM files (and no images in raw naming) is read series by series
(:mod:`autoseg.io.dicom`); each series is a case named by its series UID.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import numpy as np

from autoseg.inference.cases import InputCase, stack_channels
from autoseg.io.images import Geometry, file_ending, read_image

__all__ = ["InputCase", "discover_inputs", "stack_channels"]

IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".gipl.gz", ".gipl")
CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _load_channels(files: tuple[Path, ...]) -> tuple[np.ndarray, Geometry]:
    return stack_channels((str(path), *read_image(path)) for path in files)


def file_case(path: Path, num_channels: int) -> InputCase:
    ending = file_ending(path)
    if num_channels != 1:
        raise ValueError(
            f"{path}: the model needs {num_channels} channels; give a folder with "
            f"<case>_0000{ending} ... <case>_{num_channels - 1:04d}{ending}"
        )
    stem = path.name[: -len(ending)]
    match = CHANNEL.match(stem)
    name = match.group("case") if match else stem
    return InputCase(name, ending, partial(_load_channels, (path,)), str(path), files=(str(path),))


def _folder_cases(folder: Path, num_channels: int) -> list[InputCase]:
    found: dict[str, dict[int, Path]] = {}
    endings: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        ending = next((e for e in IMAGE_ENDINGS if path.name.endswith(e)), None)
        if ending is None or not path.is_file():
            continue
        match = CHANNEL.match(path.name[: -len(ending)])
        if match is None:
            continue
        found.setdefault(match.group("case"), {})[int(match.group("channel"))] = path
        endings[match.group("case")] = ending
    problems = []
    for case, channels in sorted(found.items()):
        missing = [c for c in range(num_channels) if c not in channels]
        extra = sorted(c for c in channels if c >= num_channels)
        if missing:
            problems.append(f"{case}: missing channel file(s) {[f'{case}_{c:04d}' for c in missing]}")
        if extra:
            problems.append(
                f"{case}: {len(channels)} channel file(s) given, the model needs {num_channels}: "
                f"channel(s) {extra} are beyond the model's"
            )
    if problems:
        raise ValueError(
            f"{folder}: {len(problems)} problem(s) with the input files:\n  " + "\n  ".join(problems)
        )
    return [
        InputCase(
            case,
            endings[case],
            partial(_load_channels, tuple(ch[c] for c in range(num_channels))),
            str(folder / case),
            files=tuple(str(ch[c]) for c in range(num_channels)),
        )
        for case, ch in sorted(found.items())
    ]


def discover_inputs(
    path: str | Path, channel_names: list[str], dicom_notes: list[str] | None = None
) -> list[InputCase]:
    """The cases under ``path`` (see the module docstring).

    Args:
        path: a folder in raw naming, an image file, or a folder of DICOM series.
        channel_names: the model's input channels, in order (dataset.json ``channel_names``).
        dicom_notes: receives notes about skipped DICOM objects and failed series, when given.

    Raises:
        FileNotFoundError: ``path`` does not exist or holds nothing to segment.
        ValueError: cases with missing or surplus channels (all listed).
    """
    path, num_channels = Path(path), len(channel_names)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_file():
        return [file_case(path, num_channels)]
    cases = _folder_cases(path, num_channels)
    if cases:
        return cases
    from autoseg.inference.dicom_inputs import dicom_cases

    cases = dicom_cases(path, num_channels, dicom_notes if dicom_notes is not None else [], channel_names)
    if not cases:
        raise FileNotFoundError(
            f"{path} holds no images to segment: expected <case>_0000<ending> files "
            f"({', '.join(IMAGE_ENDINGS)}) or DICOM series"
        )
    return cases
