"""``autoseg convert dicom IN OUT`` and ``autoseg convert msd TASK_FOLDER OUT_ROOT``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_convert_dicom(args: argparse.Namespace) -> int:
    from autoseg.io.convert import convert_dicom

    result = convert_dicom(args.input, args.output)
    if not result.written and not result.errors:
        notes = "".join(f"\n  {note}" for note in result.notes)
        print(f"error: no DICOM image series found under {args.input}{notes}", file=sys.stderr)
        return 1
    for note in result.notes:
        print(f"note: {note}")
    for entry in result.written:
        desc = repr(entry["description"]) if entry["description"] else ""
        what = " ".join(v for v in (entry["modality"], desc) if v)
        spacing = "x".join(f"{s:.3g}" for s in entry["spacing"])
        print(f"{entry['file']}: {what} {'x'.join(map(str, entry['shape']))} voxels, {spacing} mm (z, y, x)")
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    print(
        f"converted {len(result.written)} series into {args.output} (listed in series.json)"
        + (f"; {len(result.errors)} series failed" if result.errors else "")
    )
    return 1 if result.errors else 0


def cmd_convert_msd(args: argparse.Namespace) -> int:
    from autoseg.io.convert import convert_msd

    out = convert_msd(args.task_folder, args.out_root, args.dataset_id, args.name, args.num_workers)
    print(f"wrote {out}; check it with: autoseg validate {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert DICOM series or an MSD task into autoseg's inputs")
    formats = p.add_subparsers(dest="source_format", required=True, metavar="{dicom,msd}")
    d = formats.add_parser(
        "dicom",
        help="every image series under IN -> OUT/<SeriesInstanceUID>.nii.gz plus series.json",
        description="Convert every DICOM image series under IN (searched recursively) to NIfTI. "
        "Series that cannot be read are reported and the others still converted; exit status 1 "
        "if any failed.",
    )
    d.add_argument("input", type=Path, help="folder with DICOM files (nested folders are searched)")
    d.add_argument("output", type=Path, help="output folder")
    d.set_defaults(func=cmd_convert_dicom)
    m = formats.add_parser(
        "msd",
        help="a Medical Segmentation Decathlon task -> OUT_ROOT/DatasetXXX_Name (nnU-Net v2 raw layout)",
        description="Convert an MSD task folder (TaskXX_Name with dataset.json, imagesTr, labelsTr, "
        "imagesTs) into the nnU-Net v2 raw layout, one file per channel.",
    )
    m.add_argument("task_folder", type=Path, help="the MSD task folder, e.g. Task04_Hippocampus")
    m.add_argument("out_root", type=Path, help="the raw root to write DatasetXXX_Name into")
    m.add_argument("-d", "--dataset-id", type=int, default=None, help="dataset ID (default: the task number)")
    m.add_argument("--name", default=None, help="dataset name (default: the task name)")
    m.add_argument("--num-workers", type=int, default=None, help="worker processes (default: all cores)")
    m.set_defaults(func=cmd_convert_msd)
