"""Sliding-window prediction with Gaussian weighting and mirroring TTA (nnU-Net's, facts §7).

An image larger than the patch is cut into overlapping tiles; each tile's logits are weighted by a
Gaussian centred on the tile (sigma = patch / 8) and the weighted sum is divided by the summed
weights, so that tile borders, where a convolutional network sees the least context, count least.
Mirroring TTA averages the logits over every flip combination of ``mirror_axes`` per tile
(8 passes in 3D, 4 in 2D).

Tiling is nnU-Net's: per axis ``ceil((size - patch) / (patch * step)) + 1`` tiles, their starts
spread evenly from 0 to ``size - patch``. This is our own loop, not MONAI's
``sliding_window_inference``: MONAI uses a fixed interval ``int(patch * (1 - overlap))`` with the
last tile clamped to the border, which bunches tiles at the end (size 100, patch 64: MONAI starts
0, 32, 36; nnU-Net 0, 18, 36; odd patches can also get an extra tile), its Gaussian is centred at
``(patch - 1) / 2`` and floored at 1e-3 where nnU-Net's is centred at ``patch // 2``, and it has no
mirroring. Nor is MONAI faster: on 2 shared CPU cores, a 128^3 image with a 64^3 patch (27
tiles, no TTA, a 4-stage net with 4-32 features) takes 8-12 s here and 7-15 s with MONAI, both
network-bound (27 bare forward passes: 7.6-10 s; the machine was loaded, so runs varied 2x); with a
1x1 conv as the network, which leaves only the loop's overhead, 20-28 ms here and 18-29 ms with MONAI.

Every mirrored copy of every tile is one network input; ``batch_size`` of them (a fixed number, or
one a :class:`~autoseg.inference.batching.BatchSizer` measures on this machine) share a forward
pass, so the 8 copies of a 3D tile can go through in one pass instead of 8. Each output is flipped
back and added into the logits in place, times the Gaussian over the number of flips.

Logits are accumulated in float32 on ``device`` (memory: K + 1 floats per voxel for a 3D image);
when that runs out of GPU memory, the accumulation moves to the CPU and the prediction is redone.

:class:`WindowOptions` holds how a window runs (step, Gaussian, mirror axes, batch, device, autocast),
and :func:`sliding_window` is the one entry the predictor uses (a 2D patch runs slice by slice). Given
a ``members`` hook, it also hands over each mirror's own logits (the same forward passes, the same
batches; the mirror's outputs are added into a separate buffer in host memory, so that neither the
averaged logits nor the GPU memory the batch sizing sees change): ``autoseg predict --uncertainty``
measures the members' disagreement from them (:mod:`autoseg.inference.uncertainty`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoseg.inference.batching import BatchSizer

__all__ = [
    "MemberHook",
    "WindowOptions",
    "compute_tile_starts",
    "gaussian_importance",
    "mirror_count",
    "predict_sliding_window",
    "predict_volume_2d",
    "sliding_window",
]

log = logging.getLogger(__name__)

#: Receives one mirror's logits: ``hook(mirror_index, logits)``, logits (K, *spatial) float32 on the
#: CPU (or the averaged logits themselves when there is one mirror); valid only during the call.
MemberHook = Callable[[int, Tensor], None]


@dataclasses.dataclass(frozen=True)
class WindowOptions:
    """How :func:`sliding_window` runs a network over an image.

    Attributes:
        step_size: tile step as a fraction of the patch (0.5: tiles overlap by half).
        mirror_axes: spatial axes (0-based) mirrored for test-time augmentation; () for none.
        gaussian: weight tiles by :func:`gaussian_importance`; else a plain mean.
        batch: network inputs (tiles or mirrored copies of a tile) per forward pass, or a
            :class:`~autoseg.inference.batching.BatchSizer` that measures it.
        device: where the network runs and the logits are accumulated.
        amp: autocast the forward passes (float16 on CUDA, bfloat16 on CPU); accumulation stays float32.
        output_device: where the returned logits are (``device`` keeps them there, e.g. on the GPU).
        progress: show a tqdm bar over the forward passes.
    """

    step_size: float = 0.5
    mirror_axes: tuple[int, ...] = ()
    gaussian: bool = True
    batch: int | BatchSizer = 1
    device: torch.device | str = "cpu"
    amp: bool = False
    output_device: torch.device | str = "cpu"
    progress: bool = False


def mirror_count(mirror_axes: Sequence[int] | None) -> int:
    """The number of mirrored copies of a tile (every flip combination): 2 ** the number of axes."""
    return 2 ** len(set(mirror_axes or ()))


def compute_tile_starts(
    image_size: Sequence[int], patch_size: Sequence[int], step_size: float
) -> list[list[int]]:
    """Start index of the tiles along each axis (nnU-Net's ``compute_steps_for_sliding_window``).

    Args:
        image_size: spatial size, at least ``patch_size`` on every axis (pad first).
        patch_size: tile size.
        step_size: distance between tiles as a fraction of the patch, in (0, 1].

    Example:
        >>> compute_tile_starts((100, 64), (64, 64), 0.5)
        [[0, 18, 36], [0]]
    """
    starts = []
    for size, patch in zip(image_size, patch_size, strict=True):
        if size < patch:
            raise ValueError(f"image size {tuple(image_size)} is smaller than the patch {tuple(patch_size)}")
        num = math.ceil((size - patch) / (patch * step_size)) + 1
        step = (size - patch) / (num - 1) if num > 1 else 0.0
        starts.append([int(round(step * i)) for i in range(num)])
    return starts


def gaussian_importance(
    patch_size: Sequence[int],
    sigma_scale: float = 1 / 8,
    peak: float = 1.0,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Gaussian tile weight map, sigma = ``patch * sigma_scale`` per axis, centred at ``patch // 2``.

    The same map as nnU-Net's ``compute_gaussian`` (a delta blurred with scipy and scaled to its
    maximum), computed in closed form. The scale cancels in the weighted average; nnU-Net's peak
    of 10 only matters for its float16 accumulation, so the default here is 1. Zeros (underflow
    far from the centre) are raised to the smallest positive value so every voxel gets weight.

    Returns:
        float32 tensor of shape ``patch_size`` with maximum ``peak`` (a fresh copy on ``device``).
    """
    cached = _gaussian_cpu(tuple(int(p) for p in patch_size), float(sigma_scale), float(peak))
    return cached.to(device, copy=True)


@functools.lru_cache(maxsize=8)
def _gaussian_cpu(patch_size: tuple[int, ...], sigma_scale: float, peak: float) -> Tensor:
    weights = torch.ones((), dtype=torch.float64)
    for axis, patch in enumerate(patch_size):
        offset = torch.arange(patch, dtype=torch.float64) - patch // 2
        sigma = patch * sigma_scale
        profile = torch.exp(-(offset**2) / (2 * sigma**2))
        weights = weights[..., None] * profile.view(*([1] * axis), patch)
    weights = (weights / weights.max() * peak).float()
    zero = weights == 0
    if zero.any():
        weights[zero] = weights[~zero].min()
    return weights


def _check_args(
    image: Tensor,
    patch_size: Sequence[int],
    step_size: float,
    mirror_axes: Sequence[int],
    batch_size: int | BatchSizer,
) -> None:
    """Raise one ValueError naming every invalid argument."""
    problems = []
    spatial = image.ndim - 1
    if len(patch_size) != spatial:
        problems.append(f"patch_size {tuple(patch_size)} has {len(patch_size)} axes, the image {spatial}")
    if any(int(p) < 1 for p in patch_size):
        problems.append(f"patch_size {tuple(patch_size)} must be positive")
    if not 0 < step_size <= 1:
        problems.append(f"step_size={step_size} must be in (0, 1]")
    bad = [a for a in mirror_axes if not 0 <= a < len(patch_size)]
    if bad:
        problems.append(f"mirror_axes {bad} are not spatial axes 0..{len(patch_size) - 1}")
    if not isinstance(batch_size, BatchSizer) and batch_size < 1:
        problems.append(f"batch_size={batch_size} must be >= 1")
    if problems:
        raise ValueError("sliding window: " + "; ".join(problems))


def _mirror_dims(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every flip combination of the spatial axes, as tensor dims of (B, C, *spatial)."""
    dims = sorted({int(a) + 2 for a in mirror_axes})
    return [c for r in range(len(dims) + 1) for c in itertools.combinations(dims, r)]


def _checked(out: object, x: Tensor, num_classes: int) -> Tensor:
    """``out`` if it is logits (B, K, *tile) of the batch ``x``; a ValueError naming the shapes otherwise."""
    if not isinstance(out, Tensor) or out.shape[1] != num_classes or out.shape[2:] != x.shape[2:]:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"network returned {shape} for a tile {tuple(x.shape)}; expected logits (B, {num_classes}, "
            f"{', '.join(map(str, x.shape[2:]))}) (is deep supervision on in eval mode?)"
        )
    return out


Item = tuple[int, tuple[slice, ...], tuple[int, ...]]  # (image n, tile, flip dims of (B, C, *spatial))


def _predict_stack(
    network: Callable[[Tensor], Tensor],
    images: Tensor,
    patch_size: Sequence[int],
    num_classes: int,
    options: WindowOptions,
    sizer: BatchSizer,
    results_device: torch.device,
    with_members: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Logits (N, K, *spatial) of N same-sized images (N, C, *spatial); with ``with_members`` and
    several mirrors also each mirror's logits (M, N, K, *spatial) on the CPU, else None.

    The items (every mirrored copy of every tile of every image) go through the network in
    batches of ``sizer.size()``; each output is flipped back and added, times the Gaussian divided
    by the number of flips, into the logits in place (``addcmul_``: no weighted copy).
    """
    device = torch.device(options.device)
    flips = _mirror_dims(options.mirror_axes)
    padded, crop = _padded(images.to(device, torch.float32), patch_size)
    padded_size = list(padded.shape[2:])

    tiles, weight, weight_sum = _tiles(padded_size, patch_size, options, results_device)
    logits = torch.zeros((images.shape[0], num_classes, *padded_size), device=results_device)
    items: list[Item] = [(n, tile, dims) for tile in tiles for n in range(images.shape[0]) for dims in flips]
    tile_weight = weight.div_(len(flips))  # the mean over flips folded into the weight
    # each mirror's own sum (host memory: the device's memory, hence its batch sizing, is unchanged)
    members = torch.zeros((len(flips), *logits.shape)) if with_members and len(flips) > 1 else None
    member_weight = tile_weight.cpu() if members is not None else tile_weight
    mirror_of = {dims: m for m, dims in enumerate(flips)}
    autocast = torch.autocast(device.type) if options.amp else nullcontext()
    bar = None
    if options.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="sliding window", unit="pass")
    done = 0
    with autocast:
        while done < len(items):
            batch = items[done : done + sizer.size(len(items) - done)]
            x = torch.stack([_flip(padded[n][(slice(None), *tile)], dims) for n, tile, dims in batch])
            out = _checked(sizer.forward(network, x), x, num_classes)
            for (n, tile, dims), item in zip(batch, out, strict=True):
                item = _flip(item.float(), dims).to(results_device)
                logits[n][(slice(None), *tile)].addcmul_(item, tile_weight)
                if members is not None:
                    members[mirror_of[dims], n][(slice(None), *tile)].addcmul_(item.cpu(), member_weight)
            done += len(batch)
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    logits /= weight_sum  # in place: no second full-size buffer on the device
    if members is not None:
        members.mul_(len(flips)).div_(weight_sum.cpu())  # each mirror's weighted mean
        members = members[(slice(None), *crop)]
    return logits[crop].to(options.output_device), members


def _tiles(
    size: Sequence[int], patch_size: Sequence[int], options: WindowOptions, device: torch.device
) -> tuple[list[tuple[slice, ...]], Tensor, Tensor]:
    """(the tiles of an image of ``size``, the weight of a tile, the summed weights of every voxel)."""
    weight = (
        gaussian_importance(patch_size, device=device)
        if options.gaussian
        else torch.ones(tuple(patch_size), device=device)
    )
    weight_sum = torch.zeros(tuple(size), device=device)
    tiles = [
        tuple(slice(s, s + p) for s, p in zip(starts, patch_size, strict=True))
        for starts in itertools.product(*compute_tile_starts(size, patch_size, options.step_size))
    ]
    for tile in tiles:
        weight_sum[tile] += weight
    return tiles, weight, weight_sum


def _padded(images: Tensor, patch_size: Sequence[int]) -> tuple[Tensor, tuple[slice, ...]]:
    """``images`` (N, C, *spatial) zero-padded, centred, to at least the patch; the crop that undoes it."""
    spatial = tuple(images.shape[2:])
    padded_size = [max(s, p) for s, p in zip(spatial, patch_size, strict=True)]
    before = [(p - s) // 2 for s, p in zip(spatial, padded_size, strict=True)]
    pad = [
        v
        for b, s, p in reversed(list(zip(before, spatial, padded_size, strict=True)))
        for v in (b, p - s - b)
    ]
    crop = (slice(None), slice(None), *(slice(b, b + s) for b, s in zip(before, spatial, strict=True)))
    return (F.pad(images, pad) if any(pad) else images), crop


def _flip(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """``x`` (C, *spatial) flipped along ``dims``, given as dims of (B, C, *spatial)."""
    return torch.flip(x, [d - 1 for d in dims]) if dims else x


def _run(
    network: Callable[[Tensor], Tensor],
    images: Tensor,
    patch_size: Sequence[int],
    num_classes: int,
    options: WindowOptions,
    with_members: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Evaluation mode, no autograd; accumulation on the device, on the CPU after running out of memory."""
    device = torch.device(options.device)
    batch = options.batch
    sizer = batch if isinstance(batch, BatchSizer) else BatchSizer(fixed=batch)
    module = network if isinstance(network, nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    args = (network, images, [int(p) for p in patch_size], num_classes, options, sizer)
    try:
        with torch.inference_mode():
            try:
                return _predict_stack(*args, results_device=device, with_members=with_members)
            except torch.cuda.OutOfMemoryError:
                if device.type == "cpu":
                    raise
                log.warning("out of GPU memory accumulating logits; accumulating on the CPU instead")
                torch.cuda.empty_cache()
                return _predict_stack(*args, results_device=torch.device("cpu"), with_members=with_members)
    finally:
        if module is not None:
            module.train(was_training)


def sliding_window(
    network: Callable[[Tensor], Tensor],
    image: Tensor,
    patch_size: Sequence[int],
    num_classes: int,
    options: WindowOptions = WindowOptions(),
    members: MemberHook | None = None,
) -> Tensor:
    """Logits (K, *spatial) of an image (C, *spatial) from a network trained on patches.

    A patch with one axis less than the image (a 2D network on a (C, Z, Y, X) volume) runs slice by
    slice along the first spatial axis (:func:`predict_volume_2d`); otherwise the whole image is tiled
    (:func:`predict_sliding_window`).

    Args:
        members: called once per mirror with that mirror's own logits (see :data:`MemberHook`); their
            mean is the returned logits up to rounding (the returned logits do not depend on it).
    """
    if len(patch_size) == image.ndim - 2:
        return _volume_2d(network, image, patch_size, num_classes, options, members)
    return _whole(network, image, patch_size, num_classes, options, members)


def _whole(
    network: Callable[[Tensor], Tensor],
    image: Tensor,
    patch_size: Sequence[int],
    num_classes: int,
    options: WindowOptions,
    members: MemberHook | None,
) -> Tensor:
    _check_args(image, patch_size, options.step_size, options.mirror_axes, options.batch)
    out, mirrors = _run(network, image[None], patch_size, num_classes, options, members is not None)
    _hand_over(members, out[0], None if mirrors is None else mirrors[:, 0])
    return out[0]


def _volume_2d(
    network: Callable[[Tensor], Tensor],
    image: Tensor,
    patch_size: Sequence[int],
    num_classes: int,
    options: WindowOptions,
    members: MemberHook | None,
) -> Tensor:
    if image.ndim != 4:
        raise ValueError(f"predict_volume_2d needs a (C, Z, Y, X) image, got shape {tuple(image.shape)}")
    slices = image.permute(1, 0, 2, 3)  # (Z, C, Y, X): slices are the batch
    _check_args(slices[0], patch_size, options.step_size, options.mirror_axes, options.batch)
    out, mirrors = _run(network, slices, patch_size, num_classes, options, members is not None)
    logits = out.permute(1, 0, 2, 3).contiguous()
    _hand_over(members, logits, None if mirrors is None else mirrors.permute(0, 2, 1, 3, 4))
    return logits


def _hand_over(members: MemberHook | None, mean: Tensor, mirrors: Tensor | None) -> None:
    """Each mirror's logits to the hook; with one mirror, the logits themselves."""
    if members is None:
        return
    if mirrors is None:
        members(0, mean)
        return
    for m in range(mirrors.shape[0]):
        members(m, mirrors[m])


def predict_sliding_window(
    network: Callable[[Tensor], Tensor],
    image: Tensor,
    patch_size: Sequence[int],
    num_classes: int,
    step_size: float = 0.5,
    mirror_axes: Sequence[int] | None = (0, 1, 2),
    use_gaussian: bool = True,
    device: torch.device | str = "cpu",
    batch_size: int | BatchSizer = 1,
    amp: bool = False,
    progress: bool = False,
    output_device: torch.device | str = "cpu",
) -> Tensor:
    """Logits of a whole image from a network trained on patches (keyword form of :class:`WindowOptions`).

    The image is padded with zeros to at least the patch size (centred, as nnU-Net), tiled, and
    the padding cropped off again. The network is put in eval mode for the call and restored after.

    Args:
        network: maps (B, C, *patch) to logits (B, K, *patch) in eval mode; already on ``device``
            (an ``nn.Module``, or any callable such as an exported backend's session).
        image: (C, *spatial) preprocessed image, on any device.
        patch_size: the plan's patch size, one value per spatial axis.
        num_classes: K, the network's output channels.
        mirror_axes: spatial axes (0-based) to mirror for test-time augmentation; None or () for none.
        use_gaussian: :attr:`WindowOptions.gaussian`.
        batch_size: :attr:`WindowOptions.batch`.
        step_size, device, amp, progress, output_device: as :class:`WindowOptions`.

    Returns:
        (K, *spatial) float32 logits on ``output_device``.

    Example:
        >>> net = torch.nn.Conv3d(1, 2, 3, padding=1)
        >>> predict_sliding_window(net, torch.zeros(1, 20, 40, 30), (16, 16, 16), 2).shape
        torch.Size([2, 20, 40, 30])
    """
    options = WindowOptions(
        step_size, tuple(mirror_axes or ()), use_gaussian, batch_size, device, amp, output_device, progress
    )
    return _whole(network, image, patch_size, num_classes, options, None)


def predict_volume_2d(
    network: Callable[[Tensor], Tensor],
    image: Tensor,
    patch_size: Sequence[int],
    num_classes: int,
    step_size: float = 0.5,
    mirror_axes: Sequence[int] | None = (0, 1),
    use_gaussian: bool = True,
    device: torch.device | str = "cpu",
    batch_size: int | BatchSizer = 16,
    amp: bool = False,
    progress: bool = False,
    output_device: torch.device | str = "cpu",
) -> Tensor:
    """Logits of a 3D volume from a 2D network, slice by slice along the first spatial axis.

    Tiles of several slices at the same in-plane position (and their mirrored copies) go through
    the network together (``batch_size`` inputs per pass). Arguments as
    :func:`predict_sliding_window`, except:

    Args:
        image: (C, Z, Y, X); each (C, Y, X) slice is predicted on its own.
        patch_size: the 2D plan's patch size (Y, X).
        mirror_axes: in-plane axes to mirror, 0 for Y and 1 for X.

    Returns:
        (K, Z, Y, X) float32 logits on ``output_device``.
    """
    options = WindowOptions(
        step_size, tuple(mirror_axes or ()), use_gaussian, batch_size, device, amp, output_device, progress
    )
    return _volume_2d(network, image, patch_size, num_classes, options, None)
