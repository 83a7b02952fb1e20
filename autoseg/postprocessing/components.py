"""Connected-component post-processing: keep the largest component of the foreground or of a label.

Components are connected in full connectivity (26 neighbours in 3D, 8 in 2D): voxels touching at an
edge or a corner belong to one object. Of components of equal size the first in raster order is kept.

:func:`determine_postprocessing`, which chooses a :class:`PostprocessingSpec` on cross-validation
predictions, is in :mod:`autoseg.evaluation.postprocess_search`.
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

from autoseg.utils.parallel import parallel_map

POSTPROCESSING_SCHEMA_VERSION = 1
#: Dice differences at most this large count as no change.
DICE_EPS = 1e-9

__all__ = [
    "POSTPROCESSING_SCHEMA_VERSION",
    "PostprocessingSpec",
    "apply_postprocessing",
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
        region_lcc: regions (tuples of labels, e.g. BraTS's tumour core ``(2, 3)``) of which only the
            largest component of their union is kept; the rest becomes background. Written to JSON
            only when not empty.
    """

    foreground_lcc: bool = False
    class_lcc: tuple[int, ...] = field(default=())
    region_lcc: tuple[tuple[int, ...], ...] = field(default=())

    def __post_init__(self) -> None:
        labels = tuple(self.class_lcc)
        if any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0 for v in labels):
            raise ValueError(f"class_lcc {list(labels)}: expected positive integer labels")
        object.__setattr__(self, "class_lcc", tuple(sorted({int(v) for v in labels})))
        object.__setattr__(self, "foreground_lcc", bool(self.foreground_lcc))
        regions = []
        for region in self.region_lcc:
            values = tuple(region) if isinstance(region, list | tuple) else ()
            if not values or any(
                isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0 for v in values
            ):
                raise ValueError(
                    f"region_lcc {list(self.region_lcc)}: expected lists of positive integer labels"
                )
            regions.append(tuple(sorted({int(v) for v in values})))
        object.__setattr__(self, "region_lcc", tuple(sorted(set(regions))))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"foreground_lcc": self.foreground_lcc, "class_lcc": list(self.class_lcc)}
        if self.region_lcc:
            out["region_lcc"] = [list(r) for r in self.region_lcc]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PostprocessingSpec:
        """The spec of ``{"foreground_lcc": bool, "class_lcc": [int, ...]}`` (both keys optional).

        Raises:
            ValueError: an unknown key or a value of the wrong type.
        """
        unknown = set(data) - {"foreground_lcc", "class_lcc", "region_lcc", "kind", "schema_version"}
        if unknown:
            raise ValueError(
                f"postprocessing {dict(data)}: unknown key(s) {sorted(unknown)}; "
                "expected foreground_lcc (true/false) and class_lcc (a list of labels)"
            )
        fg, labels = data.get("foreground_lcc", False), data.get("class_lcc", [])
        regions = data.get("region_lcc", [])
        if not isinstance(fg, bool) or not isinstance(labels, list | tuple) or not isinstance(regions, list):
            raise ValueError(
                f"postprocessing {dict(data)}: foreground_lcc must be true or false, "
                "class_lcc a list of labels, region_lcc a list of lists of labels"
            )
        return cls(foreground_lcc=fg, class_lcc=tuple(labels), region_lcc=tuple(tuple(r) for r in regions))

    def with_class(self, label: int) -> PostprocessingSpec:
        """This spec with ``label`` added to ``class_lcc``."""
        return PostprocessingSpec(self.foreground_lcc, (*self.class_lcc, label), self.region_lcc)

    def with_region(self, values: Sequence[int]) -> PostprocessingSpec:
        """This spec with the region ``values`` added to ``region_lcc``."""
        return PostprocessingSpec(self.foreground_lcc, self.class_lcc, (*self.region_lcc, tuple(values)))


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

    The foreground LCC comes first, then each label's, then each region's. With both, the steps
    repeat until nothing changes (removing a label's islands can split the foreground), so that the result has
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
        for region in spec.region_lcc:
            removed += _keep_largest(out, np.isin(out, region))
        # removing a class's islands can split the foreground: repeat until nothing changes
        if not removed or not (spec.foreground_lcc and (spec.class_lcc or spec.region_lcc)):
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
