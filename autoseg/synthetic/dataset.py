"""Synthetic segmentation datasets in the nnU-Net v2 raw layout, for tests and demos.

Each case is a "body" (an ellipsoid with a bone-like shell, a muscle and a fat ring, and a
smooth intensity inhomogeneity) holding one blob per foreground class: the union of two
rotated ellipsoids, defined in millimetres so that anisotropic spacing gives a thick-slice
view of the same anatomy. Classes may touch. Unlabelled spheres with the classes'
intensities ("distractors") and the rings make a single threshold fail, while each class
differs from its surroundings by a few noise standard deviations, so a network can learn it.

Example:
    >>> spec = SyntheticSpec(num_cases=4, classes=2, modality="ct", spacing=(2.5, 0.8, 0.8))
    >>> generate_dataset("/tmp/raw/Dataset900_Synthetic", spec, num_workers=4)  # doctest: +SKIP
    PosixPath('/tmp/raw/Dataset900_Synthetic')
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.ndimage import gaussian_filter

from autoseg.io.images import SUPPORTED_ENDINGS, Geometry, write_image
from autoseg.utils.files import write_json
from autoseg.utils.parallel import parallel_map

# Tissue codes; distractor k is code _FAT + k and class k is code _FAT + classes + k.
_OUTSIDE, _BODY, _SHELL, _MUSCLE, _FAT = 0, 1, 2, 3, 4
# Ring limits on the body's normalised squared radius: inner body | shell | muscle | fat | outside.
_RINGS = np.array([0.80, 0.87, 0.92, 1.0], dtype=np.float32) ** 2
_RING_CODES = np.array([_BODY, _SHELL, _MUSCLE, _FAT, _OUTSIDE], dtype=np.uint8)
_CONTRASTS = (0.30, -0.22, 0.38, -0.30)  # class offsets from soft tissue in contrast units, cycled
_CT_UNIT = 100.0  # HU per contrast unit (MR: the soft-tissue intensity is the unit)
_MR_NAMES = ("T1", "T2", "FLAIR", "PD", "DWI", "ADC")


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Shapes and spacings are (z, y, x).

    Attributes:
        num_cases: training cases, named ``case_000``, ``case_001``, ...
        channels: image channels; each shows the classes with its own contrast.
        classes: foreground classes (labels 1..classes); background is 0.
        shape: voxels per case, varied per axis by up to ``shape_jitter`` (a fraction).
        spacing: voxel size in mm, e.g. (5.0, 0.7, 0.7) for thick slices.
        modality: "ct" (int16 Hounsfield units) or "mr" (float32, per-case scale, 0 outside).
        noise: Gaussian noise std in contrast units (MR: the soft-tissue intensity; CT: 100 HU).
        shape_jitter: relative shape variation between cases; 0 gives exactly ``shape``.
        seed: case ``i`` is drawn from ``np.random.default_rng([seed, i])``.
        distractors: paint unlabelled spheres with each class's intensity (False makes an
            easy task, for smoke tests that must learn in seconds).
        class_scale: a size factor per class (cycled), e.g. (0.6, 1.0) for a small and a
            large structure; () keeps every class at the same drawn size.
        name: the dataset name written to dataset.json.
        file_ending: image file ending, e.g. ".nii.gz".
    """

    num_cases: int = 12
    channels: int = 1
    classes: int = 2
    shape: tuple[int, int, int] = (32, 48, 48)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    modality: Literal["ct", "mr"] = "mr"
    noise: float = 0.1
    shape_jitter: float = 0.1
    seed: int = 0
    distractors: bool = True
    class_scale: tuple[float, ...] = ()
    name: str = "Synthetic"
    file_ending: str = ".nii.gz"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "class_scale", tuple(float(v) for v in self.class_scale))
        if any(v <= 0 for v in self.class_scale):
            raise ValueError(f"class_scale needs positive factors, got {self.class_scale}")
        if len(self.shape) != 3 or len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"shape and spacing need 3 positive values (z, y, x), got {self}")
        if self.num_cases < 1 or self.channels < 1 or not 1 <= self.classes <= 100:
            raise ValueError("num_cases and channels must be >= 1, classes in 1..100")
        if self.modality not in ("ct", "mr"):
            raise ValueError(f"modality must be 'ct' or 'mr', got {self.modality!r}")
        if self.file_ending not in SUPPORTED_ENDINGS:
            raise ValueError(f"file_ending {self.file_ending!r} not one of {SUPPORTED_ENDINGS}")
        if self.noise < 0 or not 0 <= self.shape_jitter < 1:
            raise ValueError("noise must be >= 0 and shape_jitter in [0, 1)")


