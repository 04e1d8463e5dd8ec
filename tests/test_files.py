"""The one atomic-write helper (``segbench.files.write_atomic``): a failed write leaves the old file or folder and
no temporary; split files are written through it."""

from __future__ import annotations

import csv

import pytest

import segbench.datasets.splits as splits
from segbench.files import write_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "summary.csv"
    write_atomic(path, lambda p: p.write_text("old\n"))

    def crash(p):
        p.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_atomic(path, crash)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]


def test_a_folder_replaces_the_old_one_whole(tmp_path):
    cell = tmp_path / "cells" / "key"  # parents are created

    def folder(files):
        def write(tmp):
            tmp.mkdir()
            for name, text in files.items():
                (tmp / name).write_text(text)
        return write

    write_atomic(cell, folder({"cell.json": "1", "stale.csv": "x"}))
    write_atomic(cell, folder({"cell.json": "2"}))
    assert sorted(p.name for p in cell.iterdir()) == ["cell.json"] and (cell / "cell.json").read_text() == "2"
    with pytest.raises(OSError):
        write_atomic(cell, lambda tmp: (tmp.mkdir(), (tmp / "missing" / "x").write_text("")))
    assert (cell / "cell.json").read_text() == "2"
    assert sorted(p.name for p in cell.parent.iterdir()) == ["key"]


def test_split_files_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "splits" / "synthetic.csv"
    splits.write_split_file({"train": ["a", "b"], "val": ["c"], "test": ["d"]}, path)
    assert list(csv.reader(path.open())) == [["image_id", "split"], ["a", "train"], ["b", "train"], ["c", "val"],
                                              ["d", "test"]]
    before = path.read_text()

    class Dies:
        def __init__(self, f):
            self.f = f

        def writerow(self, row):
            self.f.write(",".join(row) + "\n")

        def writerows(self, rows):
            raise OSError("disk full")

    monkeypatch.setattr(splits.csv, "writer", Dies)
    with pytest.raises(OSError):
        splits.write_split_file({"train": ["z"], "val": [], "test": []}, path)
    assert path.read_text() == before and [p.name for p in path.parent.iterdir()] == ["synthetic.csv"]
