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

import functools
import logging
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from autoseg.contracts.case import CaseProperties
from autoseg.contracts.labels import LabelManager
from autoseg.inference.cases import InputCase
from autoseg.inference.memory import peak_rss_mib, predict_memory_estimate
from autoseg.inference.predictor import ConfigurationPredictor
from autoseg.inference.uncertainty import HIGH_ENTROPY, MemberStatistics, UncertaintyMaps, member_kind
from autoseg.inference.writer import export_prediction
from autoseg.io.images import Geometry
from autoseg.io.nonfinite import count_nonfinite, describe, replace_nonfinite
from autoseg.utils.faults import reached
from autoseg.utils.files import remove_stale_temporaries, write_artifact

__all__ = ["predict_cases"]

log = logging.getLogger(__name__)
PREDICT_SCHEMA_VERSION = 1
Writer = Callable[[InputCase, np.ndarray, Geometry, Path], list[Path]]


def _prepare(
    case: InputCase, predictors: Sequence[ConfigurationPredictor], nonfinite: float | None = None
) -> tuple[list, Geometry, int]:
    """Read and preprocess a case; also the number of non-finite voxels replaced by ``nonfinite``."""
    images, geometry = case.load()
    replaced = check_nonfinite(case, images, nonfinite)
    if replaced and nonfinite is not None:
        images = replace_nonfinite(images, nonfinite)
    return [p.preprocess(case.name, images, geometry) for p in predictors], geometry, replaced


def check_nonfinite(case: InputCase, images: np.ndarray, nonfinite: float | None) -> int:
    """The NaN/inf voxels of a case's (C, Z, Y, X) images, each channel file named.

    Raises:
        ValueError: there are some and ``nonfinite`` is None.
    """
    per_channel = [(c, count_nonfinite(images[c])) for c in range(images.shape[0])]
    found = [(c, counts) for c, counts in per_channel if counts]
    if not found:
        return 0
    name = [
        case.files[c] if c < len(case.files) else f"{case.source} channel {c}" for c in range(len(images))
    ]
    listed = "; ".join(f"{name[c]}: {describe(counts, images[0].size)}" for c, counts in found)
    if nonfinite is None:
        raise ValueError(
            f"{listed}; replace them, or rerun with --allow-nonfinite VALUE to replace them by VALUE"
        )
    log.warning("%s replaced by %g (--allow-nonfinite)", listed, nonfinite)
    return sum(n for _, counts in found for n in counts.values())


