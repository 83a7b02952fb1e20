"""The nnU-Net v2 raw layout: ``DatasetXXX_Name/{dataset.json, imagesTr/, labelsTr/}``.

Images are ``{CASE}_{XXXX}{file_ending}`` with a 4-digit channel index, labels are
``{CASE}{file_ending}``. :func:`load_raw_dataset` reads dataset.json and pairs the files
into :class:`Case` objects; it does not judge them: :mod:`autoseg.io.validation` does.

As in nnU-Net v2, dataset.json may instead list the files explicitly under the optional
``"dataset"`` key, ``{"case_id": {"images": ["imagesTr/a_0000.nii.gz", ...], "label": "labelsTr/a.nii.gz"}}``,
with paths relative to the dataset folder; the list position is the channel index.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASET_NAME = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9_\-]+)$")
CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset name, number or path that does not lead to a raw dataset folder."""


@dataclass(frozen=True)
class Case:
    """One training case: its channel files by channel index, and its label file.

    Attributes:
        name: the case identifier (``hippocampus_006``).
        channel_files: channel index -> image file; a missing channel is a missing key.
        label: the label file, or None for a case without one.
    """

    name: str
    channel_files: dict[int, Path]
    label: Path | None

    @property
    def images(self) -> tuple[Path, ...]:
        """The channel files in channel order."""
        return tuple(self.channel_files[c] for c in sorted(self.channel_files))


@dataclass(frozen=True)
class RawDataset:
    """A raw dataset folder and what dataset.json says of it.

    Attributes:
        root: the ``DatasetXXX_Name`` folder.
        name: the folder name, e.g. ``Dataset004_Hippocampus``.
        description: dataset.json as parsed (empty if it is missing or broken).
        channel_names: channel index -> name (``{0: "CT"}``), from dataset.json.
        labels: label name -> value (ints; regions are lists of ints).
        file_ending: e.g. ``.nii.gz``.
        cases: the cases found in imagesTr/labelsTr (or listed under dataset.json's
            ``"dataset"`` key), sorted by name.
        explicit_files: True when dataset.json has a ``"dataset"`` key listing the files.
    """

    root: Path
    name: str
    description: dict[str, Any]
    channel_names: dict[int, str]
    labels: dict[str, Any]
    file_ending: str
    cases: tuple[Case, ...] = field(default=())
    explicit_files: bool = False

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def label_values(self) -> list[int]:
        """Every integer value a label map may contain (background included), sorted."""
        values: set[int] = set()
        for v in self.labels.values():
            if isinstance(v, list | tuple):
                values.update(int(x) for x in v)
            else:
                values.add(int(v))
        return sorted(values)

    @property
    def foreground_labels(self) -> list[int]:
        return [v for v in self.label_values if v != 0]

    @property
    def has_regions(self) -> bool:
        return any(isinstance(v, list | tuple) for v in self.labels.values())


def resolve_dataset(dataset: str | os.PathLike[str], raw_root: str | os.PathLike[str] | None) -> Path:
    """Find a raw dataset folder from a path, a ``DatasetXXX_Name`` name, or a number.

    Args:
        dataset: a folder path, ``Dataset004_Hippocampus``, ``004`` or ``4``.
        raw_root: the raw root (``AUTOSEG_RAW`` / ``paths.raw``); needed unless ``dataset`` is a path.

    Raises:
        DatasetNotFoundError: naming what was tried and how to fix it.

    Example:
        >>> resolve_dataset("4", "/data/raw")  # doctest: +SKIP
        PosixPath('/data/raw/Dataset004_Hippocampus')
    """
    text = str(dataset)
    as_path = Path(text).expanduser()
    if as_path.is_dir() and ((as_path / "dataset.json").exists() or "/" in text):
        return as_path.resolve()
    if raw_root is None:
        raise DatasetNotFoundError(
            f"dataset {text!r}: not a folder, and no raw root is set. Give the dataset folder's path, "
            "or set AUTOSEG_RAW (or paths.raw=...) to the folder that holds DatasetXXX_Name folders."
        )
    raw = Path(raw_root).expanduser()
    if DATASET_NAME.match(text):
        candidate = raw / text
        if candidate.is_dir():
            return candidate.resolve()
        raise DatasetNotFoundError(f"dataset {text!r}: {candidate} does not exist")
    if text.isdigit():
        number = int(text)
        matches = sorted(p for p in raw.glob(f"Dataset{number:03d}_*") if p.is_dir()) if raw.is_dir() else []
        if len(matches) == 1:
            return matches[0].resolve()
        if not matches:
            raise DatasetNotFoundError(f"dataset {text!r}: no folder Dataset{number:03d}_* in {raw}")
        raise DatasetNotFoundError(
            f"dataset {text!r}: several folders match in {raw}: {', '.join(m.name for m in matches)}; "
            "give the full name"
        )
    raise DatasetNotFoundError(
        f"dataset {text!r}: expected a folder path, a name like Dataset004_Hippocampus or a number like 4"
    )


