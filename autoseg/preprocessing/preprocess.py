"""Preprocessing of a case and of a dataset, and its inverse for predictions.

Per case, as in nnU-Net: transpose (coarsest axis first) -> crop to the non-zero region ->
normalize each channel -> resample data (order 3) and label map (label-safe) to the
configuration's spacing. :func:`revert_preprocessing` maps an array of that space
(a segmentation or class probabilities) back onto the case's original voxel grid.

:func:`preprocess_dataset` runs the cases in worker processes, each reading and writing
its own case (only a small summary comes back), and skips cases already complete, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.contracts.labels import LabelManager
from autoseg.contracts.plans import Plans
from autoseg.io.dataset import Case, RawDataset
from autoseg.io.images import Geometry
from autoseg.io.problems import error
from autoseg.io.validation import load_and_check_case, raise_for_problems
from autoseg.preprocessing.crop import bbox_slices, crop_with_mask, nonzero_bbox, paste_into
from autoseg.preprocessing.locations import ANNOTATED, sample_class_locations
from autoseg.preprocessing.normalize import get_normalizer, normalize
from autoseg.preprocessing.plan import case_spacing, plan_hash, target_spacing_for, transpose_of
from autoseg.preprocessing.resample import compute_new_shape, resample_data_to_shape, resample_seg_to_shape
from autoseg.preprocessing.steps import denoise
from autoseg.preprocessing.storage import is_case_complete, save_case
from autoseg.preprocessing.workers import case_memory_bytes, workers_that_fit
from autoseg.utils.faults import reached
from autoseg.utils.files import remove_stale_temporaries
from autoseg.utils.parallel import default_num_workers, parallel_map

log = logging.getLogger(__name__)


def preprocess_case(
    loaded: Any, plans: Plans, configuration: str
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Preprocess one loaded case for a plan configuration.

    Args:
        loaded: a :class:`autoseg.io.validation.LoadedCase` (name, images (C, Z, Y, X)
            float32, label (Z, Y, X) int or None, geometry).
        plans: the plans (:class:`autoseg.contracts.Plans`).
        configuration: e.g. ``"3d_fullres"``.

    Returns:
        ``(data, seg, properties)``: data (C, Z', Y', X') float32 in the transposed axis
        order, seg (Z', Y', X') with -1 outside the non-zero mask (None without a label),
        and JSON-able properties (geometry, crop bbox, shapes and spacings).
    """
    conf = plans.configuration(configuration)
    forward, backward = transpose_of(plans, loaded.images.ndim - 1)
    spacing = [case_spacing(loaded.geometry)[a] for a in forward]
    images = loaded.images.transpose([0, *(a + 1 for a in forward)])
    label = None if loaded.label is None else loaded.label.transpose(forward)
    shape_before = list(images.shape[1:])
    bbox, mask = nonzero_bbox(images)
    images, label, mask = crop_with_mask(images, label, bbox, mask)
    cropped_shape = list(images.shape[1:])
    images = denoise(images, conf.preprocessing.get("denoise"))  # the plan's optional step
    data = normalize(
        images,
        list(conf.normalization_schemes),
        list(conf.use_mask_for_norm),
        mask,
        plans.intensity_properties(),
    )
    target = target_spacing_for(conf, spacing)
    new_shape = compute_new_shape(cropped_shape, spacing, target)
    res = dict(conf.resampling)
    threshold = float(res["separate_z_anisotropy_threshold"])
    data_order, data_order_z = int(res["data_order"]), int(res["data_order_z"])
    data = resample_data_to_shape(data, new_shape, spacing, target, data_order, data_order_z, threshold)
    seg = None
    if label is not None:
        seg_order, seg_order_z = int(res["seg_order"]), int(res["seg_order_z"])
        seg = resample_seg_to_shape(label, new_shape, spacing, target, seg_order, seg_order_z, threshold)
    properties = {
        "case": loaded.name,
        "configuration": configuration,
        "geometry": loaded.geometry.to_json(),
        "transpose_forward": forward,
        "transpose_backward": backward,
        "shape_before_cropping": shape_before,
        "bbox_used_for_cropping": bbox,
        "shape_after_cropping_and_before_resampling": cropped_shape,
        "shape_after_resampling": list(new_shape),
        "spacing": [float(s) for s in spacing],
        "target_spacing": [float(s) for s in target],
        "resampling": res,
    }
    return data, seg, properties


