"""Splits: seeded, disjoint, proportional, stratified; split files validated."""

from __future__ import annotations

from collections import Counter

import pytest

from segbench.datasets import DataError
from segbench.datasets.splits import make_split, read_split_file, train_subset, write_split_file

IDS = [f"im{i:03d}" for i in range(50)]


def test_seeded_disjoint_and_complete():
    a = make_split(IDS, seed=1)
    assert a == make_split(IDS, seed=1)
    assert a != make_split(IDS, seed=2)
    everything = a["train"] + a["val"] + a["test"]
    assert sorted(everything) == IDS and len(set(everything)) == len(IDS)
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (30, 10, 10)


def test_stratified_split_divides_each_stratum():
    strata = [0] * 20 + [1] * 20 + [2] * 10
    split = make_split(IDS, seed=0, fractions=(0.6, 0.2, 0.2), strata=strata)
    stratum = dict(zip(IDS, strata))
    test_counts = Counter(stratum[i] for i in split["test"])
    assert test_counts == Counter({0: 4, 1: 4, 2: 2})


def test_bad_fractions():
    with pytest.raises(ValueError, match="sum"):
        make_split(IDS, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(DataError, match="at least 3"):
        make_split(IDS[:2])


def test_split_file_round_trip_and_errors(tmp_path):
    split = make_split(IDS, seed=0)
    path = tmp_path / "split.csv"
    write_split_file(split, path)
    assert read_split_file(path, IDS) == split
    path.write_text("image_id,split\nim000,train\nim001,holdout\n")
    with pytest.raises(DataError, match=r"split.csv:3: split 'holdout'"):
        read_split_file(path, IDS)
    path.write_text("image_id,split\nim000,train\nnope,test\n")
    with pytest.raises(DataError, match="'nope' is not in the dataset"):
        read_split_file(path, IDS)
    path.write_text("id,part\n")
    with pytest.raises(DataError, match="needs columns image_id,split"):
        read_split_file(path, IDS)


FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def test_train_subset_nested_sizes_and_seeded():
    for seed in range(5):
        subsets = [train_subset(IDS, f, seed=seed) for f in FRACTIONS]
        assert [len(s) for s in subsets] == [5, 13, 25, 50]  # round half up: 12.5 -> 13
        for small, large in zip(subsets, subsets[1:]):
            assert set(small) < set(large)
        assert subsets[-1] == IDS
        assert subsets == [train_subset(IDS, f, seed=seed) for f in FRACTIONS]
    assert train_subset(IDS, 0.1, seed=0) != train_subset(IDS, 0.1, seed=1)
    assert train_subset(IDS, 0.001, seed=0) != [] and len(train_subset(IDS, 0.001, seed=0)) == 1


def test_train_subset_ignores_input_order_and_keeps_it():
    shuffled = IDS[::-1]
    subset = train_subset(shuffled, 0.25, seed=3)
    assert sorted(subset) == sorted(train_subset(IDS, 0.25, seed=3))
    assert subset == [i for i in shuffled if i in set(subset)]


def test_train_subset_stratified_prefixes_keep_the_mix():
    strata = [0] * 30 + [1] * 10 + [2] * 10
    stratum = dict(zip(IDS, strata))
    for f, expected in ((0.1, {0: 3, 1: 1, 2: 1}), (0.5, {0: 15, 1: 5, 2: 5})):
        for seed in range(3):
            assert Counter(stratum[i] for i in train_subset(IDS, f, seed=seed, strata=strata)) == Counter(expected)
    nested = [set(train_subset(IDS, f, seed=0, strata=strata)) for f in FRACTIONS]
    assert all(a < b for a, b in zip(nested, nested[1:]))


def test_train_subset_bad_input():
    for bad in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
            train_subset(IDS, bad, seed=0)
    with pytest.raises(ValueError, match="at least one training image"):
        train_subset([], 0.5, seed=0)
    with pytest.raises(ValueError, match="one stratum per id"):
        train_subset(IDS, 0.5, seed=0, strata=[0, 1])
