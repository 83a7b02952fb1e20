"""The spatial part of augmentation: rotation, scaling and mirroring of an enlarged crop.

Coordinates are voxel indices in array order (z, y, x). A patch voxel ``p`` of a patch of
size ``P`` is read from the crop (size ``S``) at

    t = M @ (p - c) + c + (S - P) // 2,        c = (P - 1) / 2,

where ``M = R @ diag(scale) @ F`` (``R`` the rotation, ``F`` the mirroring signs). With
``M = I`` that is exactly the centre crop at offset ``(S - P) // 2``, and the patch
rotates about its own centre. Only the ``prod(P)`` output coordinates are computed and the
crop is read once per output voxel (``grid_sample``, linear, for the image; the nearest
voxel, gathered by index, for the labels), whatever the crop size; unlike a full-volume
resampling followed by a crop (TorchIO's ``RandomAffine``) the cost does not grow with the
enlarged crop.

Rotation matrices follow nnU-Net (batchgeneratorsv2 ``create_affine_matrix_3d``):
``R = Rz(a2) @ Ry(a1) @ Rx(a0)``, ``a_i`` the angle about array axis ``i``; 2D: one angle
in the (y, x) plane.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "center_crop_flip",
    "required_size",
    "resample",
    "rotation_matrices",
    "sampling_matrix",
]


def rotation_matrices(angles: np.ndarray) -> np.ndarray:
    """Rotation matrices for many angle sets at once.

    Args:
        angles: (N, 1) in-plane angles (2D) or (N, 3) angles about axes 0, 1, 2 (3D), radians.

    Returns:
        (N, 2, 2) or (N, 3, 3) float64 matrices, ``Rz @ Ry @ Rx`` in 3D.
    """
    angles = np.asarray(angles, dtype=np.float64)
    cos, sin = np.cos(angles), np.sin(angles)
    n = angles.shape[0]
    if angles.shape[1] == 1:
        out = np.empty((n, 2, 2))
        out[:, 0, 0], out[:, 0, 1] = cos[:, 0], -sin[:, 0]
        out[:, 1, 0], out[:, 1, 1] = sin[:, 0], cos[:, 0]
        return out
    if angles.shape[1] != 3:
        raise ValueError(f"angles must have 1 (2D) or 3 (3D) columns, got shape {angles.shape}")
    one, zero = np.ones(n), np.zeros(n)
    c0, c1, c2 = cos.T
    s0, s1, s2 = sin.T
    rx = np.stack([one, zero, zero, zero, c0, -s0, zero, s0, c0], -1).reshape(n, 3, 3)
    ry = np.stack([c1, zero, s1, zero, one, zero, -s1, zero, c1], -1).reshape(n, 3, 3)
    rz = np.stack([c2, -s2, zero, s2, c2, zero, zero, zero, one], -1).reshape(n, 3, 3)
    return rz @ ry @ rx


def sampling_matrix(angles: Sequence[float], scale: float, flips: Sequence[bool]) -> np.ndarray:
    """``M = R @ (scale * I) @ diag(+-1)``: patch offsets to crop offsets (see module doc).

    Args:
        angles: 1 (2D) or 3 (3D) angles in radians; empty for no rotation.
        scale: the zoom factor (> 1 samples a larger region: objects get smaller).
        flips: per grid axis, whether it is mirrored (its length sets the dimension).

    Returns:
        (d, d) float64 matrix.
    """
    d = len(flips)
    rot = rotation_matrices(np.asarray([angles]))[0] if len(angles) else np.eye(d)
    if rot.shape != (d, d):
        raise ValueError(f"{len(angles)} rotation angle(s) do not fit a {d}D grid")
    return rot * float(scale) * np.where(np.asarray(flips, dtype=bool), -1.0, 1.0)[None, :]


def required_size(matrix: np.ndarray | None, patch: Sequence[int], crop: Sequence[int]) -> tuple[int, ...]:
    """The smallest centred sub-crop of ``crop`` from which the patch can be sampled.

    Sampling the sub-crop gives the same patch as sampling the whole crop (up to float
    rounding): it holds every voxel the linear interpolation reads, plus one voxel of margin,
    and it keeps the parity of ``crop - patch`` so that the patch stays at the same place.

    Args:
        matrix: (d, d) sampling matrix over the last d axes, or None for a plain centre crop.
        patch: patch size (the last d axes are resampled, leading ones are centre-cropped).
        crop: full crop size, same length as ``patch``.

    Returns:
        The sub-crop size, ``patch <= size <= crop`` per axis.
    """
    patch_a, crop_a = np.asarray(patch), np.asarray(crop)
    margin = np.zeros(len(patch_a), dtype=np.int64)
    if matrix is not None:
        d = matrix.shape[0]
        half = (patch_a[-d:] - 1) / 2.0
        reach = np.abs(matrix) @ half  # max |t - c| per axis
        lo = np.floor(half - reach)
        hi = np.floor(half + reach) + 1
        need = np.maximum(np.maximum(-lo, hi - (patch_a[-d:] - 1)), 0) + 1
        margin[-d:] = need.astype(np.int64)
    size = patch_a + 2 * margin + (crop_a - patch_a) % 2
    return tuple(int(s) for s in np.minimum(size, crop_a))


def _grid(
    matrices: torch.Tensor, patch: Sequence[int], crop: Sequence[int], device: torch.device
) -> torch.Tensor:
    """grid_sample grids (B, *patch, d), normalized with align_corners=False, last axis (x, y[, z])."""
    d = len(patch)
    b = matrices.shape[0]
    size = torch.tensor(crop, dtype=torch.float64)
    center = (torch.tensor(patch, dtype=torch.float64) - 1) / 2
    offset = torch.tensor([(s - p) // 2 for s, p in zip(crop, patch, strict=True)], dtype=torch.float64)
    # u_j = sum_k (2 / S_j) M_jk (p_k - c_k) + (2 (c_j + off_j) + 1) / S_j - 1, then reverse j
    cols = (matrices.to(torch.float64) * (2 / size)[None, :, None]).flip(1)  # (B, j reversed, k)
    bias = ((2 * (center + offset) + 1) / size - 1).flip(0)
    parts = []
    for k in range(d):
        ramp = torch.arange(patch[k], dtype=torch.float32, device=device) - float(center[k])
        part = ramp[None, :, None] * cols[:, :, k].to(device=device, dtype=torch.float32)[:, None, :]
        if k == 0:
            part = part + bias.to(device=device, dtype=torch.float32)
        shape = [b] + [1] * d + [d]
        shape[k + 1] = patch[k]
        parts.append(part.reshape(shape))
    partial = parts[0]
    for part in parts[1:-1]:
        partial = partial + part  # small: the last axis is still 1
    grid = empty((b, *patch, d), torch.float32, device)
    return torch.add(partial, parts[-1], out=grid)


def empty(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialized tensor; on the CPU in numpy-allocated memory.

    numpy asks the kernel for huge pages for large arrays, torch's CPU allocator does not
    (unless ``THP_MEM_ALLOC_ENABLE=1`` is set before torch starts): first writes to a fresh
    25 MB grid then cost about 3x fewer page faults.
    """
    if torch.device(device).type != "cpu":
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    return torch.from_numpy(np.empty(tuple(shape), dtype=torch.empty((), dtype=dtype).numpy().dtype))


