"""Quality-control pictures: a scan with its labels overlaid, and per-class Dice across cases.

Arrays follow autoseg's convention: (z, y, x) with the spacing in the same order. The three
planes are drawn as stored, without reorienting to the patient: axial is ``image[z]`` (rows y,
columns x), coronal ``image[:, y]`` (rows z, columns x) and sagittal ``image[:, :, x]`` (rows z,
columns y), with z drawn upwards. Every panel's pixel aspect comes from the spacing, so thick
slices are drawn thick.

The windows, colours and slice choice behind the overlay are in :mod:`autoseg.visualize.panels`;
their names are importable from here too.

Matplotlib runs with the Agg backend (no display needed); every PNG is written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from autoseg.utils.files import atomic_path
from autoseg.visualize.panels import (  # noqa: F401 (all re-exported: importable from here as before)
    CT_WINDOWS,
    HU_MIN_THRESHOLD,
    PALETTE,
    PERCENTILES,
    PLANES,
    Panel,
    Window,
    WindowSpec,
    blend_panel,
    central_indices,
    label_color,
    overlay_panels,
    parse_window,
    plane_aspect,
    spread_axial_indices,
    take_slice,
    window_bounds,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def overlay_figure(
    image: np.ndarray,
    mask: np.ndarray,
    spacing: Sequence[float],
    window: WindowSpec = "auto",
    modality: str | None = None,
    num_slices: int = 3,
    label_names: Mapping[int, str] | None = None,
    alpha: float = 0.4,
    title: str | None = None,
) -> Figure:
    """The matplotlib figure behind :func:`overlay_png` (same arguments; close it when done)."""
    image, mask, spacing = _checked(image, mask, spacing)
    plt = _pyplot()
    win = window_bounds(image, window, modality)
    rows = overlay_panels(image, mask, spacing, num_slices)
    ncols = max(len(r) for r in rows)
    # fixed cells; each panel shrinks inside its cell to its aspect, so nothing overlaps
    cell = 3.4 if ncols > 1 else 5.5  # inches; a lone 2D panel gets more room (and the title too)
    height = cell * len(rows) + 1.3
    grid = {"left": 0.02, "right": 0.98, "bottom": 0.55 / height, "top": 1 - 0.75 / height}
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(cell * ncols, height), squeeze=False, gridspec_kw={**grid, "hspace": 0.15}
    )
    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            if c < len(row):
                _draw_panel(ax, row[c], win, alpha)
            else:
                ax.axis("off")
    labels = sorted(int(v) for v in np.unique(mask) if v > 0)
    _legend(fig, labels, label_names or {})
    fig.suptitle(_overlay_title(image, mask, spacing, win, labels, title), fontsize=10)
    return fig


def overlay_png(
    image: np.ndarray,
    mask: np.ndarray,
    spacing: Sequence[float],
    path: str | os.PathLike[str],
    window: WindowSpec = "auto",
    modality: str | None = None,
    num_slices: int = 3,
    label_names: Mapping[int, str] | None = None,
    alpha: float = 0.4,
    title: str | None = None,
) -> Path:
    """Write a PNG of ``image`` with ``mask`` overlaid: orthogonal slices through the structures.

    Row 1 shows the axial, coronal and sagittal slices through the foreground's centre of mass,
    row 2 ``num_slices`` axial slices spread over the foreground's z extent (a 2D image, Z = 1,
    gets its one axial slice). The scan is grey in ``window``, each label a coloured,
    semi-transparent fill with a contour; the legend names the labels; pixel aspect follows
    ``spacing``. An empty mask still gives the central slices, titled "no foreground".

    Args:
        image: the scan (Z, Y, X), one channel.
        mask: integer labels (Z, Y, X), 0 = background.
        spacing: voxel size in mm, (z, y, x).
        path: the PNG to write (atomically; folders are created).
        window: see :func:`window_bounds`.
        modality: ``ct``, ``mr`` or None.
        num_slices: axial slices in row 2 (0 for none).
        label_names: {label value: name} for the legend (default ``label k``).
        alpha: the overlay's opacity, 0..1.
        title: first line of the figure title (e.g. the case name).

    Returns:
        ``path``.

    Raises:
        ValueError: shapes differ, the arrays are not 3D, or a bad window/modality.

    Example:
        >>> overlay_png(ct, seg, (2.5, 0.8, 0.8), "qc/case_000.png", modality="ct")  # doctest: +SKIP
        PosixPath('qc/case_000.png')
    """
    fig = overlay_figure(image, mask, spacing, window, modality, num_slices, label_names, alpha, title)
    return _save(fig, path, dpi=100)


def _checked(
    image: np.ndarray, mask: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim == 2:
        image = image[None]
    if mask.ndim == 2:
        mask = mask[None]
    if image.ndim != 3:
        raise ValueError(f"image has shape {image.shape}: expected (Z, Y, X) (one channel)")
    if image.shape != mask.shape:
        raise ValueError(f"image shape {image.shape} differs from mask shape {mask.shape}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) == 2:
        spacing = (1.0, *spacing)
    if len(spacing) != 3 or not all(s > 0 and math.isfinite(s) for s in spacing):
        raise ValueError(f"spacing {spacing} must be three positive numbers (z, y, x) in mm")
    return image, mask.astype(np.int64, copy=False), spacing  # type: ignore[return-value]


def _draw_panel(ax: Axes, panel: Panel, window: Window, alpha: float) -> None:
    # axial as stored (row 0 on top); coronal and sagittal with z upwards
    origin: Literal["upper", "lower"] = "upper" if panel.plane == "axial" else "lower"
    ax.imshow(blend_panel(panel.image, panel.mask, window, alpha), origin=origin, aspect=panel.aspect)
    for label in np.unique(panel.mask):
        if label > 0 and min(panel.mask.shape) > 1:
            ax.contour(panel.mask == label, levels=[0.5], colors=[label_color(int(label))], linewidths=0.8)
    ax.set_title(f"{panel.plane} {'zyx'[PLANES.index(panel.plane)]}={panel.index}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(fig: Figure, present: list[int], names: Mapping[int, str]) -> None:
    from matplotlib.patches import Patch

    labels = sorted(set(present) | {int(k) for k in names if int(k) > 0})
    if not labels:
        return
    handles = [
        Patch(
            facecolor=label_color(k),
            edgecolor=label_color(k),
            label=f"{k}: {names.get(k, f'label {k}')}" + ("" if k in present else " (not in mask)"),
        )
        for k in labels
    ]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=min(len(handles), 6),
        fontsize=9,
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )


def _overlay_title(
    image: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    window: Window,
    labels: list[int],
    title: str | None,
) -> str:
    shape = "x".join(str(s) for s in image.shape)
    sp = "x".join(f"{s:g}" for s in spacing)
    fg = f"{int((mask > 0).sum())} foreground voxels" if labels else "no foreground"
    first = f"{title} - " if title else ""
    return f"{first}{fg}\nshape {shape} (z,y,x), spacing {sp} mm, window {window.name}"


def plot_cv_dice(summary: Mapping[str, Any], path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write a box plot of per-class Dice across cases (one box per class, the mean marked).

    Args:
        summary: an evaluation summary, ``{"cases": [{"case": name, "metrics": {class: {"dice":
            d}}}], "mean": {class: {"dice": d}}}``; the validation summary's flat form
            (``{"cases": [{"case", "dice": {class: d}}], "mean": {class: d}}``) works too. A Dice
            of None (empty reference and prediction) is left out.
        path: the PNG to write (atomically).
        title: first line of the title (default "Dice per class").

    Returns:
        ``path``.

    Raises:
        ValueError: the summary has no cases.

    Example:
        >>> plot_cv_dice(json.load(open("summary.json")), "cv_dice.png")  # doctest: +SKIP
        PosixPath('cv_dice.png')
    """
    per_class = dice_per_class(summary)
    if not per_class:
        raise ValueError("the summary has no cases with Dice values ('cases' is empty or missing)")
    plt = _pyplot()
    names = list(per_class)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(names) + 2), 4.5))
    data = [per_class[n] if per_class[n] else [np.nan] for n in names]
    ax.boxplot(data, showmeans=True, meanprops={"marker": "D", "markerfacecolor": "white"})
    rng = np.random.default_rng(0)
    for i, values in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=10, alpha=0.5, color=label_color(i))
    ax.set_xticks(range(1, len(names) + 1), [f"{n}\n(n={len(per_class[n])})" for n in names])
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("Dice")
    ax.grid(axis="y", alpha=0.3)
    fg = foreground_mean(summary, per_class)
    fg_text = f"foreground mean Dice {fg:.4f}" if fg is not None else "foreground mean Dice: n/a"
    ax.set_title(f"{title or 'Dice per class'} ({_num_cases(summary)} cases)\n{fg_text}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi=100)


def dice_per_class(summary: Mapping[str, Any]) -> dict[str, list[float]]:
    """{class name: [Dice of each case]} from a summary, Nones left out, classes in first-seen order.

    Example:
        >>> dice_per_class({"cases": [{"case": "a", "metrics": {"liver": {"dice": 0.9}}}]})
        {'liver': [0.9]}
    """
    out: dict[str, list[float]] = {}
    for case in summary.get("cases", []):
        for name, value in _case_dice(case).items():
            values = out.setdefault(str(name), [])
            if value is not None:
                values.append(float(value))
    return out


def foreground_mean(summary: Mapping[str, Any], per_class: Mapping[str, list[float]]) -> float | None:
    """The summary's foreground mean Dice: its ``foreground_mean``, else the mean of the class means."""
    given = summary.get("foreground_mean")
    if isinstance(given, Mapping):
        given = given.get("dice")
    if given is not None:
        return float(given)
    means = []
    for name, values in per_class.items():
        entry = summary.get("mean", {}).get(name)
        value = entry.get("dice") if isinstance(entry, Mapping) else entry
        if value is None and values:
            value = float(np.mean(values))
        if value is not None:
            means.append(float(value))
    return float(np.mean(means)) if means else None


def _case_dice(case: Mapping[str, Any]) -> dict[str, float | None]:
    if "metrics" in case:
        return {name: m.get("dice") for name, m in case["metrics"].items()}
    return dict(case.get("dice", {}))


def _num_cases(summary: Mapping[str, Any]) -> int:
    return len(summary.get("cases", []))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: str | os.PathLike[str], dpi: int) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path
