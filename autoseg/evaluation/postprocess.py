"""Connected-component post-processing: keep the largest component of the foreground or of a label.

Components are connected in full connectivity (26 neighbours in 3D, 8 in 2D): voxels touching at an
edge or a corner belong to one object. Of components of equal size the first in raster order is kept.

:func:`determine_postprocessing` chooses a :class:`PostprocessingSpec` on cross-validation
predictions, judged by Dice alone:

1. foreground LCC (largest component of all labels together) is kept if the mean foreground Dice
   (the mean of the per-class mean Dice) improves and no class's mean Dice gets worse;
2. on top of that, for each plain label in turn (regions are not candidates), the label's LCC is
   kept if that label's mean Dice improves and no class gets worse.

"Improves" means by more than ``DICE_EPS`` and "worse" by more than ``DICE_EPS``. A class whose
Dice is None in every case (in neither prediction nor reference anywhere) counts as 1 in these
comparisons: it is perfect, and removing its last false positives makes it so.

postprocessing.json (``write_artifact(..., "postprocessing", 1, ...)``)::

    {"kind": "postprocessing", "schema_version": 1,
     "postprocessing": {"foreground_lcc": true, "class_lcc": [2]},
     "report": {"num_cases": 5, "dice_before": {...}, "foreground_dice_before": 0.8,
                "decisions": [{"step": "foreground_lcc", "kept": true, "dice": {...}, ...}, ...],
                "dice_after": {...}, "foreground_dice_after": 0.85, ...}}
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from autoseg.evaluation.evaluate import class_mask, evaluate_folders, pair_cases
from autoseg.evaluation.metrics import mask_stats
from autoseg.utils.files import write_artifact
from autoseg.utils.parallel import parallel_map

POSTPROCESSING_SCHEMA_VERSION = 1
#: Dice differences at most this large count as no change.
DICE_EPS = 1e-9

__all__ = [
    "POSTPROCESSING_SCHEMA_VERSION",
    "PostprocessingSpec",
    "apply_postprocessing",
    "determine_postprocessing",
    "largest_component",
    "load_spec",
    "postprocess_folder",
]


@dataclass(frozen=True)
class PostprocessingSpec:
    """What to remove from a predicted label map; the default removes nothing.

    Attributes:
        foreground_lcc: keep only the largest connected component of the foreground (labels != 0).
        class_lcc: labels of which only the largest component is kept (sorted, unique); the other
            components become background. Applied after ``foreground_lcc`` (see
            :func:`apply_postprocessing`).
    """

    foreground_lcc: bool = False
    class_lcc: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        labels = tuple(self.class_lcc)
        if any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0 for v in labels):
            raise ValueError(f"class_lcc {list(labels)}: expected positive integer labels")
        object.__setattr__(self, "class_lcc", tuple(sorted({int(v) for v in labels})))
        object.__setattr__(self, "foreground_lcc", bool(self.foreground_lcc))

    def to_dict(self) -> dict[str, Any]:
        return {"foreground_lcc": self.foreground_lcc, "class_lcc": list(self.class_lcc)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PostprocessingSpec:
        """The spec of ``{"foreground_lcc": bool, "class_lcc": [int, ...]}`` (both keys optional).

        Raises:
            ValueError: an unknown key or a value of the wrong type.
        """
        unknown = set(data) - {"foreground_lcc", "class_lcc", "kind", "schema_version"}
        if unknown:
            raise ValueError(
                f"postprocessing {dict(data)}: unknown key(s) {sorted(unknown)}; "
                "expected foreground_lcc (true/false) and class_lcc (a list of labels)"
            )
        fg, labels = data.get("foreground_lcc", False), data.get("class_lcc", [])
        if not isinstance(fg, bool) or not isinstance(labels, list | tuple):
            raise ValueError(
                f"postprocessing {dict(data)}: foreground_lcc must be true or false, "
                "class_lcc a list of labels"
            )
        return cls(foreground_lcc=fg, class_lcc=tuple(labels))

    def with_class(self, label: int) -> PostprocessingSpec:
        """This spec with ``label`` added to ``class_lcc``."""
        return PostprocessingSpec(self.foreground_lcc, (*self.class_lcc, label))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component (full connectivity) of a boolean mask; same shape, bool.

    Example:
        >>> largest_component(np.array([1, 1, 0, 1], bool))
        array([ True,  True, False, False])
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return out
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    components, count = ndimage.label(mask[box], ndimage.generate_binary_structure(mask.ndim, mask.ndim))
    if count == 1:
        out[box] = mask[box]
        return out
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    out[box] = components == int(np.argmax(sizes))
    return out


def apply_postprocessing(seg: np.ndarray, spec: PostprocessingSpec) -> np.ndarray:
    """A post-processed copy of a label map (same shape and dtype); removed voxels become 0.

    The foreground LCC comes first, then each label's. With both, the two steps repeat until
    nothing changes (removing a label's islands can split the foreground), so that the result has
    one foreground component and one per listed label, and applying the spec again changes nothing.

    Example:
        >>> seg = np.array([1, 1, 0, 2, 0, 1], np.uint8)
        >>> apply_postprocessing(seg, PostprocessingSpec(foreground_lcc=True))
        array([1, 1, 0, 0, 0, 0], dtype=uint8)
        >>> apply_postprocessing(seg, PostprocessingSpec(class_lcc=(1,)))
        array([1, 1, 0, 2, 0, 0], dtype=uint8)
    """
    out = np.array(seg, copy=True)
    while True:
        removed = 0
        if spec.foreground_lcc:
            removed += _keep_largest(out, out != 0)
        for label in spec.class_lcc:
            removed += _keep_largest(out, out == label)
        # removing a class's islands can split the foreground: repeat until nothing changes
        if not removed or not (spec.foreground_lcc and spec.class_lcc):
            return out


def _keep_largest(seg: np.ndarray, mask: np.ndarray) -> int:
    """Set the voxels of ``mask`` outside its largest component to 0 in ``seg``; how many were."""
    drop = mask & ~largest_component(mask)
    seg[drop] = 0
    return int(np.count_nonzero(drop))


def load_spec(path: str | os.PathLike[str]) -> PostprocessingSpec:
    """Read a spec from a postprocessing JSON (the spec's dict) or a file with a "postprocessing" key.

    Raises:
        FileNotFoundError, ValueError: naming the file.
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (give a postprocessing.json or selection.json)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if isinstance(data, dict) and "postprocessing" in data:
        data = data["postprocessing"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with foreground_lcc and class_lcc")
    try:
        return PostprocessingSpec.from_dict(data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def _dice_of_specs(
    item: tuple[str, Path, Path],
    specs: Sequence[PostprocessingSpec],
    classes: Mapping[str, Sequence[int]],
    ignore_label: int | None,
) -> list[dict[str, float]]:
    """Per spec, the Dice of each class of one case (NaN where the class is in neither mask)."""
    from autoseg.io.images import read_image

    _, pred_file, ref_file = item
    pred, ref = read_image(pred_file)[0], read_image(ref_file)[0]
    if pred.shape != ref.shape:
        raise ValueError(
            f"{pred_file}: shape {pred.shape} differs from the reference's {ref.shape} ({ref_file})"
        )
    valid = None if ignore_label is None else ref != ignore_label
    refs = {
        name: class_mask(ref, [v for v in values if v != ignore_label]) for name, values in classes.items()
    }
    out = []
    for spec in specs:
        seg = apply_postprocessing(pred, spec)
        out.append(
            {
                name: mask_stats(class_mask(seg, values), refs[name], valid).dice
                for name, values in classes.items()
            }
        )
    return out


def _mean_dice(per_case: Sequence[Mapping[str, float]], classes: Sequence[str]) -> dict[str, float | None]:
    means: dict[str, float | None] = {}
    for name in classes:
        values = [d[name] for d in per_case if not np.isnan(d[name])]
        means[name] = float(np.mean(values)) if values else None
    return means


def _score(means: Mapping[str, float | None]) -> dict[str, float]:
    return {k: 1.0 if v is None else v for k, v in means.items()}


def _foreground(means: Mapping[str, float | None]) -> float:
    scores = list(_score(means).values())
    return float(np.mean(scores)) if scores else 1.0


def _worse(before: Mapping[str, float | None], after: Mapping[str, float | None]) -> list[str]:
    b, a = _score(before), _score(after)
    return [k for k in b if a[k] < b[k] - DICE_EPS]


def _mean_dice_of_specs(
    pairs: list[tuple[str, Path, Path]],
    specs: Sequence[PostprocessingSpec],
    classes: Mapping[str, Sequence[int]],
    ignore_label: int | None,
    num_workers: int | None,
    desc: str,
) -> list[dict[str, float | None]]:
    """Per spec, the mean Dice per class over the cases; one parallel pass over the files."""
    work = functools.partial(_dice_of_specs, specs=list(specs), classes=classes, ignore_label=ignore_label)
    per_case = parallel_map(work, pairs, num_workers, desc=desc)
    return [_mean_dice([case[i] for case in per_case], list(classes)) for i in range(len(specs))]


@dataclass
class _Search:
    """The greedy search's state: the chosen spec, its mean Dice per class, the decisions so far."""

    spec: PostprocessingSpec
    dice: dict[str, float | None]
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def consider(
        self, candidate: PostprocessingSpec, dice: dict[str, float | None], target: tuple[str, int] | None
    ) -> None:
        """Keep ``candidate`` if the Dice of the target (class name, label) improves, or with
        ``target`` None the foreground Dice, and no class gets worse."""
        worse = _worse(self.dice, dice)
        if target is None:
            gain, step, extra = _foreground(dice) - _foreground(self.dice), "foreground_lcc", {}
        else:
            gain, step = _score(dice)[target[0]] - _score(self.dice)[target[0]], "class_lcc"
            extra = {"class": target[0], "label": target[1]}
        kept = gain > DICE_EPS and not worse
        self.decisions.append(
            {
                "step": step,
                **extra,
                "candidate": candidate.to_dict(),
                "dice": dice,
                "foreground_dice": _foreground(dice),
                "gain": gain,
                "worse": worse,
                "kept": kept,
            }
        )
        if kept:
            self.spec, self.dice = candidate, dice


def determine_postprocessing(
    pred_folder: str | os.PathLike[str],
    ref_folder: str | os.PathLike[str],
    classes: Mapping[str, Sequence[int]],
    file_ending: str = ".nii.gz",
    tolerance_mm: float = 1.0,
    num_workers: int | None = None,
    output_folder: str | os.PathLike[str] | None = None,
    ignore_label: int | None = None,
    cases: Sequence[str] | None = None,
) -> tuple[PostprocessingSpec, dict[str, Any]]:
    """Choose the post-processing that improves the Dice of ``pred_folder`` (see the module docstring).

    Args:
        pred_folder, ref_folder: folders of label maps named ``{case}{file_ending}`` (e.g. the
            cross-validation predictions and labelsTr).
        classes: class name -> label values; only single-label classes are candidates for class LCC.
        file_ending: e.g. ``.nii.gz``.
        tolerance_mm: NSD tolerance of the summary.json written to ``output_folder``.
        num_workers: processes (None: all cores).
        output_folder: where to write the post-processed predictions, their summary.json and
            postprocessing.json; None: nothing is written.
        ignore_label: reference value of voxels that count nowhere.
        cases: only these cases (None: every file of both folders).

    Returns:
        The chosen spec and the report (Dice before and after, each decision with its numbers).

    Example:
        >>> spec, report = determine_postprocessing("cv_pred", "labelsTr", {"liver": [1]})  # doctest: +SKIP
        >>> spec.to_dict(), report["foreground_dice_after"]  # doctest: +SKIP
        ({'foreground_lcc': True, 'class_lcc': []}, 0.93)
    """
    pairs = pair_cases(pred_folder, ref_folder, file_ending, cases)
    classes = {str(k): [int(v) for v in vals] for k, vals in classes.items()}
    fg_spec = PostprocessingSpec(foreground_lcc=True)
    before, with_fg = _mean_dice_of_specs(
        pairs,
        [PostprocessingSpec(), fg_spec],
        classes,
        ignore_label,
        num_workers,
        "postprocessing: foreground",
    )
    search = _Search(PostprocessingSpec(), before)
    search.consider(fg_spec, with_fg, None)
    for name, values in classes.items():
        if len(values) == 1 and values[0] != ignore_label:
            candidate = search.spec.with_class(values[0])
            (dice,) = _mean_dice_of_specs(
                pairs, [candidate], classes, ignore_label, num_workers, f"postprocessing: {name}"
            )
            search.consider(candidate, dice, (name, values[0]))
    report: dict[str, Any] = {
        "classes": classes,
        "num_cases": len(pairs),
        "dice_before": before,
        "foreground_dice_before": _foreground(before),
        "decisions": search.decisions,
        "postprocessing": search.spec.to_dict(),
        "dice_after": search.dice,
        "foreground_dice_after": _foreground(search.dice),
    }
    if output_folder is not None:
        out = Path(output_folder)
        postprocess_folder([p for _, p, _ in pairs], out, search.spec, num_workers)
        names = [case for case, _, _ in pairs]
        evaluate_folders(
            out, ref_folder, classes, file_ending, tolerance_mm, ignore_label, num_workers, names,
            output=out / "summary.json",
        )  # fmt: skip
        report.update(output_folder=str(out), summary=str(out / "summary.json"))
        write_artifact(
            out / "postprocessing.json",
            "postprocessing",
            POSTPROCESSING_SCHEMA_VERSION,
            {"postprocessing": search.spec.to_dict(), "report": report},
        )
    return search.spec, report


def _postprocess_file(item: tuple[Path, Path], spec: PostprocessingSpec) -> Path:
    from autoseg.io.images import read_image, write_image

    source, target = item
    seg, geometry = read_image(source)
    return write_image(apply_postprocessing(seg, spec), geometry, target)


def postprocess_folder(
    files: Sequence[Path],
    out_folder: str | os.PathLike[str],
    spec: PostprocessingSpec,
    num_workers: int | None = None,
) -> list[Path]:
    """Apply ``spec`` to each label map in ``files``, writing ``out_folder/<same name>`` (same geometry).

    Returns:
        The written files, in the order of ``files``.
    """
    out = Path(out_folder)
    out.mkdir(parents=True, exist_ok=True)
    items = [(Path(f), out / Path(f).name) for f in files]
    same = [str(s) for s, t in items if s.resolve() == t.resolve()]
    if same:
        raise ValueError(
            f"{out}: is the input folder; give another output folder (would overwrite {same[0]})"
        )
    return parallel_map(
        functools.partial(_postprocess_file, spec=spec), items, num_workers, desc="postprocessing"
    )
