"""The dataset fingerprint: spacings, shapes before and after cropping, foreground intensities.

One pass over the cases (in parallel, a few cases in memory at a time) both validates each
case's content and measures it, so a file is read once. The result, ``fingerprint.json``,
is the only input of the planner.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.io.dataset import Case, RawDataset
from autoseg.io.images import ImageReadError, read_geometry
from autoseg.io.problems import no_foreground_anywhere
from autoseg.io.structure import check_layout
from autoseg.io.validation import Problem, load_and_check_case, raise_for_problems
from autoseg.preprocessing.crop import nonzero_bbox
from autoseg.preprocessing.workers import case_memory_bytes, workers_that_fit
from autoseg.utils.files import read_artifact, write_artifact
from autoseg.utils.parallel import default_num_workers, parallel_map

FINGERPRINT_SCHEMA_VERSION = 1
#: Foreground intensity samples pooled over the dataset; each case contributes an equal share.
#: nnU-Net pools 1e8; 1e7 gives the same percentiles to well under 0.1% at a tenth of the memory.
TOTAL_INTENSITY_SAMPLES = 10_000_000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseFingerprint:
    """What one case contributes: geometry facts, and foreground samples per channel (C, N)."""

    name: str
    spacing: tuple[float, ...]
    shape_before_crop: tuple[int, ...]
    shape_after_crop: tuple[int, ...]
    samples: np.ndarray
    replaced: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def relative_size_after_cropping(self) -> float:
        return float(np.prod(self.shape_after_crop) / np.prod(self.shape_before_crop))


def fingerprint_case(
    item: tuple[int, Case],
    dataset: RawDataset,
    samples_per_case: int,
    seed: int,
    nonfinite: float | None = None,
) -> tuple[CaseFingerprint | None, list[Problem]]:
    """Read, check and measure one case (runs in a worker process).

    Foreground is the label > 0 inside the non-zero crop; ``samples_per_case`` intensities
    per channel are drawn from it with replacement, with a generator seeded by
    ``(seed, case index)`` so the fingerprint does not depend on the number of workers.
    ``nonfinite`` replaces NaN and infinite intensities by that value (else they are errors).
    """
    index, case = item
    loaded, problems = load_and_check_case(case, dataset, nonfinite)
    if loaded is None:
        return None, problems
    bbox, _ = nonzero_bbox(loaded.images)
    region = tuple(slice(lo, hi) for lo, hi in bbox)
    images = loaded.images[(slice(None), *region)]
    shape_after = tuple(int(hi - lo) for lo, hi in bbox)
    rng = np.random.default_rng([seed, index])
    label = loaded.label[region] if loaded.label is not None else None
    if label is None or not np.any(label > 0):
        samples = np.zeros((images.shape[0], 0), dtype=np.float32)
    else:
        flat = np.flatnonzero(label > 0)
        picks = flat[rng.integers(0, flat.size, samples_per_case)]
        samples = images.reshape(images.shape[0], -1)[:, picks].astype(np.float32)
    spacing = tuple(float(s) for s in loaded.geometry.spacing)
    if len(spacing) == 2:  # a 2D image is one slice of a volume with a very thick pseudo-spacing
        spacing = (999.0 * max(spacing), *spacing)
    fp = CaseFingerprint(
        name=case.name,
        spacing=spacing,
        shape_before_crop=tuple(int(s) for s in loaded.images.shape[1:]),
        shape_after_crop=shape_after,
        samples=samples,
        replaced=loaded.replaced,
    )
    return fp, problems


def intensity_statistics(samples: np.ndarray) -> dict[str, float]:
    """Pooled statistics of one channel's foreground samples (nnU-Net's key names)."""
    if samples.size == 0:
        return {k: 0.0 for k in ("mean", "median", "std", "min", "max", "percentile_99_5", "percentile_00_5")}
    s = samples.astype(np.float64)
    p005, median, p995 = np.percentile(s, [0.5, 50.0, 99.5])
    return {
        "mean": float(s.mean()),
        "median": float(median),
        "std": float(s.std()),
        "min": float(s.min()),
        "max": float(s.max()),
        "percentile_99_5": float(p995),
        "percentile_00_5": float(p005),
    }


def _header_case_bytes(dataset: RawDataset) -> list[int]:
    """Per case its estimated worker memory, from the image headers (unreadable ones are skipped:
    the case's own check reports them)."""
    out = []
    for case in dataset.cases:
        if not case.images:
            continue
        try:
            geometry, _ = read_geometry(case.images[0])
        except (ImageReadError, OSError):
            continue
        shape = geometry.shape
        out.append(case_memory_bytes(shape, shape, geometry.spacing, None, len(case.images)))
    return out


def compute_fingerprint(
    dataset: RawDataset, num_workers: int | None = None, seed: int = 1234, nonfinite: float | None = None
) -> dict[str, Any]:
    """Validate and fingerprint a raw dataset.

    Args:
        dataset: the raw dataset.
        num_workers: worker processes (None: all cores); lowered, with a log line, where that many of
            the largest case (from the image headers) would not fit in the memory available.
        seed: seed of the intensity sampling.
        nonfinite: replace NaN and infinite intensities by this value (each file is named in a
            warning and in ``nonfinite_intensities``) instead of refusing them.

    Returns:
        The fingerprint as a JSON-able dict (without kind/schema_version).

    Raises:
        DatasetValidationError: listing every error found in the dataset; nothing is returned.
    """
    problems = check_layout(dataset)  # each case's own files are checked with the case, below
    per_case = max(1, TOTAL_INTENSITY_SAMPLES // max(1, len(dataset.cases)))
    light = dataclasses.replace(dataset, cases=(), description={})  # pickled once per task: keep it small
    work = functools.partial(
        fingerprint_case, dataset=light, samples_per_case=per_case, seed=seed, nonfinite=nonfinite
    )
    requested = default_num_workers() if num_workers is None else int(num_workers)
    workers = workers_that_fit(requested, _header_case_bytes(dataset), "fingerprint")
    results = parallel_map(work, list(enumerate(dataset.cases)), workers, desc="fingerprint")
    for _, case_problems in results:
        problems.extend(case_problems)
    problems += no_foreground_anywhere(problems, sum(c.label is not None for c in dataset.cases))
    raise_for_problems(problems)
    for p in problems:
        log.warning("%s", p)
    cases = [fp for fp, _ in results if fp is not None]
    pooled = np.concatenate([c.samples for c in cases], axis=1)
    spacings = np.array([c.spacing for c in cases])
    shapes = np.array([c.shape_after_crop for c in cases])
    extra: dict[str, Any] = {}
    if nonfinite is not None:
        files = {f: n for c in cases for f, n in c.replaced.items()}
        extra["nonfinite_intensities"] = {"replaced_with": float(nonfinite), "files": files}
    order = dataset.description.get("regions_class_order")
    return {
        "dataset_name": dataset.name,
        "num_cases": len(cases),
        "channel_names": {str(k): v for k, v in dataset.channel_names.items()},
        "labels": dataset.labels,
        **({"regions_class_order": [int(v) for v in order]} if dataset.has_regions and order else {}),
        "file_ending": dataset.file_ending,
        "cases": [
            {
                "name": c.name,
                "spacing": list(c.spacing),
                "shape_before_crop": list(c.shape_before_crop),
                "shape_after_crop": list(c.shape_after_crop),
                "relative_size_after_cropping": c.relative_size_after_cropping,
            }
            for c in cases
        ],
        "median_spacing": np.median(spacings, axis=0).tolist(),
        "median_shape_after_crop": np.median(shapes, axis=0).tolist(),
        "median_relative_size_after_cropping": float(
            np.median([c.relative_size_after_cropping for c in cases])
        ),
        "foreground_intensity_properties_per_channel": {
            str(ch): intensity_statistics(pooled[i]) for i, ch in enumerate(sorted(dataset.channel_names))
        },
        "intensity_samples_per_case": per_case,
        "warnings": [str(p) for p in problems],
        **extra,
    }


def write_fingerprint(path: Path, fingerprint: dict[str, Any]) -> Path:
    return write_artifact(path, "fingerprint", FINGERPRINT_SCHEMA_VERSION, fingerprint)


def read_fingerprint(path: Path) -> dict[str, Any]:
    return read_artifact(path, "fingerprint", FINGERPRINT_SCHEMA_VERSION)
