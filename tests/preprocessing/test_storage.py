from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autoseg.preprocessing.storage import case_files, is_case_complete, load_case, save_case, seg_dtype
from tests.presets import case_properties

HASH = "abc123"


def _write(folder: Path, case: str = "case_0", labels_max: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, 5, 6, 7)).astype(np.float32)
    seg = rng.integers(-1, labels_max + 1, size=(5, 6, 7)).astype(np.int16)
    locations = {1: np.argwhere(seg == 1).astype(np.int32), 2: np.zeros((0, 3), np.int32)}
    save_case(folder, case, data, seg, case_properties(case, (5, 6, 7)), locations, HASH)
    return data, seg


def test_round_trip_and_mmap(tmp_path: Path) -> None:
    data, seg = _write(tmp_path)
    loaded, lseg, props, locs = load_case(tmp_path, "case_0")
    assert isinstance(loaded, np.memmap) and isinstance(lseg, np.memmap)
    np.testing.assert_array_equal(loaded, data)
    assert lseg.shape == (1, *seg.shape) and lseg.dtype == np.int8
    np.testing.assert_array_equal(lseg[0], seg)
    assert props == replace(case_properties("case_0", (5, 6, 7)), storage=props.storage)
    assert props.storage is not None and props.storage["plan_hash"] == HASH
    assert sorted(locs) == [1, 2] and locs[2].shape == (0, 3) and locs[1].dtype == np.int32
    assert (seg[tuple(locs[1].T)] == 1).all()
    in_memory, _, _, _ = load_case(tmp_path, "case_0", mmap=False)
    assert not isinstance(in_memory, np.memmap)
    assert is_case_complete(tmp_path, "case_0", HASH)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left


def test_no_pickle_anywhere(tmp_path: Path) -> None:
    _write(tmp_path)
    files = case_files(tmp_path, "case_0")
    np.load(files["data"], allow_pickle=False)
    with np.load(files["locations"], allow_pickle=False) as npz:
        assert set(npz.files) == {"class_1", "class_2"}
    json.loads(files["properties"].read_text())


def test_seg_dtype_widens_for_large_labels() -> None:
    assert seg_dtype(np.array([-1, 0, 127])) == np.int8
    assert seg_dtype(np.array([0, 300])) == np.int16


@pytest.mark.parametrize(
    "damage", ["no_json", "truncated_data", "truncated_seg", "wrong_hash", "bad_json", "no_locs"]
)
def test_half_written_case_is_not_complete(tmp_path: Path, damage: str) -> None:
    _write(tmp_path)
    files = case_files(tmp_path, "case_0")
    if damage == "no_json":
        files["properties"].unlink()
    elif damage in ("truncated_data", "truncated_seg"):
        path = files["data" if damage == "truncated_data" else "seg"]
        path.write_bytes(path.read_bytes()[:-10])
    elif damage == "bad_json":
        files["properties"].write_text('{"storage": ')
    elif damage == "no_locs":
        files["locations"].unlink()
    assert not is_case_complete(tmp_path, "case_0", "other" if damage == "wrong_hash" else HASH)


def test_shape_mismatch_with_the_json_is_not_complete(tmp_path: Path) -> None:
    _write(tmp_path)
    np.save(case_files(tmp_path, "case_0")["data"], np.zeros((2, 5, 6, 8), np.float32))
    assert not is_case_complete(tmp_path, "case_0", HASH)
    assert not is_case_complete(tmp_path, "missing_case", HASH)


def test_annotated_locations_leave_out_the_ignore_label_and_padding() -> None:
    from autoseg.preprocessing.locations import ANNOTATED, sample_class_locations

    seg = np.zeros((6, 8, 8), np.int16)
    seg[0] = -1
    seg[3:] = 2  # ignore
    seg[1, 1, 1] = 1
    locations = sample_class_locations(seg, [1], seed=0, ignore_label=2)
    assert sorted(locations) == [ANNOTATED, 1]
    values = seg[tuple(locations[ANNOTATED].T)]
    assert set(values.tolist()) == {0, 1} and len(values) == 2 * 8 * 8
    with pytest.raises(ValueError, match="not a foreground label"):
        sample_class_locations(seg, [1, 2], seed=0, ignore_label=2)