def revert_preprocessing(
    array: np.ndarray,
    properties: Mapping[str, Any],
    order: int | None = None,
    order_z: int | None = None,
    regions: bool = False,
) -> np.ndarray:
    """Map a preprocessed-space array back onto the case's original voxel grid.

    A segmentation (Z', Y', X') is resampled label-safe (order ``seg_order``; -1 becomes
    0); probabilities (K, Z', Y', X') with ``probabilities_order``. Then the array is
    pasted into the crop bbox (outside: label 0, or probability 1 for class 0 and 0 for
    the others; with ``regions``, 0 for every region) and transposed back.

    Args:
        array: segmentation (*spatial) or probabilities (K, *spatial) in preprocessed space.
        properties: the case's properties from :func:`preprocess_case`.
        order: interpolation order (default from ``properties["resampling"]``).
        order_z: order along the coarse axis of anisotropic data (default likewise).
        regions: the channels are independent region probabilities (sigmoid), not a softmax
            whose channel 0 is the background.

    Returns:
        An array of shape ``geometry.shape`` (with a leading K for probabilities), to be
        written with ``Geometry.from_json(properties["geometry"])``.
    """
    spatial = len(properties["spacing"])
    res = properties["resampling"]
    cropped = properties["shape_after_cropping_and_before_resampling"]
    current, native = properties["target_spacing"], properties["spacing"]
    threshold = res["separate_z_anisotropy_threshold"]
    bbox, full = properties["bbox_used_for_cropping"], properties["shape_before_cropping"]
    backward = list(properties["transpose_backward"])
    if array.ndim == spatial:
        seg_order = res["seg_order"] if order is None else order
        seg_order_z = res["seg_order_z"] if order_z is None else order_z
        seg = resample_seg_to_shape(array, cropped, current, native, seg_order, seg_order_z, threshold)
        out = paste_into(np.where(seg < 0, 0, seg).astype(array.dtype, copy=False), bbox, full, 0)
        out = out.transpose(backward)
    elif array.ndim == spatial + 1:
        prob_order = res["probabilities_order"] if order is None else order
        prob_order_z = res.get("probabilities_order_z", res["data_order_z"]) if order_z is None else order_z
        probs = resample_data_to_shape(array, cropped, current, native, prob_order, prob_order_z, threshold)
        out = paste_into(probs, bbox, full, 0)
        outside = np.ones(out.shape[1:], dtype=bool)
        outside[bbox_slices(bbox)] = False
        if not regions:
            out[0][outside] = 1
        out = out.transpose([0, *(a + 1 for a in backward)])
    else:
        raise ValueError(
            f"expected a {spatial}D segmentation or (K, ...) probabilities, got shape {array.shape}"
        )
    geometry = Geometry.from_json(properties["geometry"])
    if geometry.ndim == spatial - 1:  # a 2D image, carried as (1, Y, X)
        out = out[..., 0, :, :]
    if tuple(out.shape[out.ndim - geometry.ndim :]) != geometry.shape:
        raise ValueError(f"reverted shape {out.shape} does not end with the geometry's {geometry.shape}")
    return np.ascontiguousarray(out)


def _preprocess_one(
    case: Case,
    dataset: RawDataset,
    plans: Plans,
    configuration: str,
    folder: Path,
    digest: str,
    labels: Sequence[int],
    seed: int,
    ignore_label: int | None = None,
) -> dict[str, Any]:
    """Worker: read, preprocess and write one case; returns a small summary, never arrays."""
    start = time.perf_counter()
    nonfinite = plans.nonfinite_replacement
    loaded, problems = load_and_check_case(case, dataset, nonfinite)
    if loaded is not None and loaded.label is None:
        loaded, problems = None, [*problems, error(case.name, "no label file; training cases need one")]
    if loaded is None:
        return {"case": case.name, "ok": False, "problems": problems}
    data, seg, properties = preprocess_case(loaded, plans, configuration)
    del loaded
    assert seg is not None
    locations = sample_class_locations(seg, labels, seed, ignore_label)
    reached("case")  # fault injection (tests): AUTOSEG_KILL_AT=case:N
    save_case(folder, case.name, data, seg, properties, locations, digest)
    return {
        "case": case.name,
        "ok": True,
        "problems": problems,
        "shape": list(data.shape),
        "seconds": round(time.perf_counter() - start, 3),
    }


