"""Your own data, safely (issue 13): every bad input is refused before the run with its file named, or read
correctly; nothing is silently misread.

``MASK_CASES`` is the table of bad (and good) mask folders: each is checked by the loader, by
``segbench validate`` and by ``segbench run`` (which must stop in its pre-flight, before any cell).
``CLI_CASES`` is the table of bad command lines.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import blob_pair, write_folder_dataset, write_ph2_dataset
from segbench.cli import dataset_options, main, method_options
from segbench.datasets import DATASETS, DataError
from segbench.datasets.base import dataset_entries
from segbench.datasets.validate import validate_dataset
from segbench.methods import METHODS
from segbench.run.records import case_collisions, image_file_stem, image_id_from_stem, prediction_path
from segbench.run.runner import CellOutcome, RunConfig, run


def _masks(root: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in sorted((root / "masks").iterdir())}


def _set_mask(root: Path, stem: str, mask: np.ndarray, *, suffix: str = ".png") -> None:
    for old in (root / "masks").glob(f"{stem}.*"):
        old.unlink()
    Image.fromarray(mask).save(root / "masks" / f"{stem}{suffix}", **({"quality": 75} if suffix == ".jpg" else {}))


def stray_128(root: Path) -> None:
    """A 0/255 folder where one mask has a single pixel of 128."""
    mask = _masks(root)["img02"].copy()
    mask[0, 0] = 128
    _set_mask(root, "img02", mask)


def labels_0127(root: Path) -> None:
    """A 0/255 folder where one mask holds 0/1/2/7."""
    mask = (_masks(root)["img02"] > 0).astype(np.uint8)
    mask[:2, :] = 2
    mask[-1, :] = 7
    _set_mask(root, "img02", mask)


def jpeg_mask(root: Path) -> None:
    """A 0/255 folder where one mask was saved as JPEG (values smeared around the edges)."""
    _set_mask(root, "img02", _masks(root)["img02"], suffix=".jpg")


def all_16bit(root: Path) -> None:
    """Every mask 16-bit 0/65535."""
    for stem, mask in _masks(root).items():
        _set_mask(root, stem, (mask > 0).astype(np.uint16) * 65535)


def labels_16bit(root: Path) -> None:
    """Every mask 16-bit class indices 0/1/2 (a third class in the top rows)."""
    for stem, mask in _masks(root).items():
        labels = (mask > 0).astype(np.uint16)
        labels[:3] = 2
        _set_mask(root, stem, labels)


def one_16bit_65535(root: Path) -> None:
    """Label masks 0/1/2, but one 16-bit mask holds 65535 (would have made a 65536-class matrix)."""
    labels_16bit(root)
    mask = _masks(root)["img02"].copy()
    mask[5, 5] = 65535
    _set_mask(root, "img02", mask)


def no_change(root: Path) -> None:
    """A clean 0/255 folder."""


#: id -> (how to spoil a clean 0/255 folder of 6 masks, dataset options, expected outcome).
#: Expected: ("refused", file stem, regex of the message) or ("read", class names, what image 2's mask becomes).
MASK_CASES = {
    "stray-128": (stray_128, {}, ("refused", "img02", r"unexpected mask value\(s\) \[128\].*binary 0/255")),
    "values-0-1-2-7": (labels_0127, {}, ("refused", "img02", r"unexpected mask value\(s\) \[1, 2, 7\].*binary 0/255")),
    "jpeg-mask": (jpeg_mask, {}, ("refused", "img02.jpg", r"unexpected mask value\(s\) \[\d+, .*binary_threshold=128")),
    "jpeg-mask-thresholded": (jpeg_mask, {"binary_threshold": "128"}, ("read", ("background", "foreground"), "threshold")),
    "16-bit-binary": (all_16bit, {}, ("read", ("background", "foreground"), "binary")),
    "16-bit-binary-as-labels": (all_16bit, {"class_names": "bg,fg"}, ("read", ("bg", "fg"), "binary")),
    "16-bit-labels-unnamed": (labels_16bit, {}, ("refused", "masks", r"not binary .*give class_names")),
    "16-bit-labels-named": (labels_16bit, {"class_names": "bg,blob,top"}, ("read", ("bg", "blob", "top"), "labels")),
    "16-bit-65535-in-labels": (one_16bit_65535, {"num_classes": "3"},
                               ("refused", "img02", r"unexpected mask value\(s\) \[65535\].*labels 0\.\.2")),
    "labels-mode-without-names": (no_change, {"mask_mode": "labels"}, ("refused", "masks", r"mask_mode=labels needs the classes")),
    "clean-0-255": (no_change, {}, ("read", ("background", "foreground"), "binary")),
}


def _expected_mask(kind: str, raw: np.ndarray) -> np.ndarray:
    if kind == "threshold":
        return (raw >= 128).astype(np.uint8)
    if kind == "binary":
        return (raw > 0).astype(np.uint8)
    return raw.astype(np.uint8)


@pytest.mark.parametrize("case", sorted(MASK_CASES))
def test_mask_table(tmp_path, case, capsys):
    spoil, raw_options, (outcome, *expected) = MASK_CASES[case]
    root = write_folder_dataset(tmp_path / "mine", n=6)
    spoil(root)
    options = dataset_options([f"folder.{k}={v}" for k, v in raw_options.items()], [f"folder:{root}"]).get("folder", {})
    report = validate_dataset(f"folder:{root}", options=options)
    argv = ["run", "--datasets", f"folder:{root}", "--methods", "otsu", "--out", str(tmp_path / "run"), "--no-progress",
            *[a for k, v in raw_options.items() for a in ("--dataset-opt", f"folder.{k}={v}")]]
    if outcome == "refused":
        stem, pattern = expected
        assert len(report.problems) == 1 and re.search(rf"{re.escape(stem)}.*{pattern}", report.problems[0]), report.problems
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert re.search(rf"{re.escape(stem)}.*{pattern}", err) and "nothing was run" in err, err
        assert not (tmp_path / "run" / "cells").exists() or not any((tmp_path / "run" / "cells").iterdir())
    else:
        class_names, kind = expected
        assert report.ok, report.problems
        ds = DATASETS.get("folder")(root, **options)
        assert ds.class_names == class_names
        raw = np.asarray(Image.open(next((root / "masks").glob("img02.*"))))
        np.testing.assert_array_equal(ds.load_mask("img02"), _expected_mask(kind, raw))


def test_auto_says_what_it_decided(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "mine", n=6)
    stray_128(root)
    ds = DATASETS.get("folder")(root)
    assert ds.describe_masks() == "masks read as binary: values 0/255; auto: 5 of 6 masks hold only 0/255"
    assert main(["validate", f"folder:{root}"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "mine: masks read as binary: values 0/255; auto: 5 of 6 masks hold only 0/255"
    assert out[1] == "mine: headline scores class 'foreground' (scored_class=foreground)"
    assert "img02.png: unexpected mask value(s) [128]" in out[2] and out[-1] == "mine: 6 image(s) checked, 1 problem(s)"


def test_a_class_no_test_mask_holds_is_a_loud_warning(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "mine", n=6)
    for stem, mask in _masks(root).items():
        _set_mask(root, stem, np.zeros_like(mask))  # no foreground anywhere: refused unless allowed by name
    argv = ["run", "--datasets", f"folder:{root}", "--methods", "otsu", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 2
    assert "mine: no mask holds class 'foreground'" in capsys.readouterr().err
    code = main([*argv, "--dataset-opt", "mine.allow_absent_classes=foreground"])
    out = capsys.readouterr().out
    assert code == 0
    assert "WARNING: mine: class 'foreground' has no pixel in any test mask; its IoU and Dice there are undefined (NaN)" in out
    summary = pd.read_csv(tmp_path / "run" / "summary.csv")
    # Otsu still marks some pixels foreground: all false positives, so Dice 0, never a perfect 1.0.
    assert summary.loc[0, "dataset_dice_foreground"] == 0.0


# -- prediction file names ----------------------------------------------------------------------------------

IDS = ["lésion 1", "lèsion 1", "病变", "图像", "Case", "case", ".hidden", "a b", "a%20b", "a_b", "100%", "x.png", "CON",
       "nul.tif", "IMD002", "0001TP_008550", "%49%4D%44002"]
#: Characters a name may hold on every common file system (plus % for the escapes).
SAFE_NAME = re.compile(r"[A-Za-z0-9_.%-]+")
WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def test_prediction_names_are_the_ids_where_safe_and_escaped_where_not():
    stems = [image_file_stem(i) for i in IDS]
    assert [image_id_from_stem(s) for s in stems] == IDS  # reversible, so two ids never share a name
    for stem in stems:
        assert SAFE_NAME.fullmatch(stem) and not stem.startswith(".")
        assert stem.split(".")[0].upper() not in WINDOWS_DEVICES
    readable = ["IMD002", "0001TP_008550", "Case", "case", "a_b", "x.png", "img_01-a", "A.b-C_d"]
    assert [image_file_stem(i) for i in readable] == readable
    assert image_file_stem(".hidden") == "%2Ehidden" and image_file_stem("a b") == "a%20b"
    assert image_file_stem("100%") == "100%25" and image_file_stem("CON") == "%43ON"
    assert image_file_stem("nul.tif") == "%6Eul.tif" and image_file_stem("COM10") == "COM10"
    assert image_file_stem("lésion") == "l%C3%A9sion"  # only the accent is escaped
    # The only names that differ by case alone are those of ids that do: what pre-flight refuses.
    assert case_collisions(IDS) == [("Case", "case")]
    assert len({s.casefold() for s in stems}) == len(IDS) - 1


def test_old_escaped_prediction_names_keep_reading(tmp_path):
    """A run folder written before readable names holds ``%49%4D%44002.png``; it is still found for IMD002."""
    folder = tmp_path / "predictions" / "ph2" / "otsu" / "0"
    folder.mkdir(parents=True)
    (folder / "%49%4D%44002.png").write_bytes(b"old")
    (folder / "0001%54%50_008550.png").write_bytes(b"old camvid")
    assert prediction_path(tmp_path, "ph2", "otsu", 0, "IMD002").read_bytes() == b"old"
    assert prediction_path(tmp_path, "ph2", "otsu", 0, "0001TP_008550").read_bytes() == b"old camvid"
    assert image_id_from_stem("%49%4D%44002") == "IMD002"
    assert prediction_path(tmp_path, "ph2", "otsu", 0, "IMD003").name == "IMD003.png"  # new files: readable
    (folder / "IMD002.png").write_bytes(b"new")
    assert prediction_path(tmp_path, "ph2", "otsu", 0, "IMD002").read_bytes() == b"new"


def test_a_ph2_run_saves_predictions_under_the_image_ids(tmp_path):
    data = write_ph2_dataset(tmp_path / "data", n=10)
    out = tmp_path / "run"
    assert main(["run", "--datasets", "ph2", "--data-dir", str(data), "--methods", "otsu", "--save-predictions",
                 "--no-progress", "--out", str(out)]) == 0
    tested = pd.read_csv(out / "per_image.csv")["image_id"]
    files = sorted(p.name for p in (out / "predictions" / "ph2" / "otsu" / "0").glob("*.png"))
    assert files == sorted(f"{i}.png" for i in tested) and "IMD" in files[0]
    assert (out / "report.md").is_file()


def test_saved_predictions_of_look_alike_ids_do_not_collide(tmp_path):
    root = tmp_path / "ids"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    truths = {}
    for sample_id in ["lésion 1", "lèsion 1", "病变", "图像", "Blob", "a b", "train"]:
        image, mask = blob_pair(rng)
        Image.fromarray(image).save(root / "images" / f"{sample_id}.png")
        Image.fromarray(mask * 255).save(root / "masks" / f"{sample_id}.png")
        truths[sample_id] = mask
    del truths["train"]
    split = tmp_path / "split.csv"
    split.write_text("image_id,split\ntrain,train\n" + "".join(f"{i},test\n" for i in truths))
    config = RunConfig(out=tmp_path / "run", datasets=[f"folder:{root}"], methods=["otsu"],
                       save_predictions=True, split_file=str(split))
    run(config, progress=False, log=lambda _: None)
    files = sorted((tmp_path / "run" / "predictions" / "ids" / "otsu" / "0").glob("*.png"))
    assert len(files) == 6 and not any(f.name.startswith(".") for f in files)
    assert {"Blob.png", "a%20b.png"} <= {f.name for f in files}
    for sample_id in truths:  # each file is that image's own prediction: Otsu finds the dark disc
        pred = np.asarray(Image.open(prediction_path(tmp_path / "run", "ids", "otsu", 0, sample_id)))
        assert (pred == truths[sample_id]).mean() > 0.9


def test_ids_that_differ_only_by_case_are_refused_when_predictions_are_saved(tmp_path):
    root = tmp_path / "ids"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for sample_id in ["Blob", "blob", "other", "more", "four", "five"]:
        image, mask = blob_pair(rng)
        Image.fromarray(image).save(root / "images" / f"{sample_id}.png")
        Image.fromarray(mask * 255).save(root / "masks" / f"{sample_id}.png")
    config = RunConfig(out=tmp_path / "run", datasets=[f"folder:{root}"], methods=["otsu"], save_predictions=True)
    with pytest.raises(DataError, match=r"'Blob' and 'blob' differ only by case.*--save-predictions"):
        run(config, progress=False, log=lambda _: None)
    assert not (tmp_path / "run" / "cells").exists()
    unsaved = RunConfig(out=tmp_path / "run2", datasets=[f"folder:{root}"], methods=["otsu"])
    assert run(unsaved, progress=False, log=lambda _: None).failures == []  # no files named by id: no clash



# -- datasets of one run ------------------------------------------------------------------------------------


def test_datasets_get_distinct_names_and_resolved_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = tmp_path / "one" / "data", tmp_path / "two" / "data"
    entries = dataset_entries(["folder:one/data", "folder:two/data", "folder:skin=./two/../one", "synthetic"])
    assert [e.name for e in entries] == ["data", "data-2", "skin", "synthetic"]
    assert [e.spec for e in entries] == [f"folder:{a}", f"folder:{b}", f"folder:{tmp_path / 'one'}", "synthetic"]
    with pytest.raises(DataError, match="lists 'folder:./one/data/' twice"):
        dataset_entries(["folder:one/data", "folder:./one/data/"])


def test_two_folder_datasets_keep_their_own_splits_and_rows(tmp_path, monkeypatch):
    first = write_folder_dataset(tmp_path / "a" / "data", n=6, seed=1)
    second = write_folder_dataset(tmp_path / "b" / "data", n=8, seed=2)
    out = tmp_path / "run"
    assert main(["run", "--datasets", f"folder:{first},folder:mine={second}", "--methods", "otsu", "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in (out / "splits").iterdir()) == ["data.csv", "mine.csv"]
    assert len(pd.read_csv(out / "splits" / "mine.csv")) == 8
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["dataset"]) == ["data", "mine"]
    assert "## data" in (out / "report.md").read_text() and "## mine" in (out / "report.md").read_text()
    # The same folder spelled differently is the same cell: nothing is recomputed.
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--datasets", "folder:a/data/,folder:mine=./b/../b/data", "--methods", "otsu", "--out", str(out), "--no-progress"]) == 0
    assert len(list((out / "cells").iterdir())) == 2


# -- command-line values ------------------------------------------------------------------------------------


def test_opt_values_are_typed_before_anything_runs():
    opts = method_options(["pixel-rf.use_position=false", "pixel-rf.n_estimators=7", "crf.iterations=2"], ["pixel-rf", "slic+crf"])
    assert opts == {"pixel-rf": {"use_position": False, "n_estimators": 7}, "crf": {"iterations": 2}}
    assert method_options(["pixel-rf.use_position=TRUE"], ["pixel-rf"])["pixel-rf"]["use_position"] is True
    assert method_options(["pixel-rf.use_position=1"], ["pixel-rf"])["pixel-rf"]["use_position"] is True
    names = dataset_options(["folder.class_names=bg,lesion", "mine.num_classes=2"], ["folder:/x/y", "folder:mine=/x/z"])
    assert names == {"folder": {"class_names": ["bg", "lesion"]}, "mine": {"num_classes": 2}}


#: argv -> (exit code, regex the one stderr line must match).
CLI_CASES = {
    "misspelt-method": (["run", "--methods", "pixel-rf", "--opt", "pixelrf.n_estimators=1"],
                        r"--opt pixelrf: not a name in this command; valid names: pixel-rf$"),
    "not-an-int": (["run", "--methods", "pixel-rf", "--opt", "pixel-rf.n_estimators=abc"],
                   r"--opt pixel-rf\.n_estimators='abc': expected an integer$"),
    "not-a-bool": (["run", "--methods", "pixel-rf", "--opt", "pixel-rf.use_position=yes"],
                   r"--opt pixel-rf\.use_position='yes': expected true/false/1/0$"),
    "unknown-key": (["run", "--methods", "otsu", "--opt", "otsu.nope=1"], r"--opt otsu\.nope: unknown option; otsu's options: "),
    "unknown-dataset": (["run", "--datasets", "synthetic", "--dataset-opt", "folder.class_names=a,b"],
                        r"--dataset-opt folder: not a name in this command; valid names: synthetic$"),
    "malformed": (["run", "--opt", "otsu"], r"--opt 'otsu' is malformed; write NAME\.KEY=VALUE"),
    "seeds": (["run", "--seeds", "a"], r"argument --seeds: 'a': expected comma-separated int values$"),
    "split": (["run", "--split", "0.5,0.5"], r"argument --split: '0\.5,0\.5': expected 3 comma-separated values$"),
    "unknown-import": (["list", "--import", "no_such_module_here"], r"--import no_such_module_here: no module"),
    "missing-import-file": (["validate", "synthetic", "--import", "nope.py"], r"--import nope\.py: no such file"),
    "report-not-a-run": (["report", "/nonexistent-run"], r"/nonexistent-run: no summary\.csv"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_table(case, capsys, tmp_path):
    argv, pattern = CLI_CASES[case]
    out = ["--out", str(tmp_path / "run")] if argv[0] == "run" else []
    assert main([*argv, *out]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("segbench: error: ") and re.search(pattern, err), err
    assert not (tmp_path / "run" / "cells").exists()


def test_unwritable_out_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["run", "--methods", "otsu", "--out", str(tmp_path / "file" / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"segbench: error: --out {tmp_path / 'file' / 'run'}: cannot write there") and "\n" not in err


def test_a_bug_keeps_its_traceback(monkeypatch):
    monkeypatch.setattr("segbench.cli._cmd_list", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["list"])


def test_version(capsys):
    assert main(["--version"]) == 0
    assert re.fullmatch(r"segbench \d+\.\d+\.\d+", capsys.readouterr().out.strip())


# -- --import -----------------------------------------------------------------------------------------------

USER_METHOD = '''
from segbench.methods import METHODS
from segbench.methods.classical.threshold import Otsu


@METHODS.register("{name}")
class Mine(Otsu):
    """My own thresholding."""
'''


@pytest.mark.parametrize("form", ["module", "path"])
def test_import_from_the_current_folder_on_every_subcommand(tmp_path, monkeypatch, capsys, form):
    name = f"test-mine-{form}"
    (tmp_path / f"mymethods_{form}.py").write_text(USER_METHOD.format(name=name))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    item = f"mymethods_{form}" if form == "module" else f"./mymethods_{form}.py"
    with METHODS.restored():  # what the user's module registers lasts for this test only
        assert main(["list", "--import", item]) == 0
        assert name in capsys.readouterr().out
        assert main(["latency", "--import", item, "--methods", name, "--sizes", "32x32", "--repeats", "1",
                     "--warmup", "0", "--out", str(tmp_path / "lat")]) == 0
        assert main(["validate", "synthetic", "--import", item]) == 0
        assert main(["run", "--import", item, "--methods", name, "--datasets", "synthetic", "--dataset-opt",
                     "synthetic.num_images=6", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
        assert main(["report", str(tmp_path / "run"), "--import", item, "--no-figures"]) == 0
    sys.modules.pop(f"mymethods_{form}", None)


# -- the run: retries, Ctrl-C, tables ------------------------------------------------------------------------


def test_data_errors_are_not_retried(tmp_path, monkeypatch):
    calls = []

    def broken(task):
        calls.append(task.key)
        return CellOutcome({"status": "failed", "error": "DataError: bad file"}, retry=False)

    monkeypatch.setattr("segbench.run.runner.evaluate_cell", broken)
    config = RunConfig(out=tmp_path / "run", datasets=["synthetic"], methods=["otsu"], retries=3,
                       dataset_options={"synthetic": {"num_images": 6}})
    result = run(config, progress=False, log=lambda _: None)
    assert len(calls) == 1 and result.failures[0]["error"] == "DataError: bad file"


def test_ctrl_c_writes_the_report_and_exits_130(tmp_path, monkeypatch, capsys):
    from segbench.run import runner

    real = runner.evaluate_cell
    done = []

    def interrupt_second(task):
        if done:
            raise KeyboardInterrupt
        done.append(task.key)
        return real(task)

    monkeypatch.setattr(runner, "evaluate_cell", interrupt_second)
    out = tmp_path / "run"
    code = main(["run", "--methods", "otsu,otsu+morph", "--dataset-opt", "synthetic.num_images=6", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and err[-1] == "interrupted: 1 cells finished; re-run the same command to resume"
    assert (out / "report.md").is_file() and len(pd.read_csv(out / "summary.csv")) == 1


def test_tables_cover_every_finished_cell_with_its_command(tmp_path):
    out = tmp_path / "run"
    common = ["--dataset-opt", "synthetic.num_images=6", "--out", str(out), "--no-progress"]
    assert main(["run", "--methods", "otsu", *common]) == 0
    assert main(["run", "--methods", "otsu+morph", *common]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["method"]) == ["otsu+morph", "otsu"]  # this command's cells first, then the earlier ones
    assert summary["command"].str.contains("--methods otsu+morph", regex=False).tolist() == [True, False]
    assert set(pd.read_csv(out / "per_image.csv")["method"]) == {"otsu", "otsu+morph"}
    # A later command with a changed setting replaces the same (dataset, method, seed) in the tables.
    assert main(["run", "--methods", "otsu", "--warmup", "0", "--opt", "otsu.sigma=1.5", *common]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["method"]) == ["otsu", "otsu+morph"]
    assert json.loads((out / "cells" / summary.loc[summary["method"] == "otsu", "cell"].item() / "cell.json").read_text())


def test_skipped_cells_print_their_reason(tmp_path, capsys):
    assert main(["run", "--datasets", "synthetic-multiclass", "--methods", "otsu", "--dataset-opt",
                 "synthetic-multiclass.num_images=6", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"skipped synthetic-multiclass / otsu / seed 0: otsu handles two-class datasets only", out)


# -- issue 26: misreads that still score, the scored class, one name one dataset, every failure up front --------


def _run(tmp_path, root, *args, out="run"):
    return main(["run", "--datasets", f"folder:{root}", "--methods", "otsu", "--out", str(tmp_path / out),
                 "--no-progress", *args])


def _binary_threshold_on_0_1(root: Path) -> None:
    for stem, mask in _masks(root).items():
        _set_mask(root, stem, (mask > 0).astype(np.uint8))


#: id -> (how to spoil a clean 0/255 folder, --dataset-opt items, regex of the one problem line).
MISREADS = {
    "0-255-as-three-names": (no_change, ["d.class_names=bg,cell,membrane"],
                             r"d: no mask holds classes 'cell', 'membrane' of the declared bg, cell, membrane; the mask "
                             r"files hold values \[0, 255\].*mask_mode=binary"),
    "0-255-as-three-classes": (no_change, ["d.num_classes=3"], r"no mask holds classes 'class_1', 'class_2'.*\[0, 255\]"
                                                               r".*mask_mode=binary"),
    "0-255-as-labels": (no_change, ["d.mask_mode=labels", "d.class_names=bg,fg"],
                        r"no mask holds class 'fg' of the declared bg, fg; .*\[0, 255\].*mask_mode=binary"),
    "0-1-thresholded-at-128": (_binary_threshold_on_0_1, ["d.binary_threshold=128"],
                               r"no mask holds class 'foreground'.*\[0, 1\].*drop binary_threshold"),
    "255-is-ignore": (no_change, ["d.ignore_value=255"], r"no mask holds class 'foreground'.*ignore_value"),
}


@pytest.mark.parametrize("case", sorted(MISREADS))
def test_a_declared_class_no_mask_holds_is_refused(tmp_path, case, capsys):
    spoil, options, pattern = MISREADS[case]
    root = write_folder_dataset(tmp_path / "d", n=6)
    spoil(root)
    assert _run(tmp_path, root, *[a for o in options for a in ("--dataset-opt", o)]) == 2
    err = capsys.readouterr().err
    assert "1 problem(s), nothing was run" in err and re.search(pattern, err), err
    assert not (tmp_path / "run" / "cells").exists()
    assert main(["validate", f"folder:{root}", *[a for o in options for a in ("--dataset-opt", o)]]) == 1
    assert re.search(pattern, capsys.readouterr().out)


def test_an_absent_class_allowed_by_name_is_scored_nan(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "d", n=6)
    code = _run(tmp_path, root, "--dataset-opt", "d.num_classes=3", "--dataset-opt", "d.mask_mode=binary")
    assert code == 2  # binary masks give two classes: 3 is refused as before
    for stem, mask in _masks(root).items():
        _set_mask(root, stem, (mask > 0).astype(np.uint8))  # 0/1 label masks, a third class nobody labelled
    assert _run(tmp_path, root, "--dataset-opt", "d.class_names=bg,blob,extra") == 2
    assert "allow_absent_classes=extra" in capsys.readouterr().err
    assert _run(tmp_path, root, "--dataset-opt", "d.class_names=bg,blob,extra",
                "--dataset-opt", "d.allow_absent_classes=extra", "--methods", "pixel-rf", "--opt", "pixel-rf.n_estimators=5") == 0
    summary = pd.read_csv(tmp_path / "run" / "summary.csv")
    assert summary.loc[0, "scored_class"] == "mean" and np.isnan(summary.loc[0, "dataset_dice_extra"])
    from segbench.report import headline_columns
    label, column, _ = headline_columns(summary, "d", aggregation="dataset")
    assert column == "dataset_mean_dice" and label.startswith("mean over bg, blob (1 of 3 classes undefined"), label


def test_a_mask_of_ignored_pixels_only_is_refused(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "d", n=6)
    masks = _masks(root)
    for stem, mask in masks.items():
        _set_mask(root, stem, (mask > 0).astype(np.uint8))
    _set_mask(root, "img03", np.full_like(masks["img03"], 255))
    assert _run(tmp_path, root, "--dataset-opt", "d.class_names=bg,blob") == 2
    err = capsys.readouterr().err
    assert re.search(r"img03\.png: every pixel is ignored \(255\), so nothing of it is scored", err), err


def test_scored_class_is_declared_printed_and_recorded(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "d", n=6)
    assert _run(tmp_path, root, "--dataset-opt", "d.scored_class=nope") == 2
    assert "scored_class='nope' is not a class of the dataset; choose one of background, foreground or mean" in capsys.readouterr().err
    assert _run(tmp_path, root, "--dataset-opt", "d.scored_class=background", "--methods", "constant,otsu") == 0
    assert "d: headline scores class 'background' (scored_class=background)" in capsys.readouterr().out
    summary = pd.read_csv(tmp_path / "run" / "summary.csv").set_index("method")
    assert (summary["scored_class"] == "background").all()
    from segbench.report import headline_columns
    assert headline_columns(summary.reset_index(), "d", aggregation="dataset")[1] == "dataset_dice_background"
    # The constant predicts the majority class (background) everywhere: background Dice = 2 TP / (2 TP + FP + FN)
    truth = np.concatenate([m.ravel() > 0 for s, m in sorted(_masks(root).items())
                            if s in pd.read_csv(tmp_path / "run" / "splits" / "d.csv").query("split == 'test'")["image_id"].tolist()])
    bg = (~truth).sum()
    assert summary.loc["constant", "dataset_dice_background"] == pytest.approx(2 * bg / (2 * bg + truth.sum()))
    assert summary.loc["constant", "dataset_dice_foreground"] == 0.0


def _write_isbi_pngs(root: Path, n: int = 6) -> Path:
    """The ISBI PNG layout: grey images, labels 255 (cell) with 0 (membrane) lines: membrane ~1/4 of the pixels."""
    rng = np.random.default_rng(0)
    (root / "train" / "image").mkdir(parents=True)
    (root / "train" / "label").mkdir()
    for i in range(n):
        label = np.full((32, 32), 255, np.uint8)
        label[:, (i % 4)::4] = 0
        image = np.where(label == 0, 60, 200).astype(np.uint8) + rng.integers(0, 20, label.shape).astype(np.uint8)
        Image.fromarray(image).save(root / "train" / "image" / f"{i}.png")
        Image.fromarray(label).save(root / "train" / "label" / f"{i}.png")
    return root


def test_isbi_scores_membrane_and_the_constant_floor_scores_zero(tmp_path):
    root = _write_isbi_pngs(tmp_path / "isbi")
    assert main(["run", "--datasets", "isbi2012", "--data-dir", str(root), "--methods", "constant,otsu",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    summary = pd.read_csv(tmp_path / "run" / "summary.csv").set_index("method")
    assert (summary["scored_class"] == "membrane").all()
    assert summary.loc["constant", "dataset_dice_membrane"] == 0.0 and summary.loc["constant", "dataset_dice_cell"] > 0.8
    assert summary.loc["otsu", "status"] == "ok"


def test_one_name_stands_for_one_dataset_in_a_run_folder(tmp_path, capsys):
    a = write_folder_dataset(tmp_path / "a" / "d", n=6)
    b = write_folder_dataset(tmp_path / "b" / "d", n=6, seed=1)
    assert _run(tmp_path, a) == 0
    capsys.readouterr()
    assert _run(tmp_path, b) == 2
    err = capsys.readouterr().err
    assert re.search(rf"--out {tmp_path / 'run'}: dataset name 'd' was folder {a} \(6 images\) there, now folder {b} "
                     r"\(6 images\).*--datasets folder:NEWNAME=PATH\) or use another --out", err), err
    assert main(["run", "--datasets", f"folder:d2={b}", "--methods", "otsu", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert set(pd.read_csv(tmp_path / "run" / "summary.csv")["dataset"]) == {"d", "d2"}
    (a / "images" / "img05.png").unlink()
    (a / "masks" / "img05.png").unlink()
    assert _run(tmp_path, a) == 2
    assert "its image files have changed since" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "datasets.json").read_text())["d"]["folder"] == str(a)


def test_every_failure_is_listed_before_the_first_cell(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "d", n=12)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "img01.png")  # size mismatch
    (root / "images" / "img02.png").write_bytes(b"not a png")  # undecodable image
    split = tmp_path / "split.csv"
    split.write_text("image_id,split\n" + "".join(f"img{i:02d},{'train' if i < 6 else 'test'}\n" for i in range(8)))
    code = _run(tmp_path, root, "--seeds", "0,0", "--severities", "1,2", "--folds", "50", "--split-file", str(split),
                "--scheduler", "tcp://x:1")
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and "Traceback" not in "\n".join(err)
    assert err[0] == "segbench: error: 8 problem(s), nothing was run; fix them (segbench validate lists the data ones too):"
    expected = [r"--seeds lists 0 more than once", r"--severities has no effect without --corruptions",
                r"--folds 50 with --split-file: cross-validation makes its own splits",
                r"--scheduler has no effect without --executor dask",
                r"img02\.png: cannot be decoded as an image", r"img01\.png: mask is 10x10 but image img01\.png is 52x40",
                r"d: --split-file .*split\.csv leaves 4 of 12 image\(s\) out \('img08', 'img09', 'img10', 'img11'\)",
                r"d: --folds 50 needs at least 100 images .* the dataset has 12; give --folds 6 or fewer"]
    for pattern, line in zip(expected, sorted(err[1:], key=lambda l: [bool(re.search(p, l)) for p in expected], reverse=True)):
        assert re.search(pattern, line), (pattern, err)
    assert not (tmp_path / "run" / "cells").exists()
    assert main(["validate", f"folder:{root}"]) == 1
    out = capsys.readouterr().out
    assert "cannot be decoded as an image" in out and "mask is 10x10" in out


def test_a_split_file_may_exclude_images_on_purpose(tmp_path):
    root = write_folder_dataset(tmp_path / "d", n=8)
    split = tmp_path / "split.csv"
    split.write_text("image_id,split\n" + "".join(f"img{i:02d},{['train', 'train', 'test', 'exclude'][i % 4]}\n" for i in range(8)))
    assert _run(tmp_path, root, "--split-file", str(split)) == 0
    row = pd.read_csv(tmp_path / "run" / "summary.csv").iloc[0]
    assert (row["n_train"], row["n_test"]) == (4, 2)