def _finish(
    case: InputCase,
    probs_per_config: list[tuple[np.ndarray, CaseProperties]],
    geometry: Geometry,
    output: Path,
    postprocessing: Any,
    keep_probabilities: bool,
    writers: Sequence[Writer],
    labels: LabelManager | None,
    maps: Any = None,
    uncertainty: Any = None,
    temperature: float | None = None,
    activated: bool = True,
) -> list[Path]:
    seg, written = export_prediction(
        case.name,
        case.output_ending,
        probs_per_config,
        geometry,
        output,
        postprocessing,
        keep_probabilities,
        labels,
        temperature,
        activated,
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
    nonfinite: float | None = None,
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
        nonfinite: replace NaN and infinite intensities by this value (logged; the count is in
            ``predict.json``); None makes a case with any a failed case.
        uncertainty: also write ``uncertainty/<case>_entropy`` and ``_disagreement`` maps and their
            per-case summaries (:mod:`autoseg.inference.uncertainty`); the masks do not change.
        temperature: divide the log-probabilities by it before saving ``<case>.npz`` (the
            calibration of ``autoseg find-best``); the masks do not change.

    Returns:
        The contents of ``predict.json``: per case its written files or its error. A case that fails
        (an unreadable file, a bad DICOM series) is reported and the others still run.
    """
    output.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output)  # a killed earlier run's half-written files (each logged)
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    maps_writer = UncertaintyMaps() if uncertainty else None
    finish = functools.partial(
        _finish,
        output=output,
        postprocessing=postprocessing,
        keep_probabilities=keep_probabilities,
        writers=writers,
        labels=predictors[0].plans.labels if predictors else None,
        uncertainty=maps_writer,
        temperature=temperature,
    )
    with (
        ThreadPoolExecutor(1, thread_name_prefix="prepare") as prep,
        ThreadPoolExecutor(1, thread_name_prefix="export") as export,
    ):
        pending: Future | None = prep.submit(_prepare, cases[0], predictors, nonfinite) if cases else None
        exports: list[tuple[InputCase, Future]] = []
        for i, case in enumerate(tqdm(cases, desc="predict", unit="case", file=sys.stderr)):
            assert pending is not None
            current, pending = pending, None
            if i + 1 < len(cases):
                pending = prep.submit(_prepare, cases[i + 1], predictors, nonfinite)
            try:
                prepared, geometry, replaced = current.result()
                probs, maps, activated = _probabilities(predictors, prepared, maps_writer, keep_probabilities)
            except Exception as err:  # one bad case must not stop the others
                log.error("%s: %s", case.source, err)
                results.append(
                    {"case": case.name, "source": case.source, "error": str(err), "finished_s": _since(t0)}
                )
                continue
            reached("case")  # fault injection (tests): AUTOSEG_KILL_AT=case:N
            _drain(exports, results, t0, keep=1)  # at most one case waits for export
            estimate = _estimate(case, predictors, prepared, probs, keep_probabilities)
            extra = {**case.extra, "memory_estimate_mib": estimate["total_mib"]}
            noted = replace(case, extra={**extra, "nonfinite_replaced": replaced} if replaced else extra)
            job = functools.partial(finish, case, probs, geometry, maps=maps, activated=activated)
            exports.append((noted, export.submit(_timed, job)))
        _drain(exports, results, t0, keep=0)
    summary = _summary(record, predictors, postprocessing, nonfinite, temperature, maps_writer, results)
    estimates = [r["memory_estimate_mib"] for r in results if "memory_estimate_mib" in r]
    summary["memory"] = {"estimate_mib": max(estimates, default=None), "peak_rss_mib": peak_rss_mib()}
    log.info(
        "predict memory: estimate %s MiB, measured peak (ru_maxrss) %d MiB",
        summary["memory"]["estimate_mib"],
        summary["memory"]["peak_rss_mib"],
    )
    write_artifact(output / "predict.json", "predict", PREDICT_SCHEMA_VERSION, summary)
    return summary


def _summary(
    record: dict[str, Any] | None,
    predictors: Sequence[ConfigurationPredictor],
    postprocessing: Any,
    nonfinite: float | None,
    temperature: float | None,
    maps_writer: Any,
    results: list[dict[str, Any]],
) -> dict[str, Any]:
    """The contents of predict.json."""
    summary = {
        **(record or {}),
        "configurations": [p.configuration for p in predictors],
        "folds": {p.configuration: len(p.networks) for p in predictors},
        "options": asdict(predictors[0].options) if predictors else {},
        "backend": {p.configuration: p.backend for p in predictors},
        "postprocessing": postprocessing.to_dict() if postprocessing is not None else None,
        "nonfinite_replacement": nonfinite,
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
    return summary


def _probabilities(
    predictors: Sequence[ConfigurationPredictor], prepared: list, maps_writer: Any, keep_probabilities: bool
) -> tuple[list[tuple[np.ndarray, CaseProperties]], list[tuple[np.ndarray, CaseProperties]] | None, bool]:
    """Per configuration the network's output and the case's properties, the uncertainty maps when asked,
    and whether the outputs are probabilities (False: float16 logits for the streaming exporter).

    The outputs are the same with or without maps: the maps come from the members the same
    prediction hands to a :class:`MemberStatistics` (:meth:`ConfigurationPredictor.logits`).
    """
    sinks = [MemberStatistics(p.plans.labels) if maps_writer is not None else None for p in predictors]
    if keep_probabilities:
        ready = [
            p.export_ready(data, props, sink)
            for p, (data, props), sink in zip(predictors, prepared, sinks, strict=True)
        ]
        outputs = [(r.probabilities, r.properties, True, _maps_of(r.maps, r.maps_properties)) for r in ready]
    else:  # the streaming exporter: logits in the network's grid (probabilities on the torch resampler)
        outputs = [
            p.compact_output(data, props, sink)
            for p, (data, props), sink in zip(predictors, prepared, sinks, strict=True)
        ]
    maps = [m for *_, m in outputs if m is not None] if maps_writer is not None else None
    if len({activated for _, _, activated, _ in outputs}) > 1:  # mixed: activate all (rare)
        activated_all = [
            (a if done else p.plans.labels.activate(torch.from_numpy(a.astype(np.float32))).numpy(), props)
            for p, (a, props, done, _) in zip(predictors, outputs, strict=True)
        ]
        return activated_all, maps, True
    return [(a, props) for a, props, _, _ in outputs], maps, outputs[0][2]


def _maps_of(
    maps: np.ndarray | None, properties: CaseProperties | None
) -> tuple[np.ndarray, CaseProperties] | None:
    return (maps, properties) if maps is not None and properties is not None else None


def _timed(job: Callable[[], list[Path]]) -> tuple[list[Path], float]:
    """The files ``job`` wrote and the seconds it took (a case's export)."""
    start = time.perf_counter()
    files = job()
    return files, round(time.perf_counter() - start, 3)


def _estimate(
    case: InputCase,
    predictors: Sequence[ConfigurationPredictor],
    prepared: list,
    outputs: list[tuple[np.ndarray, CaseProperties]],
    keep_probabilities: bool,
) -> dict[str, int]:
    """The case's memory estimate (:mod:`autoseg.inference.memory`), logged."""
    native_shape = prepared[0][1].shape_before_cropping
    channels = predictors[0].num_channels if predictors else 1
    largest = max((data.shape for data, _ in prepared), key=lambda s: int(np.prod(s)))
    weights = sum(_weights_bytes(n) for p in predictors for n in p.networks)
    estimate = predict_memory_estimate(
        outputs[0][0].shape[0],
        (channels, *native_shape),
        largest,
        sum(int(a.nbytes) for a, _ in outputs),
        keep_probabilities,
        weights_bytes=weights,
    )
    log.info("%s: memory estimate %s", case.name, ", ".join(f"{k} {v}" for k, v in estimate.items()))
    return estimate


def _weights_bytes(network: Any) -> int:
    """Bytes of a network's parameters (0 for an exported backend's session)."""
    parameters = getattr(network, "parameters", None)
    if not callable(parameters):
        return 0
    return sum(int(t.numel()) * t.element_size() for t in parameters())


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)


def _drain(
    exports: list[tuple[InputCase, Future]], results: list[dict[str, Any]], t0: float, keep: int
) -> None:
    """Collect finished exports until at most ``keep`` wait; ``finished_s``: seconds since the run began."""
    while len(exports) > keep:
        case, future = exports.pop(0)
        try:
            files, seconds = future.result()
            done: dict[str, Any] = {"files": [f.name for f in files], "export_s": seconds}
            done["memory_estimate_mib"] = case.extra["memory_estimate_mib"]
            if case.extra.get("nonfinite_replaced"):
                done["nonfinite_replaced"] = case.extra["nonfinite_replaced"]
        except Exception as err:
            log.error("%s: %s", case.source, err)
            done = {"error": str(err)}
        results.append({"case": case.name, "source": case.source, **done, "finished_s": _since(t0)})
