"""The pieces of the QC overlay pictures, without matplotlib: windows, colours, slices, panels.

Grey-value windows (:func:`window_bounds`: CT presets, percentiles for MR, or given bounds), the
label colours (:func:`label_color`), the slices to show (:func:`central_indices`,
:func:`spread_axial_indices`, :func:`overlay_panels`) and one slice blended as RGB
(:func:`blend_panel`). :mod:`autoseg.visualize.overlay` draws them and re-exports these names.

Arrays follow autoseg's convention: (z, y, x) with the spacing in the same order. The three
planes are taken as stored, without reorienting to the patient: axial is ``image[z]`` (rows y,
columns x), coronal ``image[:, y]`` (rows z, columns x) and sagittal ``image[:, :, x]`` (rows z,
columns y). Every panel's pixel aspect comes from the spacing, so thick slices are drawn thick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: CT windows as (width, level) in HU.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft-tissue": (400.0, 40.0),
    "bone": (1800.0, 400.0),
    "lung": (1500.0, -600.0),
    "brain": (80.0, 40.0),
}
#: Below this minimum an image of unknown modality is taken for CT in Hounsfield units.
HU_MIN_THRESHOLD = -500.0
#: Percentiles of the MR (non-CT) window.
PERCENTILES = (0.5, 99.5)
#: Label colours (matplotlib's tab10 without its grey, which would vanish in a grey scan).
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.122, 0.467, 0.706),
    (1.000, 0.498, 0.055),
    (0.173, 0.627, 0.173),
    (0.839, 0.153, 0.157),
    (0.580, 0.404, 0.741),
    (0.549, 0.337, 0.294),
    (0.890, 0.467, 0.761),
    (0.737, 0.741, 0.133),
    (0.090, 0.745, 0.812),
)
PLANES = ("axial", "coronal", "sagittal")
WindowSpec = str | tuple[float, float]


@dataclass(frozen=True)
class Window:
    """Grey values from ``low`` (black) to ``high`` (white); ``name`` says where they came from."""

    low: float
    high: float
    name: str


@dataclass(frozen=True)
class Panel:
    """One 2D view: the plane, the slice index along the plane's normal and the arrays (rows, cols)."""

    plane: str
    index: int
    image: np.ndarray
    mask: np.ndarray
    aspect: float


def label_color(label: int) -> tuple[float, float, float]:
    """The RGB colour (0..1) of foreground label ``label`` (>= 1); the palette repeats after 9."""
    return PALETTE[(int(label) - 1) % len(PALETTE)]


def window_bounds(image: np.ndarray, window: WindowSpec = "auto", modality: str | None = None) -> Window:
    """The grey-value window of ``image`` (any shape).

    Args:
        image: the scan.
        window: a CT preset (``soft-tissue`` W400/L40, ``bone`` W1800/L400, ``lung`` W1500/L-600,
            ``brain`` W80/L40), ``percentile`` (0.5-99.5 % of the voxels above the image's
            minimum), ``(low, high)``, or ``auto``: soft-tissue for CT (``modality="ct"``, or
            no modality and a minimum <= -500, as in HU), percentiles otherwise.
        modality: ``ct``, ``mr`` or None (unknown).

    Raises:
        ValueError: an unknown preset or modality, or low >= high.

    Example:
        >>> window_bounds(np.array([-1000.0, 0.0, 500.0]), "soft-tissue")
        Window(low=-160.0, high=240.0, name='soft-tissue W400/L40')
    """
    if modality not in (None, "ct", "mr"):
        raise ValueError(f"modality {modality!r} is not one of ct, mr (or leave it out)")
    if isinstance(window, tuple):
        low, high = float(window[0]), float(window[1])
        if not low < high:
            raise ValueError(f"window ({low}, {high}): low must be below high, e.g. (-160, 240)")
        return Window(low, high, f"[{low:g}, {high:g}]")
    if window == "auto":
        looks_like_hu = image.size > 0 and float(np.min(image)) <= HU_MIN_THRESHOLD
        window = "soft-tissue" if modality == "ct" or (modality is None and looks_like_hu) else "percentile"
    if window == "percentile":
        return _percentile_window(image)
    if window not in CT_WINDOWS:
        choices = ", ".join([*CT_WINDOWS, "percentile", "auto"])
        raise ValueError(f"window {window!r} is not one of {choices} (or give LOW,HIGH)")
    width, level = CT_WINDOWS[window]
    return Window(level - width / 2, level + width / 2, f"{window} W{width:g}/L{level:g}")


def _percentile_window(image: np.ndarray) -> Window:
    values = np.asarray(image, dtype=np.float64).ravel()
    if values.size == 0:
        return Window(0.0, 1.0, "empty image")
    above = values[values > values.min()]
    # "foreground-ish": voxels above the background level, when there are enough of them
    sample = above if above.size >= max(16, values.size // 100) else values
    low, high = (float(v) for v in np.percentile(sample, PERCENTILES))
    if not high > low:
        low, high = float(values.min()), float(values.max())
    if not high > low:
        high = low + 1.0
    return Window(low, high, f"percentiles {PERCENTILES[0]:g}-{PERCENTILES[1]:g}")


def parse_window(text: str) -> WindowSpec:
    """``"LOW,HIGH"`` -> (low, high); any other text is a preset name, returned as is.

    Example:
        >>> parse_window("-160,240"), parse_window("bone")
        ((-160.0, 240.0), 'bone')
    """
    if "," not in text:
        return text
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"window {text!r} is not LOW,HIGH with two numbers, e.g. -160,240") from None
    return (low, high)


