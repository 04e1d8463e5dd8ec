"""The on-disk array cache: identical arrays, never stale, safe to delete, harmless when unwritable."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

import segbench.datasets.io as sio
from helpers import write_folder_dataset
from segbench.datasets import DATASETS
from segbench.datasets.cache import CACHE_ENV, cache_dir


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def decodes(monkeypatch):
    """Count real decodes (cache misses) of image files."""
    calls = []
    real = sio._decode

    def counting(path, data):
        calls.append(path.name)
        return real(path, data)

    monkeypatch.setattr(sio, "_decode", counting)
    return calls


def _entries(folder):
    return sorted(p for p in folder.rglob("*.npy"))


def test_second_read_skips_decoding_and_returns_identical_arrays(cache, decodes, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray((np.arange(600).reshape(20, 30) % 3).astype(np.uint8)).save(tmp_path / "m.png")
    first = (sio.read_image(tmp_path / "a.png"), sio.read_mask(tmp_path / "m.png"))
    assert decodes == ["a.png", "m.png"] and len(_entries(cache)) == 2
    second = (sio.read_image(tmp_path / "a.png"), sio.read_mask(tmp_path / "m.png"))
    assert decodes == ["a.png", "m.png"]  # no new decode: both came from the cache
    for a, b in zip(first, second):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(second[0], rgb)
    second[0][0, 0] = 0  # callers get their own writable copy
    np.testing.assert_array_equal(sio.read_image(tmp_path / "a.png"), rgb)


def test_changed_file_is_decoded_again_even_with_same_size_and_mtime(cache, decodes, tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.full((8, 8), 10, np.uint8)).save(path)
    stat = path.stat()
    assert sio.read_mask(path).max() == 10
    Image.fromarray(np.full((8, 8), 20, np.uint8)).save(path)  # same size on disk
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old timestamp, as cp -p leaves it
    assert path.stat().st_size == stat.st_size
    assert sio.read_mask(path).max() == 20
    assert decodes == ["a.png", "a.png"]


def test_resized_arrays_are_cached_under_their_own_size(cache, decodes, tmp_path):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    full = sio.read_image(tmp_path / "a.png")
    small = sio.read_image(tmp_path / "a.png", shape=(20, 30))
    assert full.shape == (40, 60, 3) and small.shape == (20, 30, 3)
    np.testing.assert_array_equal(sio.read_image(tmp_path / "a.png", shape=(20, 30)), small)
    assert len(decodes) == 2 and len(_entries(cache)) == 2


def test_deleting_the_cache_is_safe(cache, decodes, tmp_path):
    ds = DATASETS.get("folder")(write_folder_dataset(tmp_path / "data", n=3))
    before = [ds[i] for i in ds.ids()]
    shutil.rmtree(cache)
    after = [ds[i] for i in ds.ids()]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
    assert _entries(cache)  # rebuilt


def test_damaged_entry_is_a_miss(cache, decodes, tmp_path):
    Image.fromarray(np.full((5, 5), 7, np.uint8)).save(tmp_path / "m.png")
    sio.read_mask(tmp_path / "m.png")
    (entry,) = _entries(cache)
    entry.write_bytes(entry.read_bytes()[:20])  # e.g. a disk that filled up
    np.testing.assert_array_equal(sio.read_mask(tmp_path / "m.png"), np.full((5, 5), 7))
    assert len(decodes) == 2
    np.load(entry)  # rewritten whole


def test_unwritable_cache_falls_back_to_no_cache(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should go")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    Image.fromarray(np.full((5, 5), 3, np.uint8)).save(tmp_path / "m.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(sio.read_mask(tmp_path / "m.png"), np.full((5, 5), 3))
        np.testing.assert_array_equal(sio.read_mask(tmp_path / "m.png"), np.full((5, 5), 3))
    assert len([w for w in caught if "not writable" in str(w.message)]) == 1  # once per folder, not per file


@pytest.mark.parametrize("value", ["off", "0", ""])
def test_cache_can_be_turned_off(monkeypatch, tmp_path, value, decodes):
    monkeypatch.setenv(CACHE_ENV, value)
    assert cache_dir() is None
    Image.fromarray(np.full((5, 5), 3, np.uint8)).save(tmp_path / "m.png")
    sio.read_mask(tmp_path / "m.png")
    sio.read_mask(tmp_path / "m.png")
    assert len(decodes) == 2


def test_bad_files_are_never_cached(cache, tmp_path):
    path = tmp_path / "broken.png"
    Image.new("RGB", (16, 16)).save(path)
    path.write_bytes(path.read_bytes()[:40])
    for _ in range(2):
        with pytest.raises(sio.DataError, match="broken.png.*cannot be decoded"):
            sio.read_image(path)
    assert not _entries(cache)
