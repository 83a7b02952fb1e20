"""Conversions into autoseg's inputs: DICOM series to NIfTI, MSD tasks to the nnU-Net v2 raw layout.

:func:`convert_dicom` writes every image series under a folder as ``<SeriesInstanceUID>.nii.gz``
plus a ``series.json`` listing (no patient identifiers); a bad series is reported and the
others are still converted. :func:`convert_msd` turns a Medical Segmentation Decathlon task
(``TaskXX_Name`` with 4D multi-channel images) into ``DatasetXXX_Name`` with one 3D file per
channel, written into a hidden folder first and renamed when complete.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.io.dicom import DicomSeriesError, find_series, read_series, series_output_name
from autoseg.io.images import write_image
from autoseg.io.preflight import json_file
from autoseg.io.problems import raise_for_input_problems
from autoseg.utils.files import atomic_path, write_json

MSD_TASK = re.compile(r"^Task(\d+)_([A-Za-z0-9_\-]+)$")
ENDING = ".nii.gz"


@dataclass
class DicomConversion:
    """What :func:`convert_dicom` did.

    Attributes:
        written: one entry per converted series, as listed in ``series.json``.
        notes: objects and files skipped while searching (no patient data).
        errors: one message per series that could not be converted.
    """

    written: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _compact(array: np.ndarray) -> np.ndarray:
    """int16 when every value is an integer in int16's range (CT in HU), else float32."""
    if array.size and np.all(np.isfinite(array)) and array.min() >= -32768 and array.max() <= 32767:
        as_int = array.astype(np.int16)
        if np.array_equal(as_int, array):
            return as_int
    return array.astype(np.float32, copy=False)


def convert_dicom(in_folder: str | os.PathLike[str], out_folder: str | os.PathLike[str]) -> DicomConversion:
    """Convert every image series under ``in_folder`` to ``out_folder/<series name>.nii.gz``.

    Also writes ``out_folder/series.json``: per file the series UID, number, description,
    modality, shape and spacing (z, y, x); then the errors and notes.

    Raises:
        FileNotFoundError: ``in_folder`` is not a folder.

    Example:
        >>> result = convert_dicom("study/", "nifti/")  # doctest: +SKIP
        >>> [e["file"] for e in result.written]  # doctest: +SKIP
        ['1.2.826.0.1.3680043.2.1125.1.nii.gz']
    """
    out = Path(out_folder)
    series, notes = find_series(in_folder)
    result = DicomConversion(notes=notes)
    failed = []
    for s in series:
        try:
            array, geometry = read_series(s)
        except DicomSeriesError as err:
            result.errors.append(str(err))
            failed.append({"series_uid": s.uid, "folder": s.folder, "problems": err.problems})
            continue
        name = series_output_name(s) + ENDING
        write_image(_compact(array), geometry, out / name)
        result.written.append(
            {
                "file": name,
                "series_uid": s.uid,
                "series_number": s.number,
                "description": s.description,
                "modality": s.modality,
                "folder": s.folder,
                "num_instances": s.num_instances,
                "shape": list(geometry.shape),
                "spacing": list(geometry.spacing),
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "series.json", {"series": result.written, "errors": failed, "notes": notes})
    return result


@dataclass(frozen=True)
class _CaseJob:
    image: Path
    label: Path | None
    case: str
    images_out: Path
    labels_out: Path | None
    num_channels: int


def msd_dataset_name(task_folder: str | os.PathLike[str], dataset_id: int | None, name: str | None) -> str:
    """``DatasetXXX_Name`` for an MSD task folder; ID and name default to the task's.

    Example:
        >>> msd_dataset_name("/data/Task04_Hippocampus", None, None)
        'Dataset004_Hippocampus'
        >>> msd_dataset_name("/data/Task04_Hippocampus", 104, "Hippo")
        'Dataset104_Hippo'
    """
    folder = Path(task_folder).name
    match = MSD_TASK.match(folder)
    if (dataset_id is None or name is None) and match is None:
        raise ValueError(
            f"{task_folder}: the folder name {folder!r} is not TaskXX_Name; give -d ID and --name NAME"
        )
    number = dataset_id if dataset_id is not None else int(match.group(1))  # type: ignore[union-attr]
    title = name if name is not None else match.group(2)  # type: ignore[union-attr]
    if not 0 <= number <= 999 or not re.fullmatch(r"[A-Za-z0-9_\-]+", title):
        raise ValueError(
            f"dataset ID {number} / name {title!r}: the ID must be 0..999, the name only A-Z a-z 0-9 _ -"
        )
    return f"Dataset{number:03d}_{title}"


def _cases(folder: Path) -> list[tuple[str, Path]]:
    """(case, file) of every ``*.nii.gz`` in ``folder``; hidden files (MSD's ``._*``) are skipped."""
    if not folder.is_dir():
        return []
    return [
        (p.name[: -len(ENDING)], p)
        for p in sorted(folder.iterdir())
        if p.name.endswith(ENDING) and not p.name.startswith(".") and p.is_file()
    ]


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst, suffix=ENDING) as tmp:
        shutil.copyfile(src, tmp)