def blend_panel(image: np.ndarray, mask: np.ndarray, window: Window, alpha: float = 0.4) -> np.ndarray:
    """The RGB picture (H, W, 3), floats in 0..1, of one slice: grey scan, labels blended in colour.

    Outside the mask the three channels are equal (grey); a voxel of label k is
    ``(1 - alpha) * grey + alpha * label_color(k)``.

    Args:
        image: the slice (H, W).
        mask: its labels (H, W), 0 = background.
        window: grey values mapped to black and white; values outside are clipped.
        alpha: the overlay's opacity, 0..1.

    Example:
        >>> rgb = blend_panel(np.zeros((2, 2)), np.eye(2, dtype=int), Window(0.0, 1.0, "x"))
        >>> rgb.shape, bool(np.ptp(rgb[0, 1]) == 0), bool(np.ptp(rgb[0, 0]) > 0)
        ((2, 2, 3), True, True)
    """
    if image.shape != mask.shape:
        raise ValueError(f"slice shape {image.shape} differs from mask slice shape {mask.shape}")
    grey = np.clip((np.asarray(image, dtype=np.float64) - window.low) / (window.high - window.low), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for label in np.unique(mask):
        if label <= 0:
            continue
        inside = mask == label
        rgb[inside] = (1 - alpha) * rgb[inside] + alpha * np.asarray(label_color(int(label)))
    return rgb


def plane_aspect(plane: str, spacing: Sequence[float]) -> float:
    """Height / width of one pixel of ``plane`` for a (z, y, x) ``spacing`` (imshow's ``aspect``).

    Example:
        >>> plane_aspect("coronal", (4.0, 0.8, 0.8))
        5.0
    """
    dz, dy, dx = (float(s) for s in spacing)
    return {"axial": dy / dx, "coronal": dz / dx, "sagittal": dz / dy}[plane]


def take_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2D slice (rows, cols) of a (Z, Y, X) volume: axial (Y, X), coronal (Z, X), sagittal (Z, Y)."""
    if plane == "axial":
        return volume[index]
    if plane == "coronal":
        return volume[:, index, :]
    return volume[:, :, index]


def central_indices(mask: np.ndarray) -> tuple[int, int, int]:
    """(z, y, x) of the slices to show: through the foreground's centre of mass.

    Where the slice through the centre of mass holds no foreground (a ring, two separate
    structures), the slice with the most foreground is taken instead. An empty mask gives the
    image's centre.
    """
    fg = mask > 0
    if not fg.any():
        return tuple(s // 2 for s in mask.shape)  # type: ignore[return-value]
    coords = np.argwhere(fg)
    centre = np.rint(coords.mean(axis=0)).astype(int)
    picked = []
    for axis in range(3):
        counts = np.bincount(coords[:, axis], minlength=mask.shape[axis])
        picked.append(int(centre[axis]) if counts[centre[axis]] > 0 else int(np.argmax(counts)))
    return picked[0], picked[1], picked[2]


def spread_axial_indices(mask: np.ndarray, num_slices: int) -> list[int]:
    """``num_slices`` axial indices spread evenly over the foreground's z extent (all of z if empty)."""
    if num_slices <= 0:
        return []
    zs = np.flatnonzero((mask > 0).any(axis=(1, 2)))
    first, last = (int(zs[0]), int(zs[-1])) if zs.size else (0, mask.shape[0] - 1)
    positions = np.linspace(first, last, num_slices + 2)[1:-1] if last > first else [first] * num_slices
    return sorted({int(round(p)) for p in positions})


def overlay_panels(
    image: np.ndarray, mask: np.ndarray, spacing: Sequence[float], num_slices: int = 3
) -> list[list[Panel]]:
    """The panels of the overlay figure, row by row.

    Row 1: axial, coronal, sagittal through the foreground's centre (axial only for a 2D image,
    Z = 1). Row 2 (3D only): ``num_slices`` axial slices spread over the foreground's extent.
    """
    z, y, x = central_indices(mask)
    index = {"axial": z, "coronal": y, "sagittal": x}
    planes = PLANES if image.shape[0] > 1 else ("axial",)
    rows = [[_panel(image, mask, spacing, p, index[p]) for p in planes]]
    if image.shape[0] > 1:
        spread = spread_axial_indices(mask, num_slices)
        if spread:
            rows.append([_panel(image, mask, spacing, "axial", k) for k in spread])
    return rows


def _panel(image: np.ndarray, mask: np.ndarray, spacing: Sequence[float], plane: str, index: int) -> Panel:
    return Panel(
        plane,
        index,
        take_slice(image, plane, index),
        take_slice(mask, plane, index),
        plane_aspect(plane, spacing),
    )
