"""Connected-component post-processing: apply_postprocessing's properties and the choice on folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from autoseg.evaluation.postprocess_search import determine_postprocessing
from autoseg.io.images import read_image
from autoseg.postprocessing.components import (
    PostprocessingSpec,
    apply_postprocessing,
    largest_component,
    load_spec,
)
from autoseg.utils.files import read_artifact
from tests.evaluation.helpers import SPACING, box, write_masks

SHAPE = (12, 16, 16)
CLASSES = {"a": [1], "b": [2], "a+b": [1, 2]}
SPECS = [
    PostprocessingSpec(),
    PostprocessingSpec(foreground_lcc=True),
    PostprocessingSpec(class_lcc=(1, 2)),
    PostprocessingSpec(foreground_lcc=True, class_lcc=(2,)),
]


def _random_seg(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random((10, 12, 12)), 1.0)
    return np.digitize(smooth, np.quantile(smooth, [0.6, 0.8])).astype(np.int16)


def test_spec_dict_round_trip_and_validation() -> None:
    spec = PostprocessingSpec(foreground_lcc=True, class_lcc=(3, 1, 3))
    assert spec.class_lcc == (1, 3)
    assert spec.to_dict() == {"foreground_lcc": True, "class_lcc": [1, 3]}
    assert PostprocessingSpec.from_dict(spec.to_dict()) == spec
    assert PostprocessingSpec.from_dict({}) == PostprocessingSpec()
    with pytest.raises(ValueError, match="unknown key"):
        PostprocessingSpec.from_dict({"foreground": True})
    with pytest.raises(ValueError, match="true or false"):
        PostprocessingSpec.from_dict({"foreground_lcc": "yes"})
    for bad in ((0,), (True,), (1.5,)):
        with pytest.raises(ValueError, match="positive integer"):
            PostprocessingSpec(class_lcc=bad)  # type: ignore[arg-type]


def test_largest_component_full_connectivity_and_ties() -> None:
    mask = np.zeros((4, 4, 4), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True  # corner neighbours: one component
    mask[3, 3, 0] = True
    assert largest_component(mask).sum() == 2
    tie = np.array([[1, 0, 1]], bool)
    assert largest_component(tie).tolist() == [[True, False, False]]
    assert not largest_component(np.zeros((2, 2), bool)).any()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spec", SPECS)
def test_apply_is_idempotent_and_never_adds(seed: int, spec: PostprocessingSpec) -> None:
    seg = _random_seg(seed)
    before = seg.copy()
    out = apply_postprocessing(seg, spec)
    assert np.array_equal(seg, before)  # pure
    assert out.dtype == seg.dtype and out.shape == seg.shape
    assert np.all((out == seg) | (out == 0))  # only removes
    assert np.array_equal(apply_postprocessing(out, spec), out)
    if spec.foreground_lcc:
        assert ndimage.label(out > 0, np.ones((3, 3, 3)))[1] <= 1
    for label in spec.class_lcc:
        assert ndimage.label(out == label, np.ones((3, 3, 3)))[1] <= 1


def _reference() -> np.ndarray:
    seg = box(SHAPE, np.s_[3:9, 4:10, 3:8], 1)
    return box(SHAPE, np.s_[3:9, 4:10, 8:12], 2, into=seg)


def _with_islands(seed: int) -> np.ndarray:
    """The reference, slightly shifted, with spurious islands far away and a label-2 blob on label 1."""
    pred = np.roll(_reference(), seed % 2, axis=1)
    pred[0:1, 0:2, 0:2] = 1
    pred[11, 14:16, 14:16] = 2
    pred[5:7, 5:7, 1:3] = 2  # touches label 1: kept by the foreground LCC, not by label 2's LCC
    return pred


def test_determine_chooses_lcc_for_spurious_islands(tmp_path: Path) -> None:
    cases = {f"c{i}": _with_islands(i) for i in range(3)}
    pred = write_masks(tmp_path / "pred", cases)
    ref = write_masks(tmp_path / "ref", {name: _reference() for name in cases})
    out = tmp_path / "post"
    spec, report = determine_postprocessing(pred, ref, CLASSES, num_workers=1, output_folder=out)
    assert spec == PostprocessingSpec(foreground_lcc=True, class_lcc=(2,))
    assert [(d["step"], d.get("label"), d["kept"]) for d in report["decisions"]] == [
        ("foreground_lcc", None, True),
        ("class_lcc", 1, False),
        ("class_lcc", 2, True),
        ("region_lcc", [1, 2], False),  # tried per region as well; nothing left to gain
    ]
    assert report["foreground_dice_after"] > report["foreground_dice_before"]
    for name in CLASSES:
        assert report["dice_after"][name] >= report["dice_before"][name]
    for name, seg in cases.items():
        written, geometry = read_image(out / f"{name}.nii.gz")
        assert np.array_equal(written, apply_postprocessing(seg, spec))
        assert geometry.spacing == pytest.approx(SPACING)
    assert load_spec(out / "postprocessing.json") == spec
    summary = read_artifact(out / "summary.json", "evaluation", 1)
    assert summary["mean"]["a"]["dice"] == pytest.approx(report["dice_after"]["a"])
    reordered = {"b": [2], "a": [1]}  # label 2's LCC is kept first, then label 1's is tried on top
    _, report = determine_postprocessing(pred, ref, reordered, num_workers=1)
    assert [(d.get("label"), d["candidate"]["class_lcc"]) for d in report["decisions"][1:]] == [
        (2, [2]),
        (1, [1, 2]),
    ]


def test_determine_keeps_two_similar_reference_components(tmp_path: Path) -> None:
    ref = box(SHAPE, np.s_[2:6, 2:6, 2:6], 1)
    box(SHAPE, np.s_[7:11, 10:14, 10:14], 1, into=ref)
    preds = {
        "c0": ref,
        "c1": np.roll(ref, 1, axis=2),
        "c2": box(SHAPE, np.s_[2:5, 2:6, 2:6], 0, into=ref.copy()),
    }
    pred = write_masks(tmp_path / "pred", preds)
    refs = write_masks(tmp_path / "ref", {name: ref for name in preds})
    spec, report = determine_postprocessing(pred, refs, {"a": [1]}, num_workers=1)
    assert spec == PostprocessingSpec()
    assert [d["kept"] for d in report["decisions"]] == [False, False]
    assert report["decisions"][0]["dice"]["a"] < report["dice_before"]["a"]
    assert report["dice_after"] == report["dice_before"]


def test_load_spec_formats_and_errors(tmp_path: Path) -> None:
    plain, selection, bad = tmp_path / "pp.json", tmp_path / "selection.json", tmp_path / "bad.json"
    plain.write_text(json.dumps({"foreground_lcc": False, "class_lcc": [2]}))
    selection.write_text(
        json.dumps({"configuration": "3d_fullres", "postprocessing": {"foreground_lcc": True}})
    )
    bad.write_text(json.dumps({"postprocessing": {"class_lcc": "1"}}))
    assert load_spec(plain) == PostprocessingSpec(class_lcc=(2,))
    assert load_spec(selection) == PostprocessingSpec(foreground_lcc=True)
    with pytest.raises(ValueError, match=r"bad\.json"):
        load_spec(bad)
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        load_spec(tmp_path / "missing.json")


def test_region_lcc_keeps_the_largest_component_of_the_union() -> None:
    seg = np.array([2, 3, 0, 3, 0, 1, 0, 2], np.uint8)
    spec = PostprocessingSpec(region_lcc=((3, 2),))
    assert spec.region_lcc == ((2, 3),) and spec.to_dict()["region_lcc"] == [[2, 3]]
    assert apply_postprocessing(seg, spec).tolist() == [2, 3, 0, 0, 0, 1, 0, 0]
    assert PostprocessingSpec.from_dict(spec.to_dict()) == spec
    assert "region_lcc" not in PostprocessingSpec(class_lcc=(1,)).to_dict()  # files without regions unchanged
    with pytest.raises(ValueError, match="region_lcc"):
        PostprocessingSpec(region_lcc=((0, 1),))
