"""Segment raw scans with trained folds: preprocess as the plan says, sliding window, back to native.

One case through one configuration (:class:`ConfigurationPredictor`):

    images (C, Z, Y, X) + geometry
      -> preprocess_case (transpose, crop, normalise, resample; the plan's own code path)
      -> sliding window per fold (Gaussian tiles, mirroring TTA), logits averaged over the folds
      -> softmax -> revert_preprocessing (resample to the native spacing, undo crop and transpose)
      -> probabilities (K, Z, Y, X) on the case's own voxel grid

Several configurations (an ensemble chosen by ``autoseg find-best``) average those native
probabilities; the argmax, then the selected post-processing, gives the mask.

Example:
    >>> predictor = ConfigurationPredictor(trained, ["0", "1"], torch.device("cpu"))  # doctest: +SKIP
    >>> probabilities = predictor.predict(images, geometry)  # (K, Z, Y, X) float32
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from autoseg.inference.backends import load_runner
from autoseg.inference.batching import BatchSizer
from autoseg.inference.model import TrainedConfiguration, load_fold_network, num_classes_of
from autoseg.inference.sliding_window import predict_sliding_window, predict_volume_2d
from autoseg.io.images import Geometry
from autoseg.io.validation import LoadedCase
from autoseg.preprocessing.plan import configuration_plan
from autoseg.preprocessing.preprocess import preprocess_case, revert_preprocessing

__all__ = ["ConfigurationPredictor", "PredictOptions", "average_probabilities", "segmentation_from"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictOptions:
    """How to run the networks.

    Attributes:
        checkpoint: which checkpoint of each fold: final, best or latest.
        tta: mirroring test-time augmentation over the axes the model was trained to mirror.
        step_size: sliding-window step as a fraction of the patch (0.5: tiles overlap by half).
        amp: autocast on CUDA (ignored on the CPU).
        backend: torch (the reference), torchscript, onnxruntime or openvino
            (:mod:`autoseg.inference.backends`; the last three on the CPU).
        resample: how probabilities go back to the native spacing: ``torch`` (on the device,
            :mod:`autoseg.inference.resample_torch`), ``scipy`` (on the CPU, the reference), or
            ``auto``: torch on a GPU (scipy when the GPU runs out of memory), scipy on the CPU.
        tile_batch: network inputs (tiles, mirrored copies) per forward pass; None: measured per
            network on the first case (:class:`~autoseg.inference.batching.BatchSizer`).
    """

    checkpoint: str = "final"
    tta: bool = True
    step_size: float = 0.5
    amp: bool = True
    tile_batch: int | None = None
    backend: str = "torch"
    resample: str = "auto"


class ConfigurationPredictor:
    """The folds of one trained configuration, loaded once, predicting case after case.

    Args:
        trained: the configuration (:meth:`autoseg.inference.model.ModelFolder.configuration`).
        folds: the folds to average (each must have the requested checkpoint).
        device: where the networks run.
        options: :class:`PredictOptions`.
    """

    def __init__(
        self,
        trained: TrainedConfiguration,
        folds: Sequence[str],
        device: torch.device,
        options: PredictOptions = PredictOptions(),
    ) -> None:
        self.trained, self.device, self.options = trained, device, options
        self.plans = trained.plans
        self.conf = configuration_plan(self.plans, trained.name)
        self.num_classes = num_classes_of(self.plans["labels"])
        self.networks: list[Callable[[torch.Tensor], torch.Tensor]] = []
        self.patch_size: list[int] = list(self.conf["patch_size"])
        mirror: list[int] | None = None
        for fold in folds:
            path = trained.checkpoint(fold, options.checkpoint)
            network, meta = load_fold_network(path, device, self.conf["architecture"])
            self.networks.append(load_runner(path, network, meta, options.backend, device))
            self.patch_size = [int(p) for p in meta.get("patch_size", self.patch_size)]
            mirror = list(meta.get("mirror_axes", range(len(self.patch_size))))
        self.mirror_axes = tuple(mirror or ()) if options.tta else None
        if not self.networks:
            raise ValueError(f"{trained.folder}: no folds to predict with")
        # the probe batch: every mirrored copy of a 3D tile; 16 slices' tiles in 2D (small inputs)
        copies = 2 ** len(self.mirror_axes or ())
        probe = copies if len(self.patch_size) == 3 else 16
        self.sizers = [
            BatchSizer(options.tile_batch, max_items=max(8 * copies, 64), probe_items=probe)
            for _ in self.networks
        ]

    @property
    def num_channels(self) -> int:
        return len(self.plans["channel_names"])

    def preprocess(self, name: str, images: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, dict]:
        """(data (C, Z', Y', X') in the plan's space, properties for reverting it)."""
        if images.shape[0] != self.num_channels:
            raise ValueError(
                f"{name}: the model needs {self.num_channels} channel(s) "
                f"({', '.join(self.plans['channel_names'].values())}), got {images.shape[0]}"
            )
        data, _, properties = preprocess_case(
            LoadedCase(name=name, images=images, label=None, geometry=geometry), self.plans, self.trained.name
        )
        return data, properties

    def logits(self, data: np.ndarray, output_device: torch.device | str = "cpu") -> torch.Tensor:
        """Logits (K, Z', Y', X') of preprocessed data, averaged over the folds (float32)."""
        tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        kwargs: dict[str, Any] = {
            "step_size": self.options.step_size,
            "mirror_axes": self.mirror_axes,
            "device": self.device,
            "amp": self.options.amp and self.device.type == "cuda",
            "output_device": output_device,
        }
        total: torch.Tensor | None = None
        with torch.inference_mode():
            for network, sizer in zip(self.networks, self.sizers, strict=True):
                out = self._one(network, tensor, {**kwargs, "batch_size": sizer})
                total = out if total is None else total.add_(out)
            assert total is not None
            return total.div_(len(self.networks))

    def export_ready(self, data: np.ndarray, properties: dict) -> tuple[np.ndarray, dict]:
        """Probabilities of ``data`` and the properties for :func:`revert_preprocessing`.

        With the torch resampler the logits, their softmax and the resampling to the native spacing
        stay on the device; the result is already on the native grid (before un-cropping), and the
        returned properties say so (``target_spacing`` = ``spacing``), so that reverting only pastes
        and transposes. Otherwise the probabilities (K, Z', Y', X') are in the plan's space.
        """
        mode = self.options.resample
        if mode not in ("auto", "torch", "scipy"):
            raise ValueError(f"resample={mode!r}: choose auto, torch or scipy")
        use_torch = mode == "torch" or (mode == "auto" and self.device.type == "cuda")
        if not use_torch:
            return torch.softmax(self.logits(data), dim=0).numpy(), properties
        logits = self.logits(data, output_device=self.device)
        try:
            return self._resample_on_device(torch.softmax(logits, dim=0), properties)
        except torch.cuda.OutOfMemoryError:
            log.warning("out of GPU memory resampling to the native spacing; resampling on the CPU")
            probs = torch.softmax(logits.cpu(), dim=0).numpy()
            del logits
            torch.cuda.empty_cache()
            return probs, properties

    def _resample_on_device(self, probs: torch.Tensor, properties: dict) -> tuple[np.ndarray, dict]:
        from autoseg.inference.resample_torch import resample_to_shape_torch
        from autoseg.preprocessing.resample import axis_orders

        res = properties["resampling"]
        order = res["probabilities_order"]
        order_z = res.get("probabilities_order_z", res["data_order_z"])
        current, native = properties["target_spacing"], properties["spacing"]
        orders = axis_orders(current, native, order, order_z, res["separate_z_anisotropy_threshold"])
        shape = properties["shape_after_cropping_and_before_resampling"]
        out = resample_to_shape_torch(probs, shape, orders).cpu().numpy()
        return out, {**properties, "target_spacing": list(native)}

    def _one(
        self, network: Callable[[torch.Tensor], torch.Tensor], tensor: torch.Tensor, kwargs: dict[str, Any]
    ) -> torch.Tensor:
        if len(self.patch_size) == 2:
            return predict_volume_2d(network, tensor, self.patch_size, self.num_classes, **kwargs)
        return predict_sliding_window(network, tensor, self.patch_size, self.num_classes, **kwargs)

    def probabilities(self, data: np.ndarray, properties: dict) -> np.ndarray:
        """Native-grid probabilities (K, *geometry.shape) float32 of preprocessed ``data``."""
        return revert_preprocessing(*self.export_ready(data, properties))

    def predict(self, name: str, images: np.ndarray, geometry: Geometry) -> np.ndarray:
        """Probabilities (K, *geometry.shape) of a raw case (C, Z, Y, X) on its own voxel grid."""
        data, properties = self.preprocess(name, images, geometry)
        return self.probabilities(data, properties)


def average_probabilities(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of several (K, *spatial) probability maps (an ensemble of configurations)."""
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"cannot average probabilities of different shapes {sorted(shapes)}")
    out = np.array(arrays[0], dtype=np.float32, copy=True)
    for a in arrays[1:]:
        out += a
    out /= len(arrays)
    return out


def segmentation_from(probabilities: np.ndarray, postprocessing: Any | None = None) -> np.ndarray:
    """Label map (uint8, or uint16 for > 255 classes) of probabilities (K, ...), post-processed if asked.

    Args:
        probabilities: (K, *spatial).
        postprocessing: an :class:`autoseg.evaluation.postprocess.PostprocessingSpec` or None.
    """
    dtype = np.uint8 if probabilities.shape[0] <= 255 else np.uint16
    seg = probabilities.argmax(0).astype(dtype)
    if postprocessing is not None:
        from autoseg.evaluation.postprocess import apply_postprocessing

        seg = apply_postprocessing(seg, postprocessing)
    return seg
