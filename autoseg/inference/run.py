"""``autoseg predict``'s loop: cases through one configuration or an ensemble, written natively.

While the networks work on case *i*, a background thread reads and preprocesses case *i + 1*,
and another reverts, post-processes and writes case *i - 1*: reading, resampling and writing
overlap with the network's work (numpy, scipy, SimpleITK and torch release the GIL). At most
one case waits in each stage, so memory stays bounded by about three cases.

Outputs in the output folder: ``<case><ending>`` masks with the input's geometry and format,
``<case>.npz`` probabilities (``probabilities`` (K, Z, Y, X) float16) with ``--save-probabilities``,
and ``predict.json`` (model, configurations, folds, options, versions, cases; per case
``finished_s``, the seconds from the start of the run until its output was written).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from autoseg.inference.inputs import InputCase
from autoseg.inference.predictor import (
    ConfigurationPredictor,
    average_probabilities,
    segmentation_from,
)
from autoseg.io.images import Geometry, write_image
from autoseg.utils.files import atomic_path, write_artifact

__all__ = ["predict_cases", "save_probabilities"]

log = logging.getLogger(__name__)
PREDICT_SCHEMA_VERSION = 1
Writer = Callable[[InputCase, np.ndarray, Geometry, Path], list[Path]]


def save_probabilities(path: Path, probabilities: np.ndarray) -> Path:
    """Write (K, *spatial) probabilities as float16 in a compressed .npz, atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, probabilities=probabilities.astype(np.float16))
    return path


def load_probabilities(path: Path) -> np.ndarray:
    """Probabilities (K, *spatial) float32 from :func:`save_probabilities`'s file."""
    with np.load(path, allow_pickle=False) as npz:
        return npz["probabilities"].astype(np.float32)


def _prepare(case: InputCase, predictors: Sequence[ConfigurationPredictor]) -> tuple[list, Geometry]:
    images, geometry = case.load()
    return [p.preprocess(case.name, images, geometry) for p in predictors], geometry


def _finish(
    case: InputCase,
    probs_per_config: list[tuple[np.ndarray, dict]],
    geometry: Geometry,
    output: Path,
    postprocessing: Any,
    keep_probabilities: bool,
    writers: Sequence[Writer],
) -> list[Path]:
    from autoseg.preprocessing.preprocess import revert_preprocessing

    native = [revert_preprocessing(probs, props) for probs, props in probs_per_config]
    probabilities = native[0] if len(native) == 1 else average_probabilities(native)
    seg = segmentation_from(probabilities, postprocessing)
    written = [write_image(seg, geometry, output / f"{case.name}{case.output_ending}")]
    if keep_probabilities:
        written.append(save_probabilities(output / f"{case.name}.npz", probabilities))
    for writer in writers:
        written.extend(writer(case, seg, geometry, output))
    return written


def predict_cases(
    cases: Sequence[InputCase],
    predictors: Sequence[ConfigurationPredictor],
    output: Path,
    postprocessing: Any = None,
    keep_probabilities: bool = False,
    writers: Sequence[Writer] = (),
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Segment ``cases`` with the averaged probabilities of ``predictors``; write masks to ``output``.

    Args:
        cases: from :func:`autoseg.inference.inputs.discover_inputs`.
        predictors: one per configuration (two for an ensemble).
        output: the output folder (created).
        postprocessing: a PostprocessingSpec applied to each mask, or None.
        keep_probabilities: also write ``<case>.npz``.
        writers: extra outputs per case, e.g. a DICOM-SEG or an overlay PNG: ``(case, seg,
            geometry, output) -> written paths``.
        record: extra fields for ``predict.json`` (model, selection).

    Returns:
        The contents of ``predict.json``: per case its written files or its error. A case that fails
        (an unreadable file, a bad DICOM series) is reported and the others still run.
    """
    output.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with (
        ThreadPoolExecutor(1, thread_name_prefix="prepare") as prep,
        ThreadPoolExecutor(1, thread_name_prefix="export") as export,
    ):
        pending: Future | None = prep.submit(_prepare, cases[0], predictors) if cases else None
        exports: list[tuple[InputCase, Future]] = []
        for i, case in enumerate(tqdm(cases, desc="predict", unit="case", file=sys.stderr)):
            assert pending is not None
            current, pending = pending, None
            if i + 1 < len(cases):
                pending = prep.submit(_prepare, cases[i + 1], predictors)
            try:
                prepared, geometry = current.result()
                probs = [
                    p.export_ready(data, props) for p, (data, props) in zip(predictors, prepared, strict=True)
                ]
            except Exception as err:  # one bad case must not stop the others
                log.error("%s: %s", case.source, err)
                results.append(
                    {"case": case.name, "source": case.source, "error": str(err), "finished_s": _since(t0)}
                )
                continue
            _drain(exports, results, t0, keep=1)  # at most one case waits for export
            exports.append(
                (
                    case,
                    export.submit(
                        _finish,
                        case,
                        probs,
                        geometry,
                        output,
                        postprocessing,
                        keep_probabilities,
                        writers,
                    ),
                )
            )
        _drain(exports, results, t0, keep=0)
    summary = {
        **(record or {}),
        "configurations": [p.trained.name for p in predictors],
        "folds": {p.trained.name: len(p.networks) for p in predictors},
        "options": asdict(predictors[0].options) if predictors else {},
        "postprocessing": postprocessing.to_dict() if postprocessing is not None else None,
        "cases": results,
        "failed": sum("error" in r for r in results),
    }
    write_artifact(output / "predict.json", "predict", PREDICT_SCHEMA_VERSION, summary)
    return summary


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)


def _drain(
    exports: list[tuple[InputCase, Future]], results: list[dict[str, Any]], t0: float, keep: int
) -> None:
    """Collect finished exports until at most ``keep`` wait; ``finished_s``: seconds since the run began."""
    while len(exports) > keep:
        case, future = exports.pop(0)
        try:
            files = future.result()
            done: dict[str, Any] = {"files": [f.name for f in files]}
        except Exception as err:
            log.error("%s: %s", case.source, err)
            done = {"error": str(err)}
        results.append({"case": case.name, "source": case.source, **done, "finished_s": _since(t0)})
