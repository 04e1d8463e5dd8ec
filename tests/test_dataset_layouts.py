"""Each supported layout on a generated fixture: CamVid, ISBI 2012, MADS, and the folder's palette masks,
colour maps and ignore regions; the documented image conversions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import jaccard_score

from helpers import (
    DATA_DIR,
    assert_beats_chance,
    best_constant_score,
    blob_pair,
    camvid_labels,
    requires_data,
    write_camvid_dataset,
    write_folder_dataset,
    write_isbi_dataset,
    write_mads_dataset,
)
from segbench.datasets import DATASETS, DataError, build_dataset
from segbench.datasets.io import read_image, read_mask, to_rgb
from segbench.datasets.splits import dataset_split
from segbench.run.runner import RunConfig, load_tables, run

# -- CamVid -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lists", [True, False])
def test_camvid_segnet_layout(tmp_path, lists):
    root = write_camvid_dataset(tmp_path, splits={"train": 4, "val": 2}, lists=lists)
    for where in (root, root / "CamVid"):
        ds = DATASETS.get("camvid")(where)
        assert len(ds) == 6 and ds.num_classes == 11
        assert ds.class_names[0] == "Sky" and ds.class_names[-1] == "Bicyclist"
        split = dataset_split(ds, seed=123)  # the dataset's own split wins over the seeded one
        assert [len(split[s]) for s in ("train", "val", "test")] == [4, 2, 0]
        assert all(i.startswith("tr") for i in split["train"]) and all(i.startswith("va") for i in split["val"])
    raw = read_mask(root / "CamVid" / "trainannot" / f"{ds.ids()[0]}.png")
    mask = ds[ds.ids()[0]].mask
    assert (raw == 11).any()
    np.testing.assert_array_equal(mask == 255, raw == 11)  # void -> ignore_index, nothing else
    np.testing.assert_array_equal(mask[raw != 11], raw[raw != 11])


def test_camvid_test_split_is_used_when_present(tmp_path):
    ds = DATASETS.get("camvid")(write_camvid_dataset(tmp_path, splits={"train": 3, "val": 2, "test": 2}))
    split = dataset_split(ds)
    assert [len(split[s]) for s in ("train", "val", "test")] == [3, 2, 2]
    assert all(i.startswith("te") for i in split["test"])


def test_camvid_run_scores_val_with_void_ignored(tmp_path):
    root = write_camvid_dataset(tmp_path / "data", splits={"train": 4, "val": 2})
    config = RunConfig(out=tmp_path / "run", datasets=[f"camvid:{root}"], methods=["pixel-rf"], quick=True)
    result = run(config, progress=False)
    assert not result.failures
    summary, per_image = load_tables(config.out)
    row = summary.iloc[0]
    assert row["eval_split"] == "val" and row["n_test"] == 2
    for name in ("Sky", "Building", "Road", "Pavement"):
        assert 0.0 <= row[f"dataset_iou_{name}"] <= 1.0
    # Every non-void pixel of the val images is counted, and no void pixel.
    cell = json.loads(next((config.out / "cells").glob("*/cell.json")).read_text())
    ds = DATASETS.get("camvid")(root)
    truth = np.concatenate([ds[i].mask[ds[i].mask != 255] for i in ds.predefined_split()["val"]])
    sky = ds.class_names.index("Sky")
    chance = best_constant_score(truth, lambda t, p: jaccard_score(t == sky, p == sky), range(ds.num_classes))
    assert_beats_chance(row["dataset_iou_Sky"], 0.5, chance, "Sky IoU")  # colour-coded: any working method finds it
    expected = sum(int((ds[i].mask != 255).sum()) for i in ds.predefined_split()["val"])
    assert np.asarray(cell["confusion_matrix"]).sum() == expected


# -- ISBI 2012 ----------------------------------------------------------------------------------------


def test_isbi_png_layout(tmp_path):
    root = write_isbi_dataset(tmp_path, n=12)
    for where in (root, root / "isbi2012-em", root / "isbi2012-em" / "train"):
        ds = DATASETS.get("isbi2012")(where)
        assert ds.ids() == [str(i) for i in range(12)]  # numeric order: 2 before 10
    assert ds.class_names == ("membrane", "cell") and ds.predefined_split() is None
    s = ds["3"]
    label = read_mask(root / "isbi2012-em" / "train" / "label" / "3.png")
    np.testing.assert_array_equal(s.mask, label // 255)  # 0 (black) = membrane, 255 (white) = cell
    assert s.image.shape == (32, 32, 3) and (s.image[..., 0] == s.image[..., 2]).all()
    split = dataset_split(ds, seed=0)
    assert sum(len(v) for v in split.values()) == 12 and split["test"]


def test_isbi_tiff_stacks_give_the_same_samples(tmp_path):
    png = DATASETS.get("isbi2012")(write_isbi_dataset(tmp_path / "png", n=4, seed=5))
    volume = DATASETS.get("isbi2012")(write_isbi_dataset(tmp_path / "vol", n=4, seed=5, layout="volume"))
    assert volume.layout == "volume" and volume.ids() == png.ids()
    for i in png.ids():
        np.testing.assert_array_equal(volume[i].image, png[i].image)
        np.testing.assert_array_equal(volume[i].mask, png[i].mask)


def test_isbi_rejects_grey_labels(tmp_path):
    root = write_isbi_dataset(tmp_path, n=3)
    Image.fromarray(np.full((32, 32), 37, np.uint8)).save(root / "isbi2012-em" / "train" / "label" / "1.png")
    with pytest.raises(DataError, match=r"label[/\\]1\.png.*\[37\].*0/255"):
        DATASETS.get("isbi2012")(root).load("1")


# -- MADS ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask_style", ["rgb", "grey"])
def test_mads_kaggle_layout(tmp_path, mask_style):
    root = write_mads_dataset(tmp_path / "dl", n=4, mask_style=mask_style)
    nested = root / "segmentation_full_body_mads_dataset_1192_img"
    for where in (root, nested):
        ds = DATASETS.get("mads")(where)
        assert ds.class_names == ("background", "person") and len(ds) == 4
    s = ds[ds.ids()[0]]
    raw = np.asarray(Image.open(nested / "masks" / f"{s.id}.png"))
    raw = raw.max(axis=2) if raw.ndim == 3 else raw
    np.testing.assert_array_equal(s.mask, (raw >= 128).astype(np.uint8))
    assert 0.1 < s.mask.mean() < 0.6
    if mask_style == "rgb":  # soft edges are present and split at half intensity
        assert ((raw > 0) & (raw < 255)).any()


def test_mads_found_under_data_dir(tmp_path):
    write_mads_dataset(tmp_path / "mads", n=3)
    assert len(build_dataset("mads", data_dir=str(tmp_path))) == 3
    with pytest.raises(DataError, match="images/ \\+ masks/.*segmentation_full_body_mads"):
        DATASETS.get("mads")(tmp_path / "nothing")


# -- folder: palette, colour map, ignore regions ------------------------------------------------------


def _palette_mask(labels: np.ndarray) -> Image.Image:
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    palette = np.random.default_rng(0).integers(0, 256, (256, 3)).astype(np.uint8)
    img.putpalette(palette.ravel().tolist())  # colours are arbitrary: the index is the class
    return img


def _write_images(root, n=4, seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    labels = []
    for i in range(n):
        image, _ = blob_pair(rng, 24, 32)
        Image.fromarray(image).save(root / "images" / f"im{i}.png")
        labels.append(camvid_labels(rng, 24, 32))
    return labels


def test_folder_palette_masks_are_class_indices(tmp_path):
    root = tmp_path / "pal"
    labels = _write_images(root)
    for i, lab in enumerate(labels):
        lab = np.where(lab == 11, 255, lab)  # VOC style: palette index 255 = void
        _palette_mask(lab).save(root / "masks" / f"im{i}.png")
    ds = DATASETS.get("folder")(root, num_classes=11)
    assert Image.open(root / "masks" / "im0.png").mode == "P"
    np.testing.assert_array_equal(ds["im0"].mask, np.where(labels[0] == 11, 255, labels[0]))


COLOURS = "r,g,b,class_name\n0,0,0,background\n255,0,0,lesion\n200,0,0,lesion\n# void\n255,255,255,ignore\n"


def test_folder_colour_map(tmp_path):
    root = write_folder_dataset(tmp_path / "c", n=3)
    for path in sorted((root / "masks").iterdir()):
        mask = np.asarray(Image.open(path)) > 0
        rgb = np.zeros((*mask.shape, 3), np.uint8)
        rgb[mask] = [255, 0, 0]
        rgb[mask & (np.arange(mask.shape[1]) % 2 == 0)] = [200, 0, 0]  # a second colour of the same class
        rgb[0, :] = 255  # a void row
        Image.fromarray(rgb).save(path)
    (root / "colors.csv").write_text(COLOURS)
    ds = DATASETS.get("folder")(root)
    assert ds.class_names == ("background", "lesion")
    mask = ds["img00"].mask
    assert (mask[0] == 255).all() and set(np.unique(mask[1:])) == {0, 1}
    assert (mask == 1).sum() == (np.asarray(Image.open(root / "masks" / "img00.png"))[1:, :, 0] >= 200).sum()

    (root / "masks" / "img01.png").unlink()
    Image.fromarray(np.full((40, 52, 3), [0, 9, 0], np.uint8)).save(root / "masks" / "img01.png")
    with pytest.raises(DataError, match=r"img01\.png: 2080 pixel\(s\) have colour\(s\) \[\[0, 9, 0\]\].*colors\.csv.*add a row"):
        ds.load("img01")


def test_colour_map_with_class_index_and_its_errors(tmp_path):
    root = write_folder_dataset(tmp_path / "c", n=3)
    (root / "map.csv").write_text("r,g,b,class_name,class_index\n255,255,255,blob,1\n0,0,0,bg,0\n")
    ds = DATASETS.get("folder")(root, colors="map.csv")  # grey 0/255 masks read as equal channels
    assert ds.class_names == ("bg", "blob") and set(np.unique(ds[0].mask)) == {0, 1}
    bad = {
        "r,g,class_name\n": "needs columns r,g,b,class_name",
        "r,g,b,class_name\n0,0,0,a\n0,0,0,b\n": "listed twice",
        "r,g,b,class_name,class_index\n0,0,0,a,0\n1,1,1,b,2\n": "gaps",
        "r,g,b,class_name\n0,0,300,a\n1,1,1,b\n": "outside 0..255",
        "r,g,b,class_name\n0,0,0,a\n": "at least 2",
    }
    for text, message in bad.items():
        (root / "map.csv").write_text(text)
        with pytest.raises(DataError, match=f"map.csv.*{message}"):
            DATASETS.get("folder")(root, colors="map.csv")
    with pytest.raises(DataError, match="nope.csv: not found"):
        DATASETS.get("folder")(root, colors="nope.csv")


def test_folder_ignore_value(tmp_path):
    root = write_folder_dataset(tmp_path / "v", n=3)
    for path in (root / "masks").iterdir():
        mask = np.asarray(Image.open(path)).copy()
        mask[:3] = 128  # a band marked "don't care" with its own grey value
        Image.fromarray(mask).save(path)
    ds = DATASETS.get("folder")(root, ignore_value=128)
    assert ds.class_names == ("background", "foreground")  # 128 does not make the masks multi-class
    mask = ds["img00"].mask
    assert (mask[:3] == 255).all() and set(np.unique(mask[3:])) == {0, 1}


def test_folder_ignore_and_fov_masks_fill_sample_ignore(tmp_path):
    root = write_folder_dataset(tmp_path / "i", n=3)
    (root / "ignore").mkdir()
    (root / "fov").mkdir()
    for i in range(3):
        ignore = np.zeros((40, 52), np.uint8)
        ignore[5:10, 5:10] = 255
        Image.fromarray(ignore).save(root / "ignore" / f"img{i:02d}.png")
        fov = np.zeros((40, 52), np.uint8)
        fov[:, 2:] = 1  # inside the view; the two left columns are outside
        Image.fromarray(fov).save(root / "fov" / f"img{i:02d}.png")
    s = DATASETS.get("folder")(root)["img01"]
    assert s.ignore is not None and s.ignore.sum() == 25 + 2 * 40
    assert s.ignore[5:10, 5:10].all() and s.ignore[:, :2].all() and not s.ignore[20:, 20:].any()
    assert DATASETS.get("folder")(root, ignore_dir=None, fov_dir=None)["img01"].ignore is None
    (root / "fov" / "img02.png").unlink()
    with pytest.raises(DataError, match=r"fov.*img02\.png.*add"):
        DATASETS.get("folder")(root)


# -- conversions --------------------------------------------------------------------------------------


def test_to_rgb_conversions():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for arr in (grey, grey[..., None], np.stack([grey, np.full_like(grey, 9)], axis=2)):
        out = to_rgb(arr)
        assert out.shape == (3, 4, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[..., 1], grey)
    rgba = np.dstack([grey, grey + 1, grey + 2, np.zeros_like(grey)])
    np.testing.assert_array_equal(to_rgb(rgba), rgba[..., :3])  # alpha dropped, not composited
    deep = (grey.astype(np.uint16) + 100) * 500
    out = to_rgb(deep)
    assert out.min() == 0 and out.max() == 255 and (np.diff(out[..., 0].ravel().astype(int)) >= 0).all()
    assert to_rgb(np.ones((2, 2), bool)).max() == 255 and to_rgb(np.full((2, 2), 7.5)).max() == 0
    rgb = np.zeros((2, 2, 3), np.uint8)
    assert to_rgb(rgb) is rgb
    with pytest.raises(ValueError, match=r"shape \(2, 2, 5\).*greyscale"):
        to_rgb(np.zeros((2, 2, 5)))


def test_read_image_file_conversions(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(np.dstack([grey, grey])[..., :2], mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png")[..., 2], grey)
    Image.fromarray(grey.astype(np.uint16) * 256).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png")[..., 0], np.rint(grey / grey.max() * 255))
    Image.fromarray(grey.astype(np.float32) / 7).save(tmp_path / "f.tif")
    assert read_image(tmp_path / "f.tif").max() == 255
    Image.new("CMYK", (4, 3), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg")[0, 0, 0] > 200  # cyan-free, magenta+yellow: red


# -- real data ----------------------------------------------------------------------------------------


@requires_data("camvid-240", "CamVid")
def test_real_camvid():
    ds = build_dataset("camvid")
    split = dataset_split(ds)
    assert [len(split[s]) for s in ("train", "val", "test")] == [367, 101, 0]
    s = ds[split["val"][0]]
    assert s.image.shape == (180, 240, 3)
    values = set(np.unique(s.mask).tolist())
    assert values <= set(range(11)) | {255} and 11 not in values


@requires_data("isbi2012-em", "train")
def test_real_isbi():
    ds = build_dataset("isbi2012")
    assert len(ds) == 30 and ds.layout == "png"
    s = ds["0"]
    assert s.image.shape == (512, 512, 3) and (s.image[..., 0] == s.image[..., 1]).all()
    assert 0.6 < s.mask.mean() < 0.9  # cell interior is about 78% of pixels


@requires_data("drive", "fov")
def test_real_drive_reads_as_binary_with_its_field_of_view():
    root = Path(DATA_DIR) / "drive"
    ds = build_dataset(f"folder:{root}")
    assert len(ds) == 20 and ds.class_names == ("background", "foreground")
    assert ds.describe_masks() == "masks read as binary: values 0/255; auto: all 20 masks hold only 0/255"
    for sample_id in ds.ids()[:3]:  # against the files read independently: 255 = vessel, fov 0 = not scored
        s = ds[sample_id]
        np.testing.assert_array_equal(s.mask, np.asarray(Image.open(root / "masks" / f"{sample_id}.png")) == 255)
        np.testing.assert_array_equal(s.ignore, np.asarray(Image.open(root / "fov" / f"{sample_id}.png")) == 0)