def _convert_case(job: _CaseJob) -> str | None:
    """Split one MSD image into channel files (and copy its label); an error message or None."""
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(job.image))
        reader.ReadImageInformation()
        dims, components = reader.GetDimension(), reader.GetNumberOfComponents()
        size = list(reader.GetSize())
        found = size[3] if dims == 4 else components
        if dims not in (3, 4) or (dims == 4 and components != 1) or found != job.num_channels:
            return f"{job.image}: {dims}D image, {found} channel(s); dataset.json lists {job.num_channels}"
        if found == 1 and dims == 3:
            _copy(job.image, job.images_out / f"{job.case}_0000{ENDING}")
        else:
            image = sitk.ReadImage(str(job.image))
            for c in range(found):
                channel = _channel(image, c)
                with atomic_path(job.images_out / f"{job.case}_{c:04d}{ENDING}", suffix=ENDING) as tmp:
                    sitk.WriteImage(channel, str(tmp), useCompression=True)
        if job.label is not None and job.labels_out is not None:
            _copy(job.label, job.labels_out / f"{job.case}{ENDING}")
    except (RuntimeError, OSError) as err:
        lines = [ln for ln in str(err).splitlines() if ln.strip()]
        return f"{job.image}: cannot convert ({lines[-1].strip() if lines else type(err).__name__})"
    return None


def _channel(image: Any, c: int) -> Any:
    """Channel ``c`` of a 4D (x, y, z, c) or 3D vector image: 3D, with the first 3 axes' geometry."""
    import SimpleITK as sitk

    if image.GetDimension() == 3:
        return sitk.VectorIndexSelectionCast(image, c)
    extract = sitk.ExtractImageFilter()
    extract.SetSize([*image.GetSize()[:3], 0])
    extract.SetIndex([0, 0, 0, c])
    extract.SetDirectionCollapseToStrategy(sitk.ExtractImageFilter.DIRECTIONCOLLAPSETOSUBMATRIX)
    return extract.Execute(image)


def _msd_description(task: Path) -> tuple[dict[str, Any], dict[str, str], dict[str, int]]:
    path = task / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give the MSD task folder (TaskXX_Name) holding it")
    desc, problems = json_file(path, "fix the MSD task's dataset.json (an object with modality and labels)")
    raise_for_input_problems(problems)
    modality, labels = desc.get("modality"), desc.get("labels")
    if not isinstance(modality, dict) or not modality or not all(str(k).isdigit() for k in modality):
        raise ValueError(f'{path}: "modality" must map channel numbers to names, got {modality!r}')
    if not isinstance(labels, dict) or not all(str(k).isdigit() for k in labels):
        raise ValueError(f'{path}: "labels" must map label values to names, got {labels!r}')
    channels = {str(int(k)): str(v) for k, v in sorted(modality.items(), key=lambda kv: int(kv[0]))}
    names = {str(v): int(k) for k, v in sorted(labels.items(), key=lambda kv: int(kv[0]))}
    return desc, channels, names


def convert_msd(
    task_folder: str | os.PathLike[str],
    out_root: str | os.PathLike[str],
    dataset_id: int | None = None,
    name: str | None = None,
    num_workers: int | None = None,
) -> Path:
    """Convert an MSD task folder into ``out_root/DatasetXXX_Name`` (nnU-Net v2 raw layout).

    4D images (x, y, z, c) are split into ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``, ...
    keeping the first three axes' spacing, origin and direction; labels are copied; imagesTs
    is converted likewise. dataset.json gets channel_names, labels (name -> value),
    numTraining and file_ending.

    Returns:
        The new dataset folder.

    Raises:
        FileNotFoundError: the task has no dataset.json.
        ValueError: the target exists, another dataset has the same ID, a case has no label
            or the wrong number of channels (every such case is listed).

    Example:
        >>> convert_msd("Task04_Hippocampus", "raw/")  # doctest: +SKIP
        PosixPath('raw/Dataset004_Hippocampus')
    """
    from autoseg.utils.parallel import parallel_map

    task, root = Path(task_folder), Path(out_root)
    desc, channels, labels = _msd_description(task)
    target_name = msd_dataset_name(task, dataset_id, name)
    target = root / target_name
    _check_target(root, target)
    partial = root / f".{target_name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    jobs, errors = _jobs(task, partial, len(channels))
    if not any(j.label is not None for j in jobs) and not errors:
        raise ValueError(f"{task / 'imagesTr'}: no training images (*{ENDING}) found")
    errors += [e for e in parallel_map(_convert_case, jobs, num_workers, desc="convert MSD") if e]
    if errors:
        shutil.rmtree(partial, ignore_errors=True)
        raise ValueError(f"{task}: {len(errors)} case(s) cannot be converted:\n" + "\n".join(errors))
    description = {k: desc[k] for k in ("description", "reference", "licence", "release") if k in desc}
    write_json(
        partial / "dataset.json",
        {
            "name": target_name.split("_", 1)[1],
            **description,
            "channel_names": channels,
            "labels": labels,
            "numTraining": sum(j.label is not None for j in jobs),
            "file_ending": ENDING,
            "converted_from": task.name,
        },
    )
    os.replace(partial, target)
    return target


def _check_target(root: Path, target: Path) -> None:
    if target.exists():
        raise ValueError(f"{target} already exists; delete it or choose another ID (-d) or name (--name)")
    prefix = target.name.split("_", 1)[0]
    clash = sorted(p.name for p in root.glob(f"{prefix}_*") if p.is_dir()) if root.is_dir() else []
    if clash:
        raise ValueError(
            f"{root} already holds {', '.join(clash)} with the same ID; choose another ID with -d"
        )


def _jobs(task: Path, out: Path, num_channels: int) -> tuple[list[_CaseJob], list[str]]:
    jobs, errors = [], []
    for case, image in _cases(task / "imagesTr"):
        label = task / "labelsTr" / image.name
        if not label.is_file():
            errors.append(f"{image}: no label {label}")
            continue
        jobs.append(_CaseJob(image, label, case, out / "imagesTr", out / "labelsTr", num_channels))
    for case, image in _cases(task / "imagesTs"):
        jobs.append(_CaseJob(image, None, case, out / "imagesTs", None, num_channels))
    return jobs, errors