def generate_case(spec: SyntheticSpec, index: int) -> tuple[list[np.ndarray], np.ndarray, Geometry]:
    """Draw case ``index``: deterministic given ``(spec.seed, index)``.

    Returns:
        The channel images (CT: int16 HU; MR: float32, exactly 0 outside the body), the
        uint8 label map and the geometry (centred origin, identity direction).

    Example:
        >>> images, label, geom = generate_case(SyntheticSpec(shape_jitter=0), 0)
        >>> images[0].shape == label.shape == geom.shape == (32, 48, 48)
        True
    """
    rng = np.random.default_rng([spec.seed, index])
    jitter = rng.uniform(-spec.shape_jitter, spec.shape_jitter, 3)
    shape = tuple(max(8, round(n * (1 + j))) for n, j in zip(spec.shape, jitter, strict=True))
    spacing = np.asarray(spec.spacing)
    axes = [
        ((np.arange(n) - (n - 1) / 2) * s).astype(np.float32) for n, s in zip(shape, spacing, strict=True)
    ]
    half = np.array(shape) * spacing / 2  # mm from the volume's centre to its faces
    base, semi, centre = _body(rng, shape, axes, half)
    code = _classes(spec, rng, base, axes, semi, centre)
    label = np.where(code > _FAT + spec.classes, code - (_FAT + spec.classes), 0).astype(np.uint8)
    images = _intensities(spec, rng, code, axes, half)
    origin = tuple(float(v) for v in reversed(-(np.array(shape) - 1) / 2 * spacing))
    geometry = Geometry(shape, tuple(spec.spacing), origin, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return images, label, geometry


def _body(
    rng: np.random.Generator, shape: tuple[int, ...], axes: list[np.ndarray], half: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The body's tissue codes (rings on the normalised squared radius), its semi-axes and centre (mm)."""
    semi = half * rng.uniform(0.82, 0.94, 3)
    centre = half * rng.uniform(-0.03, 0.03, 3)
    terms = [((ax - c) / s) ** 2 for ax, c, s in zip(axes, centre, semi, strict=True)]
    r2 = terms[0][:, None, None] + (terms[1][:, None] + terms[2][None, :])[None]
    ring = np.zeros(shape, np.uint8)
    for limit in _RINGS:
        ring += r2 > limit
    del r2
    return _RING_CODES[ring], semi, centre


def _classes(
    spec: SyntheticSpec,
    rng: np.random.Generator,
    base: np.ndarray,
    axes: list[np.ndarray],
    semi: np.ndarray,
    centre: np.ndarray,
) -> np.ndarray:
    """Tissue codes with the classes painted as blobs in the inner body (and unlabelled distractors)."""
    K = spec.classes
    inner = _RINGS[0] ** 0.5 * semi
    scale = min(float(np.exp(np.log(semi).mean())), 1.3 * float(semi.min()))
    best: tuple[float, np.ndarray] = (-1.0, base)
    for _attempt in range(20):  # redraw when a class came out much smaller than drawn
        code = base.copy()
        fill = _paint_classes(
            code, rng, axes, centre, inner, scale * min(1.0, (4 / K) ** (1 / 3)), K, spec.class_scale
        )
        best = max(best, (fill, code), key=lambda b: b[0])
        if fill >= 0.4:
            break
    fill, code = best
    if fill <= 0:
        raise ValueError(f"shape {spec.shape} at spacing {spec.spacing} is too small for {K} classes")
    # small unlabelled spheres with class k's intensities
    for k in range(1, K + 1 if spec.distractors else 1):
        radii = scale * rng.uniform(0.08, 0.14) * rng.uniform(0.9, 1.1, 3)
        c = centre + rng.uniform(-0.7, 0.7, 3) * inner
        _paint(code, axes, [(c, radii, np.eye(3))], _FAT + k)
    return code


def _intensities(
    spec: SyntheticSpec, rng: np.random.Generator, code: np.ndarray, axes: list[np.ndarray], half: np.ndarray
) -> list[np.ndarray]:
    """Channel images from the tissue codes: levels, mild blur, smooth inhomogeneity, noise."""
    u = [ax / h for ax, h in zip(axes, half, strict=True)]
    amp, freq, phase = rng.uniform(0.04, 0.07, 3), rng.uniform(0.5, 2.0, 3), rng.uniform(0, 2 * np.pi, 3)
    f = [(a * np.sin(w * x + p)).astype(np.float32) for x, a, w, p in zip(u, amp, freq, phase, strict=True)]
    cross = np.float32(rng.uniform(-0.05, 0.05)) * u[1][:, None] * u[2][None, :]
    bias = f[0][:, None, None] + (f[1][:, None] + f[2][None, :] + cross)[None]
    mr_scale = float(np.exp(rng.uniform(np.log(30), np.log(3000))))
    images = []
    for channel in range(spec.channels):
        img = gaussian_filter(_levels(spec, channel, rng)[code], 0.6, truncate=2.0)
        noise = rng.standard_normal(code.shape, dtype=np.float32) * np.float32(spec.noise)
        if spec.modality == "ct":
            img += (bias + noise) * np.float32(_CT_UNIT)
            images.append(np.clip(np.rint(img), -1024, 3071).astype(np.int16))
        else:
            img *= 1 + bias
            img += noise
            np.maximum(img, 0, out=img)
            img *= (code != _OUTSIDE) * np.float32(mr_scale)
            images.append(img)
    return images


def generate_dataset(out_folder: str | Path, spec: SyntheticSpec, num_workers: int | None = 1) -> Path:
    """Write ``spec.num_cases`` cases and dataset.json in the nnU-Net v2 raw layout.

    Files: ``imagesTr/case_000_0000{ending}`` (one per channel), ``labelsTr/case_000{ending}``.
    Existing files of the same names are overwritten; other files are left alone.

    Args:
        out_folder: the dataset folder, e.g. ``.../raw/Dataset900_Synthetic``.
        spec: what to generate.
        num_workers: processes (None: all cores; 0 or 1: in this process).

    Returns:
        ``out_folder`` as a Path.
    """
    out = Path(out_folder)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    parallel_map(partial(_write_case, out, spec), range(spec.num_cases), num_workers, desc="synthetic")
    write_json(out / "dataset.json", dataset_json(spec))
    return out


def dataset_json(spec: SyntheticSpec) -> dict[str, Any]:
    """The dataset.json content for ``spec``."""
    if spec.modality == "ct":
        names = ["CT"] * spec.channels
    else:
        names = [_MR_NAMES[c] if c < len(_MR_NAMES) else f"MR{c}" for c in range(spec.channels)]
    return {
        "name": spec.name,
        "description": f"Synthetic data (no real patients) generated by autoseg.synthetic from {spec}",
        "channel_names": {str(c): n for c, n in enumerate(names)},
        "labels": {"background": 0, **{f"class_{k}": k for k in range(1, spec.classes + 1)}},
        "numTraining": spec.num_cases,
        "file_ending": spec.file_ending,
    }


def _write_case(out: Path, spec: SyntheticSpec, index: int) -> str:
    images, label, geometry = generate_case(spec, index)
    name = f"case_{index:03d}"
    for channel, image in enumerate(images):
        write_image(image, geometry, out / "imagesTr" / f"{name}_{channel:04d}{spec.file_ending}")
    write_image(label, geometry, out / "labelsTr" / f"{name}{spec.file_ending}")
    return name


def _levels(spec: SyntheticSpec, channel: int, rng: np.random.Generator) -> np.ndarray:
    """Intensity per tissue code for one channel (CT: HU; MR: soft tissue = 1)."""
    offsets = np.array([_CONTRASTS[(k + channel) % len(_CONTRASTS)] for k in range(spec.classes)])
    if channel % 2 == 1 and spec.classes >= 2:
        offsets[1] *= 0.1  # odd channels barely show class 2
    offsets *= rng.uniform(0.9, 1.1, spec.classes)
    if spec.modality == "ct":
        tissue = [-1000.0, 40.0, rng.uniform(400, 1000), 55.0, -90.0]
        classes = 40.0 + _CT_UNIT * offsets
    else:
        tissue = [0.0, 1.0, 0.35, 1.15, 1.5 if channel % 2 == 0 else 1.2]
        classes = 1.0 + offsets
    return np.concatenate([tissue, classes, classes]).astype(np.float32)


def _paint_classes(
    code: np.ndarray,
    rng: np.random.Generator,
    axes: list[np.ndarray],
    centre: np.ndarray,
    inner: np.ndarray,
    scale: float,
    classes: int,
    class_scale: tuple[float, ...] = (),
) -> float:
    """Paint one blob per class (two rotated ellipsoids, sizes in mm), about half of them
    touching the previous class; returns the smallest fraction of a main ellipsoid painted."""
    voxel = float(np.prod([ax[1] - ax[0] for ax in axes]))  # mm³ (shapes are at least 8)
    fill, prev = np.inf, None
    for k in range(1, classes + 1):
        radii = scale * rng.uniform(0.24, 0.36, 3)
        if class_scale:
            radii *= class_scale[(k - 1) % len(class_scale)]
        room = np.maximum(inner - 1.2 * radii.max(), 0.1 * inner)  # where the centre may lie
        if prev is not None and rng.random() < 0.5:
            c = prev[0] - centre + _unit(rng.normal(size=3)) * 0.85 * (prev[1].mean() + radii.mean())
        else:
            c = rng.uniform(-0.6, 0.6, 3) * room
        c = centre + c / max(1.0, float(np.linalg.norm(c / room)))
        lobe = (c + _unit(rng.normal(size=3)) * 0.6 * radii.mean(), radii * rng.uniform(0.5, 0.8, 3))
        painted = _paint(
            code, axes, [(c, radii, _rotation(rng)), (*lobe, _rotation(rng))], _FAT + classes + k
        )
        fill = min(fill, painted * voxel / float(4 / 3 * np.pi * np.prod(radii)))
        prev = (c, radii)
    return float(fill)


def _paint(code: np.ndarray, axes: list[np.ndarray], ellipsoids: list, value: int) -> int:
    """Set ``value`` on inner-body voxels inside the union of ``(centre, radii, rotation)``
    ellipsoids (mm), working in their bounding box only; returns the voxels painted."""
    box = []
    for a, ax in enumerate(axes):
        lo = min(c[a] - r.max() for c, r, _ in ellipsoids)
        hi = max(c[a] + r.max() for c, r, _ in ellipsoids)
        box.append(slice(int(np.searchsorted(ax, lo)), int(np.searchsorted(ax, hi, side="right"))))
    grid = [
        ax[s].reshape([-1 if i == a else 1 for i in range(3)])
        for a, (ax, s) in enumerate(zip(axes, box, strict=True))
    ]
    inside = np.zeros([s.stop - s.start for s in box], bool)
    for c, r, rot in ellipsoids:
        d = [g - np.float32(ci) for g, ci in zip(grid, c, strict=True)]
        q = sum(((rot[i, 0] * d[0] + rot[i, 1] * d[1] + rot[i, 2] * d[2]) / r[i]) ** 2 for i in range(3))
        inside |= q <= 1
    sub = code[tuple(box)]
    paint = inside & (sub == _BODY)
    sub[paint] = value
    return int(paint.sum())


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)
