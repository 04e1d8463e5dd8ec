"""Bad input: each defect gives an error naming the file and the fix; ``segbench validate`` lists them all."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import write_camvid_dataset, write_folder_dataset, write_isbi_dataset
from segbench.cli import main
from segbench.datasets import DATASETS, DataError
from segbench.datasets.validate import validate_dataset


def _corrupt(root: Path, name: str) -> str:
    (root / "images" / f"{name}.png").write_bytes(b"this is not a PNG at all")
    return rf"{name}\.png: cannot be decoded as an image.*re-export or remove"


def _truncated(root: Path, name: str) -> str:
    path = root / "images" / f"{name}.png"
    path.write_bytes(path.read_bytes()[:200])
    return rf"{name}\.png: cannot be decoded as an image.*re-export or remove"


def _missing_mask(root: Path, name: str) -> str:
    (root / "masks" / f"{name}.png").unlink()
    return rf"images/{name}\.png: no mask in .*masks; add masks/{name}\.png or remove the image"


def _size_mismatch(root: Path, name: str) -> str:
    Image.new("L", (10, 8)).save(root / "masks" / f"{name}.png")
    return rf"masks/{name}\.png: mask is 10x8 but image {name}\.png is 52x40; resize the mask"


def _values_outside(root: Path, name: str) -> str:
    mask = np.asarray(Image.open(root / "masks" / f"{name}.png")).copy()
    mask[0, :5] = 7
    Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return rf"masks/{name}\.png: unexpected mask value\(s\) \[7\].*labels 0\.\.1.*relabel"


def _duplicate_stem(root: Path, name: str) -> str:
    Image.open(root / "images" / f"{name}.png").save(root / "images" / f"{name}.bmp")
    return rf"{name}\.png and .*{name}\.bmp share the stem '{name}'; rename or remove one"


DEFECTS = {
    "corrupt": _corrupt,
    "truncated": _truncated,
    "missing-mask": _missing_mask,
    "size-mismatch": _size_mismatch,
    "values-outside": _values_outside,
    "duplicate-stem": _duplicate_stem,
}


def _dataset(tmp_path: Path, n: int = 4) -> Path:
    return write_folder_dataset(tmp_path / "data", n=n, mask_values="0/1")


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_names_file_and_fix(tmp_path, defect):
    root = _dataset(tmp_path)
    pattern = DEFECTS[defect](root, "img01")
    with pytest.raises(DataError, match=pattern):
        ds = DATASETS.get("folder")(root, class_names=["bg", "blob"])
        for sample_id in ds.ids():
            ds.load(sample_id)
    report = validate_dataset(f"folder:{root}", options={"class_names": ["bg", "blob"]})
    assert len(report.problems) == 1, report.problems
    assert re.search(pattern, report.problems[0])


def test_empty_folder(tmp_path):
    (tmp_path / "e" / "images").mkdir(parents=True)
    (tmp_path / "e" / "masks").mkdir()
    with pytest.raises(DataError, match=r"e/images: no image files.*add images or fix the path"):
        DATASETS.get("folder")(tmp_path / "e")
    report = validate_dataset(f"folder:{tmp_path / 'e'}")
    assert report.checked == 0 and len(report.problems) == 1 and "no image files" in report.problems[0]


def test_validate_reports_every_problem_at_once(tmp_path, capsys):
    root = _dataset(tmp_path, n=8)
    patterns = [DEFECTS[d](root, f"img{i:02d}") for i, d in enumerate(sorted(DEFECTS))]
    code = main(["validate", f"folder:{root}", "--dataset-opt", "folder.class_names=['bg','blob']"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    # 8 images less the one without a mask and the ambiguous duplicate.
    assert lines[-1] == "data: 6 image(s) checked, 6 problem(s)"  # named after its folder, as in a run
    for pattern in patterns:
        assert sum(bool(re.search(pattern, line)) for line in lines[:-1]) == 1, (pattern, lines)


def test_validate_clean_dataset_exits_zero(tmp_path, capsys):
    root = write_camvid_dataset(tmp_path)
    assert main(["validate", "camvid", "--data-dir", str(root)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "camvid: 6 image(s) checked, no problems"
    assert lines[0] == "camvid: headline scores the mean over classes (scored_class=mean)"
    # The small fixture draws no pole and no tree: a warning (CamVid's own class list), not a problem.
    assert [line.split("'")[1] for line in lines[1:-1]] == ["Pole", "Tree"]
    assert all(line.startswith("WARNING: camvid: class") and "no pixel in any mask" in line for line in lines[1:-1])
    assert main(["validate", "nope"]) == 2
    assert "known datasets" in capsys.readouterr().err


def test_camvid_bad_input(tmp_path):
    root = write_camvid_dataset(tmp_path, splits={"train": 4, "val": 2})
    base = root / "CamVid"
    missing = sorted((base / "trainannot").iterdir())[0]
    missing.unlink()
    with pytest.raises(DataError, match=rf"{missing.name}: listed in train\.txt line 1 but not found; restore it or remove the line"):
        DATASETS.get("camvid")(root)
    bad = sorted((base / "valannot").iterdir())[0]
    Image.fromarray(np.full((24, 32), 30, np.uint8)).save(bad)
    report = validate_dataset("camvid", data_dir=str(root))
    assert report.checked == 5 and len(report.problems) == 2
    assert "listed in train.txt" in report.problems[0]
    assert bad.name in report.problems[1] and "labels [30] are outside 0..11" in report.problems[1]


def test_isbi_missing_label(tmp_path):
    root = write_isbi_dataset(tmp_path, n=4)
    (root / "isbi2012-em" / "train" / "label" / "2.png").unlink()
    with pytest.raises(DataError, match=r"image/2\.png: no label/2\.png; add the label or remove the image"):
        DATASETS.get("isbi2012")(root)
    report = validate_dataset("isbi2012", data_dir=str(root))
    assert report.checked == 3 and len(report.problems) == 1
