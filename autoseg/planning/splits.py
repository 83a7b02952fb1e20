"""Cross-validation splits: 5 folds over the sorted case names, seeded, stable.

With the default seed (12345) the folds are the ones nnU-Net v2 makes (a shuffled KFold
over sorted identifiers), so results can be compared fold by fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.utils.files import read_artifact, write_artifact

SPLITS_SCHEMA_VERSION = 1


def make_splits(
    case_names: Sequence[str], num_folds: int = 5, seed: int = 12345
) -> list[dict[str, list[str]]]:
    """Shuffle the sorted names with ``seed`` and cut them into ``num_folds`` validation folds.

    The first ``n % num_folds`` folds get one case more. The result depends only on the set
    of names, the number of folds and the seed.

    Raises:
        ValueError: fewer cases than folds.

    Example:
        >>> folds = make_splits([f"c{i}" for i in range(10)], 5)
        >>> sorted(sum((f["val"] for f in folds), [])) == sorted(f"c{i}" for i in range(10))
        True
    """
    names = sorted(case_names)
    if len(names) < num_folds:
        raise ValueError(
            f"{len(names)} cases cannot be split into {num_folds} folds; use num_folds<={len(names)}"
        )
    order = np.arange(len(names))
    np.random.RandomState(seed).shuffle(order)
    sizes = [len(names) // num_folds + (1 if i < len(names) % num_folds else 0) for i in range(num_folds)]
    folds, start = [], 0
    for size in sizes:
        val_idx = set(order[start : start + size].tolist())
        start += size
        folds.append(
            {
                "train": [n for i, n in enumerate(names) if i not in val_idx],
                "val": [n for i, n in enumerate(names) if i in val_idx],
            }
        )
    return folds


def check_splits(folds: Sequence[dict[str, Any]], case_names: Sequence[str], source: str) -> None:
    """Raise ValueError listing every problem of user-given splits (unknown cases, overlaps)."""
    known = set(case_names)
    problems = []
    for i, fold in enumerate(folds):
        train, val = set(fold.get("train", [])), set(fold.get("val", []))
        if not val:
            problems.append(f"fold {i}: no validation cases")
        for name in sorted((train | val) - known):
            problems.append(f"fold {i}: case {name!r} is not in the dataset")
        if train & val:
            problems.append(f"fold {i}: {len(train & val)} cases are in both train and val")
    if problems:
        raise ValueError(f"{source}: invalid splits:\n  " + "\n  ".join(problems))


def load_or_create_splits(
    path: Path, case_names: Sequence[str], num_folds: int, seed: int, user_file: Path | None = None
) -> list[dict[str, list[str]]]:
    """Use the user's splits file if given, else keep an existing file made for the same cases
    and settings, else make and write new splits."""
    if user_file is not None and user_file.is_file():
        import json

        folds = json.loads(user_file.read_text())
        folds = folds["folds"] if isinstance(folds, dict) else folds
        check_splits(folds, case_names, str(user_file))
        write_artifact(path, "splits", SPLITS_SCHEMA_VERSION, {"source": str(user_file.name), "folds": folds})
        return folds
    if path.is_file():
        data = read_artifact(path, "splits", SPLITS_SCHEMA_VERSION)
        same = data.get("seed") == seed and data.get("num_folds") == num_folds
        if same and sorted(data.get("cases", [])) == sorted(case_names):
            return data["folds"]
    folds = make_splits(case_names, num_folds, seed)
    write_artifact(
        path,
        "splits",
        SPLITS_SCHEMA_VERSION,
        {
            "seed": seed,
            "num_folds": num_folds,
            "cases": sorted(case_names),
            "folds": folds,
        },
    )
    return folds
