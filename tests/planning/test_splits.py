from __future__ import annotations

import pytest

from autoseg.planning.splits import check_splits, load_or_create_splits, make_splits


def test_folds_partition_the_cases_and_are_seeded():
    names = [f"case_{i:03d}" for i in range(23)]
    folds = make_splits(names, 5, seed=12345)
    vals = [n for f in folds for n in f["val"]]
    assert sorted(vals) == names  # every case validated exactly once
    assert [len(f["val"]) for f in folds] == [5, 5, 5, 4, 4]
    for f in folds:
        assert set(f["train"]) | set(f["val"]) == set(names) and not set(f["train"]) & set(f["val"])
    # stable for a set of names, whatever their order; another seed gives other folds
    assert make_splits(list(reversed(names)), 5, 12345) == folds
    assert make_splits(names, 5, 1) != folds


def test_matches_a_shuffled_kfold_over_sorted_names():
    # nnU-Net's folds: KFold(5, shuffle=True, random_state=12345) over sorted names, i.e. a
    # RandomState(12345) shuffle of the indices cut into consecutive chunks
    import numpy as np

    names = [f"c{i:02d}" for i in range(12)]
    order = np.arange(12)
    np.random.RandomState(12345).shuffle(order)
    assert sorted(make_splits(names, 5)[0]["val"]) == sorted(names[i] for i in order[:3])


def test_too_few_cases():
    with pytest.raises(ValueError, match="cannot be split"):
        make_splits(["a", "b"], 5)


def test_file_is_kept_for_the_same_cases_and_remade_for_others(tmp_path):
    path = tmp_path / "splits.json"
    names = [f"c{i}" for i in range(10)]
    first = load_or_create_splits(path, names, 5, 12345)
    mtime = path.stat().st_mtime_ns
    assert load_or_create_splits(path, names, 5, 12345) == first
    assert path.stat().st_mtime_ns == mtime
    other = load_or_create_splits(path, [*names, "c10"], 5, 12345)
    assert sum(len(f["val"]) for f in other) == 11


def test_user_splits_are_checked(tmp_path):
    user = tmp_path / "user.json"
    user.write_text('[{"train": ["a", "zz"], "val": ["b", "a"]}]')
    with pytest.raises(ValueError) as err:
        load_or_create_splits(tmp_path / "s.json", ["a", "b"], 5, 1, user)
    assert "'zz' is not in the dataset" in str(err.value) and "both train and val" in str(err.value)
    assert not (tmp_path / "s.json").exists()


def test_check_splits_accepts_valid():
    check_splits([{"train": ["a"], "val": ["b"]}], ["a", "b"], "x")