def _case_bytes(plans: Plans, configuration: str, cases: Sequence[Case]) -> list[int]:
    """Per case to do, its estimated memory in a worker (from the fingerprint's shapes; none without it)."""
    conf = plans.configuration(configuration)
    todo = {c.name for c in cases}
    out = []
    for entry in (plans.fingerprint or {}).get("cases") or []:
        if entry.get("name") not in todo:
            continue
        forward, _ = transpose_of(plans, len(entry["spacing"]))
        spacing = [float(entry["spacing"][a]) for a in forward]
        target = target_spacing_for(conf, spacing)
        before, after = entry["shape_before_crop"], [entry["shape_after_crop"][a] for a in forward]
        out.append(case_memory_bytes(before, after, spacing, target, plans.num_channels))
    return out


def preprocess_dataset(
    dataset: RawDataset,
    plans: Plans,
    configuration: str,
    out_root: str | Path,
    num_workers: int | None = None,
    seed: int = 1234,
) -> Path:
    """Preprocess every case of a dataset for one configuration (parallel, resumable).

    Cases already complete for this plan (:func:`autoseg.preprocessing.storage.is_case_complete`)
    are skipped; half-written ones are redone.

    Args:
        dataset: the raw dataset.
        plans: the plans (:class:`autoseg.contracts.Plans`).
        configuration: e.g. ``"3d_fullres"``.
        out_root: the plans' preprocessed folder; cases go to ``out_root/<data_identifier>``.
        num_workers: worker processes (None: all cores; 0 or 1: in this process); lowered, with a log
            line, where that many of the largest case would not fit in the memory available
            (:func:`autoseg.preprocessing.workers.workers_that_fit`).
        seed: seed of the class-location sampling.

    Returns:
        The folder holding the preprocessed cases.

    Raises:
        DatasetValidationError: a case could not be read or checked (after all other cases
            were processed); it lists every problem.
    """
    conf = plans.configuration(configuration)
    for scheme in conf.normalization_schemes:
        get_normalizer(scheme)  # fail before starting workers
    transpose_of(plans)
    folder = Path(out_root) / conf.data_identifier
    label_manager = LabelManager.from_labels(dataset.labels, strict=False)
    labels = list(label_manager.foreground_values)  # ignore excluded: it gets the ANNOTATED key instead
    ignore = label_manager.ignore_label
    digest = plan_hash(plans, configuration, labels if ignore is None else [*labels, ANNOTATED], seed)
    if folder.is_dir():
        remove_stale_temporaries(folder)  # a killed earlier run's half-written files (each logged)
    todo = [c for c in dataset.cases if not is_case_complete(folder, c.name, digest)]
    log.info(
        "preprocess %s: %d of %d cases to do in %s", configuration, len(todo), len(dataset.cases), folder
    )
    # the workers need this configuration only, not the fingerprint of every case
    slim = replace(plans, configurations={configuration: conf}, fingerprint=None, raw={})
    work = partial(
        _preprocess_one,
        dataset=replace(dataset, cases=(), description={}),
        plans=slim,
        configuration=configuration,
        folder=folder,
        digest=digest,
        labels=labels,
        seed=seed,
        ignore_label=ignore,
    )
    requested = default_num_workers() if num_workers is None else int(num_workers)
    workers = workers_that_fit(
        requested, _case_bytes(plans, configuration, todo), f"preprocess {configuration}"
    )
    results = parallel_map(work, todo, num_workers=workers, desc=f"preprocess {configuration}")
    problems = [p for r in results for p in r["problems"]]
    for p in problems:
        if p.severity != "error":
            log.warning("%s", p)
    raise_for_problems(problems)
    return folder
