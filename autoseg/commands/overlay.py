"""``autoseg overlay IMAGE MASK -o PNG``: a QC picture of a scan with its labels overlaid."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from autoseg.contracts.labels import LabelManager

WINDOW_HELP = (
    "soft-tissue (W400/L40), bone, lung, brain, percentile, auto (default) or LOW,HIGH "
    "(with a negative LOW write --window=-160,240)"
)


def label_names_from_dataset_json(path: Path) -> tuple[dict[int, str], str | None]:
    """{label value: name} (background and region labels left out) and the modality of channel 0.

    The modality is ``ct`` when channel 0 is named CT (nnU-Net's convention), else None.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: it is not JSON with a ``labels`` mapping.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such dataset.json (give --labels the dataset's dataset.json)")
    try:
        data: Any = json.loads(path.read_text())
        manager = LabelManager.from_labels(data["labels"], source=str(path), strict=False)
        names = {value: name for value, name in manager.names.items() if value > 0}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(
            f"{path}: not a dataset.json with a 'labels' mapping such as "
            f'{{"background": 0, "liver": 1}} ({type(err).__name__}: {err})'
        ) from None
    channel0 = str(data.get("channel_names", {}).get("0", "")).strip().lower()
    return names, ("ct" if channel0 == "ct" else None)


def read_pair(image_path: Path, mask_path: Path) -> tuple[Any, Any, tuple[float, ...]]:
    """Read the scan and its mask; check they fit together. Returns (image, mask, spacing (z, y, x)).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is not readable as an image, is not one channel, or the shapes differ.
    """
    import numpy as np

    from autoseg.io.images import ImageReadError, read_image

    arrays = []
    for path, role in ((image_path, "image"), (mask_path, "mask")):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such {role} file")
        try:
            arrays.append(read_image(path))
        except ImageReadError as err:
            raise ValueError(str(err)) from None
    (image, geom), (mask, mask_geom) = arrays
    if image.ndim not in (2, 3):
        raise ValueError(
            f"{image_path}: image of shape {image.shape} has several components; give one channel"
        )
    if image.shape != mask.shape:
        raise ValueError(
            f"image {image_path} has shape {tuple(image.shape)} but mask {mask_path} has shape "
            f"{tuple(mask.shape)} (z, y, x): give the mask that belongs to this image"
        )
    if not np.allclose(geom.spacing, mask_geom.spacing, rtol=1e-3, atol=1e-4):
        print(
            f"autoseg overlay: warning: spacing {geom.spacing} of {image_path} differs from "
            f"{mask_geom.spacing} of {mask_path}; drawing with the image's",
            file=sys.stderr,
        )
    if not np.issubdtype(mask.dtype, np.integer):
        if not np.array_equal(mask, np.round(mask)):
            raise ValueError(f"{mask_path}: the mask holds non-integer values; give a label image")
        mask = mask.astype(np.int64)
    return image, mask, geom.spacing


def cmd_overlay(args: argparse.Namespace) -> int:
    from autoseg.visualize.overlay import overlay_png, parse_window

    image, mask, spacing = read_pair(Path(args.image), Path(args.mask))
    names: dict[int, str] | None = None
    modality = args.modality
    if args.labels:
        names, dataset_modality = label_names_from_dataset_json(Path(args.labels))
        modality = modality or dataset_modality
    title = Path(args.image).name
    out = overlay_png(
        image,
        mask,
        spacing,
        args.output,
        window=parse_window(args.window),
        modality=modality,
        num_slices=args.num_slices,
        label_names=names,
        alpha=args.alpha,
        title=title,
    )
    print(out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    desc = "draw a scan with its labels overlaid (axial, coronal, sagittal) to a PNG, for QC"
    p = sub.add_parser("overlay", help=desc, description=desc)
    p.add_argument("image", help="the scan (one channel), e.g. imagesTr/case_0000.nii.gz")
    p.add_argument("mask", help="its label image (same shape), e.g. labelsTr/case.nii.gz or a prediction")
    p.add_argument("-o", "--output", required=True, help="the PNG to write")
    p.add_argument("--window", default="auto", help=WINDOW_HELP)
    p.add_argument("--modality", choices=["ct", "mr"], default=None, help="default: from --labels or guessed")
    p.add_argument("--labels", default=None, help="dataset.json for label names (and the CT modality)")
    p.add_argument("--num-slices", type=int, default=3, help="extra axial slices over the foreground")
    p.add_argument("--alpha", type=float, default=0.4, help="overlay opacity, 0..1")
    p.set_defaults(func=cmd_overlay)
