"""Segment raw scans with trained folds: preprocess as the plan says, sliding window, back to native.

One case through one configuration (:class:`ConfigurationPredictor`):

    images (C, Z, Y, X) + geometry
      -> preprocess_case (transpose, crop, normalise, resample; the plan's own code path)
      -> sliding window per fold (Gaussian tiles, mirroring TTA), logits averaged over the folds
         (:meth:`ConfigurationPredictor.logits`: the one place that runs the networks; its *members*,
         every (fold, mirror) pair's own logits, go to a :class:`MemberSink` when one is given)
      -> softmax (sigmoid per region) -> revert_preprocessing (resample to the native spacing, undo
         crop and transpose)
      -> probabilities (K, Z, Y, X) on the case's own voxel grid

Several configurations (an ensemble chosen by ``autoseg find-best``) average those native
probabilities; the argmax (regions: by ``regions_class_order``), then the selected post-processing,
gives the mask.

Example:
    >>> predictor = ConfigurationPredictor(trained, ["0", "1"], torch.device("cpu"))  # doctest: +SKIP
    >>> probabilities = predictor.predict(images, geometry)  # (K, Z, Y, X) float32
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol

import numpy as np
import torch

from autoseg.cascade.encoding import one_hot_previous
from autoseg.cascade.previous_stage import to_preprocessed_grid
from autoseg.contracts.case import CaseProperties
from autoseg.contracts.plans import Plans
from autoseg.inference.backends import choose_backend, load_runner
from autoseg.inference.batching import BatchSizer
from autoseg.inference.model import TrainedConfiguration, load_fold_network, trained_folds
from autoseg.inference.native import COMPACT_ABOVE_BYTES, compact_logits
from autoseg.inference.sliding_window import WindowOptions, sliding_window
from autoseg.io.images import Geometry
from autoseg.io.validation import LoadedCase
from autoseg.preprocessing.preprocess import preprocess_case, revert_preprocessing

__all__ = ["ConfigurationPredictor", "MemberSink", "PredictOptions", "Ready"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictOptions:
    """How to run the networks.

    Attributes:
        checkpoint: which checkpoint of each fold: final, best or latest.
        tta: mirroring test-time augmentation over the axes the model was trained to mirror.
        step_size: sliding-window step as a fraction of the patch (0.5: tiles overlap by half).
        amp: autocast on CUDA (ignored on the CPU).
        backend: torch (the reference, the default), torch-export, onnxruntime or openvino
            (:mod:`autoseg.inference.backends`; the last three on the CPU), or ``auto``: the fastest
            installed on the CPU (OpenVINO where installed), torch on a GPU
            (:func:`~autoseg.inference.backends.choose_backend`).
        resample: how probabilities go back to the native spacing: ``torch`` (on the device,
            :mod:`autoseg.inference.resample_torch`), ``scipy`` (on the CPU, the reference), or
            ``auto``: torch on a GPU (scipy when the GPU runs out of memory), scipy on the CPU.
        tile_batch: network inputs (tiles, mirrored copies) per forward pass; None: on a GPU measured
            per network on the first case (:class:`~autoseg.inference.batching.BatchSizer`), on the CPU
            every mirrored copy of one tile (16 tiles in 2D), so that predictions repeat exactly.
    """

    checkpoint: str = "final"
    tta: bool = True
    step_size: float = 0.5
    amp: bool = True
    tile_batch: int | None = None
    backend: str = "torch"
    resample: str = "auto"


class MemberSink(Protocol):
    """What consumes a prediction's members (:mod:`autoseg.inference.uncertainty`'s statistics)."""

    def add(self, fold: int, mirror: int, logits: torch.Tensor) -> None:
        """One member's logits (K, *spatial) float32; valid only during the call (do not keep it)."""

    def maps(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Maps (C, *spatial) on the device of the members' mean probabilities (K, *spatial)."""
        ...


class Ready(NamedTuple):
    """A case's prediction ready for :func:`~autoseg.inference.writer.export_prediction`.

    ``probabilities`` (K, ...) and ``maps`` (the sink's, or None) are each either in the plan's space
    or already on the native grid before un-cropping; ``properties`` and ``maps_properties`` say which
    (see :meth:`ConfigurationPredictor.export_ready`).
    """

    probabilities: np.ndarray
    properties: CaseProperties
    maps: np.ndarray | None = None
    maps_properties: CaseProperties | None = None


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
        conf = trained.plans.configuration(trained.name)
        networks: list[Callable[[torch.Tensor], torch.Tensor]] = []
        patch, mirror = list(conf.patch_size), list(conf.mirror_axes)
        # the 3d cascade's second stage: the previous stage predicts first, its map is extra input
        self.previous = _previous_stage(trained, device, options) if conf.previous_stage else None
        self.previous_channels = tuple(tuple(v) for v in trained.plans.labels.evaluation_classes.values())
        expected = trained.plans.num_channels + (len(self.previous_channels) if self.previous else 0)
        self.backend, why = choose_backend(options.backend, device)
        log.info("%s: backend %s (%s)", trained.name, self.backend, why)
        for fold in folds:
            path = trained.checkpoint(fold, options.checkpoint)
            network, meta = load_fold_network(path, device, conf.architecture)
            if int(meta.get("in_channels", expected)) != expected:
                raise ValueError(
                    f"{path}: the network takes {meta['in_channels']} input channel(s) but "
                    f"{trained.folder / 'plans.json'} lists {trained.plans.num_channels} image channel(s)"
                    f"{' + the previous stage' if self.previous else ''}, i.e. {expected}; the checkpoint "
                    "belongs to another model: copy the whole model folder (or export it with "
                    "`autoseg export-model`)"
                )
            if [int(p) for p in meta.get("patch_size", patch)] != patch:
                raise ValueError(
                    f"{path} was trained with patch_size {list(meta['patch_size'])}, but "
                    f"{trained.folder / 'plans.json'} says {patch}; restore the plans.json the fold was "
                    "trained with (a trainer.patch_size is recorded there), or retrain the fold"
                )
            networks.append(load_runner(path, network, meta, self.backend, device))
            mirror = [int(a) for a in meta.get("mirror_axes", range(len(patch)))]
        if not networks:
            raise ValueError(f"{trained.folder}: no folds to predict with")
        self._setup(trained.plans, trained.name, networks, device, options, patch, mirror)
        self.trained: TrainedConfiguration | None = trained

    @classmethod
    def from_networks(
        cls,
        plans: Plans,
        configuration: str,
        networks: Sequence[torch.nn.Module],
        device: torch.device,
        options: PredictOptions = PredictOptions(),
        patch_size: Sequence[int] | None = None,
    ) -> ConfigurationPredictor:
        """A predictor of networks in memory (the final validation of a fold that just trained).

        Args:
            networks: in eval mode on ``device``; their outputs are averaged.
            patch_size: the patch the networks were trained with (default: the plan's).
        """
        conf = plans.configuration(configuration)
        patch = list(patch_size or conf.patch_size)
        self = cls.__new__(cls)
        self.previous, self.previous_channels = None, ()
        self.backend = "torch"  # networks in memory
        self._setup(plans, configuration, list(networks), device, options, patch, list(conf.mirror_axes))
        self.trained = None
        return self

    def _setup(
        self,
        plans: Plans,
        configuration: str,
        networks: list[Callable[[torch.Tensor], torch.Tensor]],
        device: torch.device,
        options: PredictOptions,
        patch_size: list[int],
        mirror_axes: list[int],
    ) -> None:
        self.plans, self.configuration, self.device, self.options = plans, configuration, device, options
        self.conf = plans.configuration(configuration)
        self.num_classes = plans.labels.num_outputs
        self.networks = networks
        self.patch_size = patch_size
        self.mirror_axes = tuple(mirror_axes) if options.tta else None
        # the probe batch: every mirrored copy of a 3D tile; 16 slices' tiles in 2D (small inputs)
        copies = 2 ** len(self.mirror_axes or ())
        probe = copies if len(self.patch_size) == 3 else 16
        # On the CPU the batch is fixed (every mirrored copy of a tile, or 16 2D tiles): a batch chosen
        # by timing would make the logits (and near-tie voxels of the mask) depend on the machine's
        # load, and predictions must repeat exactly. On a GPU it is measured (memory of one input).
        fixed = options.tile_batch or (probe if device.type == "cpu" else None)
        self.sizers = [
            BatchSizer(fixed, max_items=max(8 * copies, 64), probe_items=probe) for _ in self.networks
        ]
        self.window = WindowOptions(
            step_size=options.step_size,
            mirror_axes=self.mirror_axes or (),
            device=device,
            amp=options.amp and device.type == "cuda",
        )

    @property
    def num_channels(self) -> int:
        return self.plans.num_channels

    def preprocess(
        self, name: str, images: np.ndarray, geometry: Geometry
    ) -> tuple[np.ndarray, CaseProperties]:
        """(data (C, Z', Y', X') in the plan's space, properties for reverting it)."""
        if images.shape[0] != self.num_channels:
            raise ValueError(
                f"{name}: the model needs {self.num_channels} channel(s) "
                f"({', '.join(self.plans.channel_names.values())}), got {images.shape[0]}"
            )
        case = LoadedCase(name=name, images=images, label=None, geometry=geometry)
        data, _, properties = preprocess_case(case, self.plans, self.configuration)
        if self.previous is not None:  # the previous stage's mask, in this stage's grid, one-hot
            mask = self.plans.labels.segmentation(self.previous.predict(name, images, geometry))
            previous = one_hot_previous(to_preprocessed_grid(mask, properties), self.previous_channels)
            data = np.concatenate([data, previous]).astype(np.float32, copy=False)
        return data, properties

    def logits(
        self,
        data: np.ndarray,
        output_device: torch.device | str = "cpu",
        members: MemberSink | None = None,
    ) -> torch.Tensor:
        """Logits (K, Z', Y', X') of preprocessed data, averaged over the folds (float32).

        Args:
            members: also receives every member's logits, each (fold, mirror) pair's (or each fold's
                without TTA); the returned logits are the same with or without it, bit for bit: the
                same forward passes in the same batches, summed in the same order.
        """
        tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        total: torch.Tensor | None = None
        with torch.inference_mode():
            for index, (network, sizer) in enumerate(zip(self.networks, self.sizers, strict=True)):
                options = replace(self.window, batch=sizer, output_device=output_device)
                hook = functools.partial(members.add, index) if members is not None else None
                out = sliding_window(network, tensor, self.patch_size, self.num_classes, options, hook)
                total = out if total is None else total.add_(out)
            assert total is not None
            return total.div_(len(self.networks))

    def export_ready(
        self, data: np.ndarray, properties: CaseProperties, members: MemberSink | None = None
    ) -> Ready:
        """Probabilities of ``data`` (and the maps of ``members``), with the properties for reverting them.

        With the torch resampler the logits, their softmax (sigmoid for regions) and the resampling to
        the native spacing stay on the device; the result is already on the native grid (before
        un-cropping), and the returned properties say so (``target_spacing`` = ``spacing``), so that
        reverting only pastes and transposes. Otherwise the probabilities (K, Z', Y', X') are in the
        plan's space. The maps take the same way as the probabilities, after them, so that the
        probabilities never depend on whether maps were asked for.
        """
        mode = self.options.resample
        if mode not in ("auto", "torch", "scipy"):
            raise ValueError(f"resample={mode!r}: choose auto, torch or scipy")
        use_torch = mode == "torch" or (mode == "auto" and self.device.type == "cuda")
        activate = self.plans.labels.activate  # softmax, or sigmoid per region
        if not use_torch:
            probs = activate(self.logits(data, members=members))
            plan_maps = members.maps(probs).numpy() if members is not None else None
            return Ready(probs.numpy(), properties, plan_maps, properties)
        logits = self.logits(data, output_device=self.device, members=members)
        try:
            probs = activate(logits)
            probabilities, props = self._resample_on_device(probs, properties)
        except torch.cuda.OutOfMemoryError:
            log.warning("out of GPU memory resampling to the native spacing; resampling on the CPU")
            probs = activate(logits.cpu())
            probabilities, props = probs.numpy(), properties
            torch.cuda.empty_cache()
        del logits
        if members is None:
            return Ready(probabilities, props)
        maps = members.maps(probs)  # after the probabilities: they never depend on the maps
        try:
            native_maps, maps_props = self._resample_on_device(maps.to(self.device), properties)
        except torch.cuda.OutOfMemoryError:
            log.warning("out of GPU memory resampling the uncertainty maps; resampling them on the CPU")
            native_maps, maps_props = maps.cpu().numpy(), properties
            torch.cuda.empty_cache()
        return Ready(probabilities, props, native_maps, maps_props)

    def compact_output(
        self, data: np.ndarray, properties: CaseProperties, members: MemberSink | None = None
    ) -> tuple[np.ndarray, CaseProperties, bool, tuple[np.ndarray, CaseProperties] | None]:
        """What the streaming exporter needs of ``data``: ``(array, properties, activated, maps)``.

        Where the resampling to the native spacing runs on the CPU, the fold-averaged logits in the
        network's grid (the exporter activates and resamples them slab by slab,
        :func:`autoseg.inference.native.native_segmentation`), ``activated`` False: float32, or, where
        those would pass :data:`~autoseg.inference.native.COMPACT_ABOVE_BYTES` (and the outputs are a
        softmax), float16 shifted by the per-voxel maximum (:func:`~autoseg.inference.native.
        compact_logits`; logged). On the torch resampler (a GPU), :meth:`export_ready`'s native-grid
        probabilities, True. ``maps``: ``members``' maps and their properties (None without members);
        the array is the same with or without them.
        """
        mode = self.options.resample
        if mode == "torch" or (mode == "auto" and self.device.type == "cuda"):
            ready = self.export_ready(data, properties, members)
            maps = (ready.maps, ready.maps_properties) if ready.maps is not None else None
            return ready.probabilities, ready.properties, True, maps  # type: ignore[return-value]
        if mode not in ("auto", "scipy"):
            raise ValueError(f"resample={mode!r}: choose auto, torch or scipy")
        logits = self.logits(data, members=members)
        plan_maps = None
        if members is not None:
            plan_maps = (members.maps(self.plans.labels.activate(logits)).numpy(), properties)
        if logits.numel() * 4 <= COMPACT_ABOVE_BYTES or self.plans.labels.has_regions:
            return logits.numpy(), properties, False, plan_maps
        log.info(
            "holding %s logits %s as shifted float16 until exported",
            properties.case,
            tuple(logits.shape),
        )
        return compact_logits(logits), properties, False, plan_maps

    def _resample_on_device(
        self, probs: torch.Tensor, properties: CaseProperties
    ) -> tuple[np.ndarray, CaseProperties]:
        from autoseg.inference.resample_torch import resample_to_shape_torch
        from autoseg.preprocessing.resample import axis_orders

        res = properties.resampling
        order, order_z = res.probabilities_orders
        current, native = list(properties.target_spacing), list(properties.spacing)
        orders = axis_orders(current, native, order, order_z, res.separate_z_anisotropy_threshold)
        shape = list(properties.shape_after_cropping_and_before_resampling)
        out = resample_to_shape_torch(probs, shape, orders).cpu().numpy()
        return out, properties.at_native_spacing()

    def probabilities(self, data: np.ndarray, properties: CaseProperties) -> np.ndarray:
        """Native-grid probabilities (K, *geometry.shape) float32 of preprocessed ``data``."""
        ready = self.export_ready(data, properties)
        return revert_preprocessing(
            ready.probabilities, ready.properties, regions=self.plans.labels.has_regions
        )

    def predict(self, name: str, images: np.ndarray, geometry: Geometry) -> np.ndarray:
        """Probabilities (K, *geometry.shape) of a raw case (C, Z, Y, X) on its own voxel grid."""
        data, properties = self.preprocess(name, images, geometry)
        return self.probabilities(data, properties)


def _previous_stage(
    trained: TrainedConfiguration, device: torch.device, options: PredictOptions
) -> ConfigurationPredictor:
    """The predictor of a cascade stage's previous stage (every trained fold of it, beside it)."""
    previous = trained.plans.configuration(trained.name).previous_stage
    assert previous is not None
    folder = trained.folder.parent / previous
    plans_file = folder / "plans.json"
    folds = trained_folds(folder)
    if not plans_file.is_file() or not folds:
        raise FileNotFoundError(
            f"{trained.name} needs its previous stage {previous}, but {folder} holds no trained model: "
            f"train it (autoseg train DATASET {previous} all-folds) or export both stages together"
        )
    stage = TrainedConfiguration(name=previous, folder=folder, plans=Plans.load(plans_file), folds=folds)
    return ConfigurationPredictor(stage, folds, device, options)
