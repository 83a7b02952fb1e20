"""The report's pictures as ``data:`` URIs (PNG, base64), so the page needs no other file and no network.

Example:
    >>> uri = histogram_png({"z": [1.0, 1.2], "y": [0.8, 0.8]}, "spacing [mm]")  # doctest: +SKIP
    >>> uri.startswith("data:image/png;base64,")  # doctest: +SKIP
    True
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["curves_png", "dice_strip_png", "file_uri", "histogram_png", "png_uri", "thumbnail_uri"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_uri(fig: Any, dpi: int = 80) -> str:
    """Render a matplotlib figure to a PNG ``data:`` URI and close it."""
    plt = _pyplot()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def file_uri(path: Path) -> str:
    """A PNG file as a ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def histogram_png(values: Mapping[str, Sequence[float]], xlabel: str) -> str:
    """One small histogram per key (e.g. per axis) side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(values), figsize=(3.0 * len(values), 2.4), squeeze=False)
    for ax, (name, data) in zip(axes[0], values.items(), strict=True):
        ax.hist(np.asarray(data, dtype=float), bins=min(20, max(3, len(data))), color="#4477aa")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return png_uri(fig)


def curves_png(history: Sequence[Mapping[str, Any]], title: str) -> str:
    """Training and validation loss, and the EMA pseudo-Dice, over the epochs of one fold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 2.6))
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r.get("train_loss") for r in history], "b-", label="train loss")
    ax.plot(epochs, [r.get("val_loss") for r in history], "r-", label="val loss")
    ax.set_xlabel("epoch", fontsize=8)
    ax.tick_params(labelsize=7)
    ax2 = ax.twinx()
    ax2.plot(epochs, [r.get("ema_dice") for r in history], "g-", label="pseudo-Dice EMA")
    ax2.set_ylim(0, 1)
    ax2.tick_params(labelsize=7)
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="center right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return png_uri(fig)


def dice_strip_png(per_class: Mapping[str, Sequence[float]], title: str) -> str:
    """Per-case Dice of each class as points over a box plot."""
    plt = _pyplot()
    names = list(per_class)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 2.6))
    data = [np.asarray(per_class[n], dtype=float) for n in names]
    ax.boxplot(data, showfliers=False)
    for i, d in enumerate(data, start=1):
        ax.plot(np.full(d.size, i) + np.linspace(-0.15, 0.15, d.size), d, ".", color="#cc6677", ms=4)
    ax.set_xticks(range(1, len(names) + 1), names, fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("Dice", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return png_uri(fig)


def thumbnail_uri(
    image_file: Path, mask_file: Path, label_names: Mapping[int, str], title: str
) -> str | None:
    """An overlay thumbnail (the prediction over channel 0), None when a file is missing."""
    if not image_file.is_file() or not mask_file.is_file():
        return None
    from autoseg.io.images import read_image
    from autoseg.visualize.overlay import overlay_figure

    image, geometry = read_image(image_file)
    mask, _ = read_image(mask_file)
    image = image[None] if image.ndim == 2 else image
    fig = overlay_figure(
        image, mask.reshape(image.shape), geometry.spacing, num_slices=0, label_names=label_names, title=title
    )
    return png_uri(fig, dpi=45)
