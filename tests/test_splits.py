"""Splits: seeded, disjoint, proportional, stratified; split files validated."""

from __future__ import annotations

from collections import Counter

import pytest

from segbench.datasets import DataError
from segbench.datasets.splits import make_split, read_split_file, write_split_file

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
