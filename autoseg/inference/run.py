"""``autoseg predict``'s loop: cases through one configuration or an ensemble, written natively.

While the networks work on case *i*, a background thread reads and preprocesses case *i + 1*,
and another reverts, post-processes and writes case *i - 1*: reading, resampling and writing
overlap with the network's work (numpy, scipy, SimpleITK and torch release the GIL). At most
one case waits in each stage, so memory stays bounded by about three cases.

Outputs in the output folder: ``<case><ending>`` masks with the input's geometry and format,
``<case>.npz`` probabilities (``probabilities`` (K, Z, Y, X) float16) with ``--save-probabilities``,
and ``predict.json`` (model, configurations, folds, options, versions, cases).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from autoseg.inference.cases import InputCase
from autoseg.inference.predictor import ConfigurationPredictor
from autoseg.inference.uncertainty import HIGH_ENTROPY, UncertaintyMaps, member_kind
from autoseg.inference.writer import export_prediction
from autoseg.io.images import Geometry
from autoseg.utils.files import write_artifact

__all__ = ["predict_cases"]

log = logging.getLogger(__name__)
PREDICT_SCHEMA_VERSION = 1
Writer = Callable[[InputCase, np.ndarray, Geometry, Path], list[Path]]


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
    maps: Any = None,
    uncertainty: Any = None,
    temperature: float | None = None,
) -> list[Path]:
    seg, written = export_prediction(
        case.name,
        case.output_ending,
        probs_per_config,
        geometry,
        output,
        postprocessing,
        keep_probabilities,
        temperature,
    )
    if uncertainty is not None:
        written.extend(uncertainty.write(case.name, case.output_ending, maps, seg, geometry, output))
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
    uncertainty: bool = False,
    temperature: float | None = None,
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
        uncertainty: also write ``uncertainty/<case>_entropy`` and ``_disagreement`` maps and their
            per-case summaries (:mod:`autoseg.inference.uncertainty`); the masks do not change.
        temperature: divide the log-probabilities by it before saving ``<case>.npz`` (the
            calibration of ``autoseg find-best``); the masks do not change.

    Returns:
        The contents of ``predict.json``: per case its written files or its error. A case that fails
        (an unreadable file, a bad DICOM series) is reported and the others still run.
    """
    output.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    maps_writer = UncertaintyMaps() if uncertainty else None
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
                maps: list[tuple[np.ndarray, dict]] | None = None
                if maps_writer is None:
                    probs = [
                        (_softmax(p.logits(data)), props)
                        for p, (data, props) in zip(predictors, prepared, strict=True)
                    ]
                else:
                    both = [
                        maps_writer.logits_and_maps(p, data)
                        for p, (data, _) in zip(predictors, prepared, strict=True)
                    ]
                    probs = [
                        (_softmax(lg), props) for (lg, _), (_, props) in zip(both, prepared, strict=True)
                    ]
                    maps = [(m, props) for (_, m), (_, props) in zip(both, prepared, strict=True)]
            except Exception as err:  # one bad case must not stop the others
                log.error("%s: %s", case.source, err)
                results.append({"case": case.name, "source": case.source, "error": str(err)})
                continue
            _drain(exports, results, keep=1)  # at most one case waits for export
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
                        maps,
                        maps_writer,
                        temperature,
                    ),
                )
            )
        _drain(exports, results, keep=0)
    summary = {
        **(record or {}),
        "configurations": [p.configuration for p in predictors],
        "folds": {p.configuration: len(p.networks) for p in predictors},
        "options": asdict(predictors[0].options) if predictors else {},
        "postprocessing": postprocessing.to_dict() if postprocessing is not None else None,
        "cases": results,
        "failed": sum("error" in r for r in results),
    }
    if temperature is not None:
        summary["probability_temperature"] = temperature
    if maps_writer is not None:
        summary["uncertainty"] = {
            "members": {p.configuration: member_kind(p) for p in predictors},
            "high_entropy_threshold": HIGH_ENTROPY,
            "maps": [
                "uncertainty/<case>_entropy (normalised entropy, 0..1)",
                "uncertainty/<case>_disagreement (member variance)",
            ],
        }
        for entry in results:
            if entry["case"] in maps_writer.summaries:
                entry["uncertainty"] = maps_writer.summaries[entry["case"]]
    write_artifact(output / "predict.json", "predict", PREDICT_SCHEMA_VERSION, summary)
    return summary


def _softmax(logits: Any) -> np.ndarray:
    import torch

    return torch.softmax(logits, dim=0).numpy()


def _drain(exports: list[tuple[InputCase, Future]], results: list[dict[str, Any]], keep: int) -> None:
    while len(exports) > keep:
        case, future = exports.pop(0)
        try:
            files = future.result()
            results.append({"case": case.name, "source": case.source, "files": [f.name for f in files]})
        except Exception as err:
            log.error("%s: %s", case.source, err)
            results.append({"case": case.name, "source": case.source, "error": str(err)})