def _nearest_labels(seg: torch.Tensor, matrix: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour labels of one sample, gathered by index (no float copy of the crop).

    Args:
        seg: (N, *crop) integer labels (N channels or slices sharing one transform).
        matrix: (d, d) sampling matrix.
        patch: the patch size (d values).

    Returns:
        (N, *patch) labels of ``seg``'s dtype, 0 outside the crop.
    """
    d, crop = len(patch), tuple(seg.shape[1:])
    padded = seg.new_zeros((seg.shape[0], *(s + 2 for s in crop)))  # a border of 0 outside the crop
    padded[(slice(None), *(slice(1, s + 1) for s in crop))] = seg
    strides = [int(np.prod([s + 2 for s in crop[j + 1 :]])) for j in range(d)]
    if int(np.prod([s + 2 for s in crop])) >= 2**31:
        raise ValueError(f"crop {crop} is too large to index with int32")
    flat: torch.Tensor | None = None
    for j in range(d):
        # t_j = sum_k M_jk (p_k - c_k) + c_j + (S_j - P_j) // 2, + 1 for the border
        parts = [
            (torch.arange(p, dtype=torch.float32, device=seg.device) - (p - 1) / 2) * float(matrix[j, k])
            for k, p in enumerate(patch)
        ]
        parts[0] += (patch[j] - 1) / 2 + (crop[j] - patch[j]) // 2 + 1
        coord = parts[0].reshape([-1] + [1] * (d - 1))
        for k in range(1, d):
            coord = coord + parts[k].reshape([1] * k + [-1] + [1] * (d - 1 - k))
        # floor(t + 1/2) by truncation of non-negative values (torch's round_/floor_ can take
        # milliseconds even on tiny tensors when torch uses several threads)
        index = coord.add_(0.5).clamp_(0, crop[j] + 1).to(torch.int32)
        flat = index.mul_(strides[j]) if flat is None else flat.add_(index, alpha=strides[j])
    assert flat is not None
    return padded.reshape(padded.shape[0], -1).index_select(1, flat.reshape(-1)).reshape(-1, *patch)


def resample(
    images: torch.Tensor, segs: torch.Tensor, matrices: torch.Tensor, patch: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample patches from crops through per-sample sampling matrices.

    The image is interpolated linearly by ``grid_sample`` (zeros outside the crop); labels
    take the nearest voxel, gathered by index straight from the integer crop (3x faster on
    a CPU than ``grid_sample(mode="nearest")``, which needs a float copy of the crop).

    Args:
        images: (B, C, *crop) float32 crops, zero outside the image.
        segs: (B, N, *crop) integer label crops, any negative value is mapped to 0 (N is 1,
            or the slices of a dummy-2D patch).
        matrices: (B, d, d) sampling matrices, d = len(patch) = number of spatial axes.
        patch: the patch size.

    Returns:
        ``(image, seg)``: (B, C, *patch) float32 and (B, N, *patch) int64.
    """
    crop = tuple(images.shape[2:])
    grid = _grid(matrices, patch, crop, images.device)
    image = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    seg = torch.stack([_nearest_labels(segs[b], matrices[b], patch) for b in range(segs.shape[0])])
    return image, seg.to(torch.int64).clamp_(min=0)


def center_crop_flip(x: torch.Tensor, patch: Sequence[int], flip_axes: Sequence[int]) -> torch.Tensor:
    """The centre ``patch`` of ``x`` (offset ``(S - P) // 2``), mirrored along ``flip_axes``.

    Args:
        x: (C, *S) tensor.
        patch: patch size (len = x.ndim - 1).
        flip_axes: spatial axes (0-based) to mirror.

    Returns:
        A new contiguous (C, *patch) tensor (one copy: the flip and the crop together).
    """
    slices = tuple(slice((s - p) // 2, (s - p) // 2 + p) for s, p in zip(x.shape[1:], patch, strict=True))
    view = x[(slice(None), *slices)]
    if flip_axes:
        return torch.flip(view, [a + 1 for a in flip_axes])
    return view.clone(memory_format=torch.contiguous_format)
