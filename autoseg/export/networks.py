"""``autoseg export-model --onnx / --torchscript``: export and check every fold of a model, once.

Each fold's network is exported beside its checkpoint by :func:`autoseg.inference.backends.export_network`
(cached by the checkpoint's sha256). The argmax check runs on a real case when the raw dataset is
at hand: the first training image, preprocessed with the configuration's plan, its centre cut to
the patch size (the middle slice for a 2D configuration).

Example:
    >>> records = export_fold_networks(model, ["3d_fullres"], None, "final", ["onnx"], raw)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoseg.contracts.plans import Plans
from autoseg.inference.backends import export_network
from autoseg.inference.model import ModelFolder, fold_names, load_fold_network

__all__ = ["export_fold_networks", "real_sample"]

log = logging.getLogger(__name__)


def real_sample(raw: Path, plans: Plans, configuration: str, patch: Sequence[int]) -> torch.Tensor | None:
    """The first training case of ``raw`` preprocessed by the plan, cut to (1, C, *patch); None if absent."""
    from autoseg.inference.inputs import discover_inputs
    from autoseg.io.validation import LoadedCase
    from autoseg.preprocessing.preprocess import preprocess_case

    folder = raw / "imagesTr"
    if not folder.is_dir():
        return None
    try:
        cases = discover_inputs(folder, list(plans.channel_names.values()))
    except (FileNotFoundError, ValueError) as err:
        log.warning("no real case for the export check (%s); using a synthetic one", err)
        return None
    images, geometry = cases[0].load()
    data, _, _ = preprocess_case(LoadedCase(cases[0].name, images, None, geometry), plans, configuration)
    if len(patch) == 2:
        data = data[:, data.shape[1] // 2]
    return torch.from_numpy(_centre(np.asarray(data, dtype=np.float32), patch))[None]


def _centre(data: np.ndarray, patch: Sequence[int]) -> np.ndarray:
    """``data`` (C, *spatial) zero-padded and cropped around its centre to (C, *patch)."""
    out = np.zeros((data.shape[0], *patch), dtype=np.float32)
    src, dst = [], []
    for size, p in zip(data.shape[1:], patch, strict=True):
        n = min(size, p)
        a, b = (size - n) // 2, (p - n) // 2
        src.append(slice(a, a + n))
        dst.append(slice(b, b + n))
    out[(slice(None), *dst)] = data[(slice(None), *src)]
    return out


def export_fold_networks(
    model: ModelFolder,
    configurations: Sequence[str],
    folds: Sequence[str] | None,
    checkpoint: str,
    kinds: Sequence[str],
    raw: Path | None,
) -> list[dict[str, Any]]:
    """Export every chosen fold as each of ``kinds`` (onnx, torchscript); their export records."""
    records = []
    needed = list(configurations)  # a cascade stage's previous stage is exported with it
    for name in needed:
        trained = model.configuration(name)
        previous = trained.plans.configuration(name).previous_stage
        if previous is not None and previous not in needed:
            needed.append(previous)
        sample: torch.Tensor | None = None
        for fold in fold_names(folds, trained.folds, str(trained.folder)):
            path = trained.checkpoint(fold, checkpoint)
            network, meta = load_fold_network(path, torch.device("cpu"))
            # a cascade stage's real input includes the previous stage's channels: a synthetic sample
            if sample is None and raw is not None and previous is None:
                sample = real_sample(raw, trained.plans, name, meta["patch_size"])
            for kind in kinds:
                record = export_network(path, network, meta, kind, sample)
                records.append({"configuration": name, "fold": fold, **record})
    return records
