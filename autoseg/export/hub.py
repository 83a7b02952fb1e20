"""``autoseg export-model D --hub DIR``: a folder ready to push to a model hub.

The folder holds::

    model.zip           the archive (:mod:`autoseg.export.archive`)
    model.zip.sha256    its checksum, as ``sha256sum`` writes it
    README.md           the model card with the hub's YAML metadata header (labels, channels,
                        spacing, cross-validation metrics, license) above the card for people
    .gitattributes      model.zip stored through git LFS (what a hub repository needs for it)

Push it with ``hf upload OWNER/NAME DIR`` (or git + git-lfs); users then run
``autoseg predict -m hf://OWNER/NAME`` (or an https URL of model.zip with ``#sha256=`` and the
checksum), see :mod:`autoseg.io.remote`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from autoseg.export.model_card import render_markdown
from autoseg.utils.files import atomic_path

__all__ = ["hub_metadata", "write_hub_folder"]

ARCHIVE = "model.zip"
GITATTRIBUTES = "*.zip filter=lfs diff=lfs merge=lfs -text\n"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_metadata(card: Mapping[str, Any], sha256: str, license_id: str = "other") -> dict[str, Any]:
    """The YAML header of README.md: the hub's own keys (license, library_name, tags, pipeline_tag,
    metrics, model-index with the cross-validation Dice per class) and an ``autoseg`` block with
    what a user checks before running the model (labels, channels, spacing per configuration, sha256).
    """
    configs = card["configurations"]
    dataset = card["dataset"]["name"]
    metrics = [
        {"type": "dice", "name": f"CV Dice {label} ({name})", "value": round(float(value), 4)}
        for name, entry in configs.items()
        for label, value in (entry.get("cv_dice_per_class") or {}).items()
        if value is not None
    ]
    results = {
        "task": {"type": "image-segmentation", "name": "3D medical image segmentation"},
        "dataset": {"name": dataset, "type": dataset},
        "metrics": metrics,
    }
    return {
        "license": license_id,
        "library_name": "autoseg",
        "pipeline_tag": "image-segmentation",
        "tags": ["autoseg", "medical-imaging", "segmentation", *configs],
        "metrics": ["dice"],
        "model-index": [{"name": f"autoseg-{dataset}", "results": [results] if metrics else []}],
        "autoseg": {
            "labels": dict(card["labels"]),
            "channels": dict(card["input"]["channels"]),
            "file_ending": card["input"]["file_ending"],
            "spacing_mm": {name: entry["spacing_mm"] for name, entry in configs.items()},
            "training_median_spacing_mm": card["input"]["median_spacing_mm"],
            "folds": {name: entry["folds"] for name, entry in configs.items()},
            "archive": ARCHIVE,
            "sha256": sha256,
        },
    }


def _readme(card: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    header = yaml.safe_dump(dict(metadata), sort_keys=False, allow_unicode=True)
    sha = metadata["autoseg"]["sha256"]
    usage = [
        "## Use",
        "",
        "```",
        "pip install 'autoseg[hub]'",
        "autoseg predict -i IMAGES -o MASKS -m hf://OWNER/NAME",
        f"autoseg predict -i IMAGES -o MASKS -m https://HOST/PATH/{ARCHIVE}#sha256={sha}",
        "```",
        "",
    ]
    return f"---\n{header}---\n\n" + "\n".join(usage) + render_markdown(card)


def write_hub_folder(archive: Path, folder: Path, license_id: str = "other") -> dict[str, Any]:
    """Copy ``archive`` into ``folder`` with model.zip.sha256, README.md and .gitattributes.

    The card is the archive's model_card.json. Every file is written atomically; an existing
    folder is updated in place (other files in it are left alone).

    Returns:
        The README's metadata header (with the sha256 under ``autoseg``).
    """
    with zipfile.ZipFile(archive) as zf:
        card = json.loads(zf.read("model_card.json"))
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / ARCHIVE
    if archive.resolve() != target.resolve():
        with atomic_path(target, suffix=".zip") as tmp:
            shutil.copyfile(archive, tmp)
    sha = _sha256(target)
    metadata = hub_metadata(card, sha, license_id)
    for name, text in (
        (f"{ARCHIVE}.sha256", f"{sha}  {ARCHIVE}\n"),
        ("README.md", _readme(card, metadata)),
        (".gitattributes", GITATTRIBUTES),
    ):
        with atomic_path(folder / name) as tmp:
            tmp.write_text(text)
    return metadata
