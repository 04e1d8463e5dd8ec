"""Contract tests over every registered dataset, and the loaders' layouts and errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import requires_data, write_folder_dataset, write_ph2_dataset
from segbench.datasets import DATASETS, DataError, Sample, build_dataset
from segbench.datasets.io import read_image, read_mask


def test_contract(any_dataset):
    ds = any_dataset
    ids = ds.ids()
    assert ids and len(ids) == len(set(ids)) == len(ds)
    assert all(isinstance(i, str) for i in ids)
    assert len(ds.class_names) == ds.num_classes >= 2
    for sample_id in ids[:3]:
        s = ds[sample_id]
        assert isinstance(s, Sample) and s.id == sample_id
        assert s.image.dtype == np.uint8 and s.image.ndim == 3 and s.image.shape[2] == 3
        assert s.mask.shape == s.image.shape[:2]
        values = set(np.unique(s.mask).tolist()) - {ds.ignore_index}
        assert values <= set(range(ds.num_classes))
        np.testing.assert_array_equal(ds.load_mask(sample_id), s.mask)
    assert ds[0].id == ids[0]


def test_unknown_dataset_lists_known_names():
    with pytest.raises(KeyError, match="known datasets: .*ph2"):
        build_dataset("nope")


def test_ph2_accepts_png_and_bmp_and_parent_folders(tmp_path):
    root = write_ph2_dataset(tmp_path / "a", n=3, image_suffix=".png")
    for where in (root, root / "PH2Dataset", root / "PH2Dataset" / "PH2 Dataset images"):
        ds = DATASETS.get("ph2")(where)
        assert ds.ids() == ["IMD001", "IMD002", "IMD003"]
        assert set(np.unique(ds[0].mask)) <= {0, 1} and ds[0].mask.any()


def test_ph2_missing_folder_names_it(tmp_path):
    with pytest.raises(DataError, match="PH2 Dataset images.*--data-dir"):
        DATASETS.get("ph2")(tmp_path)
    with pytest.raises(DataError, match="SEGBENCH_DATA_DIR"):
        DATASETS.get("ph2")(None)


def test_folder_binary_and_label_masks(tmp_path):
    binary = DATASETS.get("folder")(write_folder_dataset(tmp_path / "b", mask_values="0/255"))
    assert binary.class_names == ("background", "foreground")
    assert set(np.unique(binary[0].mask)) == {0, 1}
    labels = DATASETS.get("folder")(write_folder_dataset(tmp_path / "l", mask_values="0/1"), class_names=["bg", "blob"])
    assert labels.class_names == ("bg", "blob") and labels[0].mask.max() == 1


def test_folder_errors_name_the_file(tmp_path):
    root = write_folder_dataset(tmp_path / "f", n=3)
    (root / "masks" / "img01.png").unlink()
    with pytest.raises(DataError, match="img01"):
        DATASETS.get("folder")(root)
    root = write_folder_dataset(tmp_path / "g", n=3)
    Image.new("L", (10, 10)).save(root / "masks" / "img00.png")
    with pytest.raises(DataError, match=r"img00\.png.*10x10.*resize"):
        DATASETS.get("folder")(root).load("img00")
    root = write_folder_dataset(tmp_path / "h", n=3, mask_values="0/1")
    Image.fromarray(np.full((40, 52), 7, np.uint8)).save(root / "masks" / "img02.png")
    ds = DATASETS.get("folder")(root, class_names=["bg", "blob"])
    with pytest.raises(DataError, match=r"img02\.png.*\[7\]"):
        ds.load("img02")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    with pytest.raises(DataError, match="no image files"):
        DATASETS.get("folder")(tmp_path / "empty")


def test_truncated_image_names_file(tmp_path):
    path = tmp_path / "broken.png"
    Image.new("RGB", (64, 64), "red").save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match="broken.png.*cannot be decoded"):
        read_image(path)


def test_image_conversions(tmp_path):
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(tmp_path / "g.png")
    rgb = read_image(tmp_path / "g.png")
    assert rgb.shape == (3, 4, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    Image.fromarray((np.arange(12, dtype=np.uint16) * 1000).reshape(3, 4)).save(tmp_path / "d.png")
    deep = read_image(tmp_path / "d.png")
    assert deep.dtype == np.uint8 and deep.min() == 0 and deep.max() == 255
    Image.new("RGBA", (4, 3), (10, 20, 30, 0)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png")[0, 0].tolist() == [10, 20, 30]
    rgb_mask = np.repeat((np.eye(4, dtype=np.uint8) * 255)[..., None], 3, axis=2)
    Image.fromarray(rgb_mask).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), np.eye(4) * 255)


@requires_data("ph2")
def test_real_ph2():
    ds = build_dataset("ph2")
    assert len(ds) == 140
    s = ds[0]
    assert 560 < s.image.shape[0] < 590 and 750 < s.image.shape[1] < 780
    assert set(np.unique(s.mask)) == {0, 1}