def split_channel(stem: str) -> tuple[str, int] | None:
    """``"case_0001"`` -> ``("case", 1)``; None when there is no 4-digit channel suffix."""
    m = CHANNEL_SUFFIX.match(stem)
    return (m.group("case"), int(m.group("channel"))) if m else None


def strip_ending(name: str, ending: str) -> str | None:
    return name[: -len(ending)] if ending and name.endswith(ending) else None


def read_description(root: Path) -> dict[str, Any]:
    """dataset.json as a dict; empty when missing or unparsable (validation reports why)."""
    try:
        data = json.loads((root / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _channel_names(desc: dict[str, Any]) -> dict[int, str]:
    raw = desc.get("channel_names") or desc.get("modality") or {}
    out: dict[int, str] = {}
    if isinstance(raw, dict):
        for k, v in raw.items():
            if str(k).isdigit():
                out[int(k)] = str(v)
    return dict(sorted(out.items()))


def _labels(desc: dict[str, Any]) -> dict[str, Any]:
    raw = desc.get("labels") or {}
    out: dict[str, Any] = {}
    if isinstance(raw, dict):
        for k, v in raw.items():
            if isinstance(v, bool):
                continue
            if isinstance(v, int) or (isinstance(v, str) and v.lstrip("-").isdigit()):
                out[str(k)] = int(v)
            elif isinstance(v, list | tuple) and all(isinstance(x, int) for x in v):
                out[str(k)] = [int(x) for x in v]
    return out


def _discover_cases(root: Path, ending: str) -> list[Case]:
    images: dict[str, dict[int, Path]] = {}
    labels: dict[str, Path] = {}
    if ending:
        images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
        for p in sorted(images_dir.iterdir()) if images_dir.is_dir() else []:
            stem = strip_ending(p.name, ending)
            parsed = split_channel(stem) if stem else None
            if parsed:
                images.setdefault(parsed[0], {})[parsed[1]] = p
        for p in sorted(labels_dir.iterdir()) if labels_dir.is_dir() else []:
            stem = strip_ending(p.name, ending)
            if stem:
                labels[stem] = p
    cases = []
    for name in sorted(set(images) | set(labels)):
        chans = images.get(name, {})
        cases.append(Case(name=name, channel_files=dict(sorted(chans.items())), label=labels.get(name)))
    return cases


def _listed_path(root: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else root / path


def _listed_cases(root: Path, listing: Any) -> list[Case]:
    """Cases listed under dataset.json's ``"dataset"`` key; malformed entries are skipped."""
    cases = []
    for name, entry in sorted(listing.items()) if isinstance(listing, dict) else []:
        if not isinstance(entry, dict):
            continue
        files = entry.get("images")
        chans = {
            i: _listed_path(root, f)
            for i, f in enumerate(files if isinstance(files, list) else [])
            if isinstance(f, str) and f
        }
        label = entry.get("label")
        label_path = _listed_path(root, label) if isinstance(label, str) and label else None
        cases.append(Case(name=str(name), channel_files=chans, label=label_path))
    return cases


def load_raw_dataset(root: str | os.PathLike[str]) -> RawDataset:
    """Read dataset.json and pair image and label files into cases.

    Files that do not fit the naming are not dropped silently: they surface as cases with
    missing parts (an image without label, a label without images), which validation lists.
    With a ``"dataset"`` key in dataset.json, the listed files are used instead of
    imagesTr/labelsTr, paths relative to ``root`` (nothing is resolved or checked here).
    """
    root = Path(root)
    desc = read_description(root)
    ending = str(desc.get("file_ending") or "")
    explicit = "dataset" in desc
    cases = _listed_cases(root, desc["dataset"]) if explicit else _discover_cases(root, ending)
    return RawDataset(
        root=root,
        name=root.name,
        description=desc,
        channel_names=_channel_names(desc),
        labels=_labels(desc),
        file_ending=ending,
        cases=tuple(cases),
        explicit_files=explicit,
    )
