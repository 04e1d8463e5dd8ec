"""The comparison protocol: K-fold cross-validation, one work size per dataset, shared fitted bases, and the
train-fraction and corruption axes of the grid."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from segbench.cli import main
from segbench.datasets import DataError, build_dataset
from segbench.datasets.splits import make_folds, read_split_file, train_subset
from segbench.methods import METHODS, STAGES, Method, Stage, build_method
from segbench.run.runner import RunConfig, run

TINY = {"synthetic": {"num_images": 12, "size": (48, 40)}}
IDS = [f"im{i:03d}" for i in range(50)]


class _RandomBase(Method):
    """Thresholds grey level at a cut drawn from the OS at fit time: a refit would predict differently, so
    identical predictions across cells mean one fitted base. Counts its fits across the process."""

    description = "random threshold (tests only)"
    fits = 0

    def _fit(self, train, val):
        type(self).fits += 1
        self.cut = 60 + int.from_bytes(os.urandom(2), "little") % 120

    def _predict_proba(self, image):
        lesion = (image.mean(axis=2) < self.cut).astype(np.float32)
        return np.stack([1 - lesion, lesion])


class _Identity(Stage):
    """Returns its input: a pipeline with it must score exactly as its base."""

    description = "identity (tests only)"

    def apply(self, image, proba):
        return proba


@pytest.fixture(autouse=True, scope="module")
def _test_components():
    """The counting base and the identity stage, registered for this module only."""
    with METHODS.temporarily("test-random-base", _RandomBase), STAGES.temporarily("test-identity", _Identity):
        yield


def _run(tmp_path, **kw):
    config = dict(out=tmp_path / "run", datasets=["synthetic"], dataset_options=TINY, retries=0)
    return run(RunConfig(**{**config, **kw}), progress=False, log=lambda line: None)


# -- folds ----------------------------------------------------------------------------------------------


def test_folds_partition_the_images_and_are_stratified():
    strata = [0] * 20 + [1] * 20 + [2] * 10
    folds = make_folds(IDS, 5, seed=3, val_fraction=0.25, strata=strata)
    assert folds == make_folds(IDS, 5, seed=3, val_fraction=0.25, strata=strata)
    tests = [f["test"] for f in folds]
    assert sorted(i for t in tests for i in t) == IDS  # every image tested exactly once
    stratum = dict(zip(IDS, strata))
    for fold in folds:
        assert not set(fold["train"]) & set(fold["val"]) and not set(fold["train"] + fold["val"]) & set(fold["test"])
        assert sorted(fold["train"] + fold["val"] + fold["test"]) == IDS
        assert Counter(stratum[i] for i in fold["test"]) == Counter({0: 4, 1: 4, 2: 2})
        assert len(fold["val"]) == 10 and Counter(stratum[i] for i in fold["val"]) == Counter({0: 4, 1: 4, 2: 2})


def test_three_fold_run_scores_every_image_once_and_resumes(tmp_path):
    methods = ["test-random-base", "otsu"]
    result = _run(tmp_path, methods=methods, seeds=[0, 1], folds=3)
    summary, per_image = result.summary, result.per_image
    assert not result.failures
    assert sorted(summary["fold"].unique()) == [0, 1, 2] and set(summary["n_folds"]) == {3}
    counts = per_image.groupby(["method", "seed", "image_id"]).size()
    assert len(counts) == len(methods) * 2 * 12 and set(counts) == {1}
    ids = build_dataset("synthetic", options=TINY["synthetic"]).ids()
    test_parts = [set(read_split_file(tmp_path / "run" / "splits" / f"synthetic-fold{k}.csv", ids)["test"]) for k in range(3)]
    assert set.union(*test_parts) == set(per_image["image_id"]) and sum(map(len, test_parts)) == 12
    for fold, part in enumerate(test_parts):
        assert set(per_image.loc[per_image["fold"] == fold, "image_id"]) == part
    fits = _RandomBase.fits
    again = _run(tmp_path, methods=methods, seeds=[0, 1], folds=3)
    assert _RandomBase.fits == fits  # every cell resumed
    pd.testing.assert_frame_equal(again.per_image, per_image)


def test_folds_refuse_a_dataset_with_its_own_split(tmp_path):
    split = tmp_path / "split.csv"
    ids = build_dataset("synthetic", options=TINY["synthetic"]).ids()
    split.write_text("image_id,split\n" + "".join(f"{i},{'test' if k < 3 else 'train'}\n" for k, i in enumerate(ids)))
    with pytest.raises(DataError, match=r"nothing was run.*\n  --folds 3 with --split-file: cross-validation makes its own"):
        _run(tmp_path, methods=["otsu"], folds=3, split_file=str(split))
    assert not (tmp_path / "run" / "cells").exists()


# -- matched work size ----------------------------------------------------------------------------------


def test_every_method_and_stage_works_at_the_dataset_size_unless_size_is_given(tmp_path):
    summary = _run(tmp_path, methods=["otsu", "pixel-rf", "slic+crf"], quick=True).summary
    assert set(summary["work_size"]) == {"[48, 40]"}  # the synthetic dataset's declared (native) size
    summary = _run(tmp_path, methods=["otsu", "slic+crf"], size=32, quick=True).summary
    # The folder's tables also keep the first command's pixel-rf cell, which this command did not run.
    assert set(summary.loc[summary["method"] != "pixel-rf", "work_size"]) == {"32"}
    assert set(summary.loc[summary["method"] == "pixel-rf", "work_size"]) == {"[48, 40]"}
    pipeline = build_method("slic+crf", 2, work_size=(24, 20))
    assert pipeline.base.work_size == (24, 20) and pipeline.stages[0].work_size == (24, 20)
    assert build_method("slic+crf", 2).stages[0].work_size == 256  # no size: the method's own default, for both


# -- shared fitted bases --------------------------------------------------------------------------------


def test_pipeline_reuses_its_bare_base_fit_and_predictions(tmp_path):
    _RandomBase.fits = 0
    methods = ["test-random-base+test-identity", "test-random-base"]  # the bare method provides, listed or not first
    summary = _run(tmp_path, methods=methods).summary.set_index("method")
    assert _RandomBase.fits == 1
    per_image = pd.read_csv(tmp_path / "run" / "per_image.csv").pivot(index="image_id", columns="method", values="iou_lesion")
    np.testing.assert_array_equal(per_image[methods[0]], per_image[methods[1]])
    assert summary.loc[methods[0], "base_cell"] == summary.loc[methods[1], "cell"]
    assert summary.loc[methods[1], "base_cell"] == ""  # the provider reused nothing
    # Resume: the provider finished in an earlier invocation; its saved base serves a pipeline added now.
    methods.append("test-random-base+test-identity+test-identity")
    summary = _run(tmp_path, methods=methods).summary.set_index("method")
    assert _RandomBase.fits == 1
    assert summary.loc[methods[2], "base_cell"] == summary.loc[methods[1], "cell"]
    assert summary.loc[methods[2], "dataset_iou_lesion"] == summary.loc[methods[1], "dataset_iou_lesion"]


def test_without_sharing_each_pipeline_fits_its_own_base(tmp_path):
    _RandomBase.fits = 0
    summary = _run(tmp_path, methods=["test-random-base", "test-random-base+test-identity"], share_bases=False).summary
    assert _RandomBase.fits == 2 and set(summary["base_cell"]) == {""}


# -- train fraction and corruption axes -------------------------------------------------------------------


def test_train_subsets_are_nested_and_seeded():
    small, large = train_subset(IDS, 0.2, seed=1), train_subset(IDS, 0.6, seed=1)
    assert len(small) == 10 and len(large) == 30 and set(small) <= set(large)
    assert small == train_subset(IDS, 0.2, seed=1)


def test_cli_train_fraction_and_corruptions_run_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--datasets", "synthetic", "--dataset-opt", "synthetic.num_images=12", "--dataset-opt",
            "synthetic.size=(48,40)", "--methods", "otsu,pixel-rf", "--quick", "--train-fraction", "0.5,1.0",
            "--corruptions", "gaussian_noise,jpeg", "--severities", "1,5", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    summary, per_image = pd.read_csv(out / "summary.csv"), pd.read_csv(out / "per_image.csv")
    assert len(summary) == 2 * 2 * (1 + 2 * 2)  # methods x fractions x (clean + corruptions x severities)
    variants = set(zip(summary["corruption"], summary["severity"]))
    assert variants == {("none", 0), ("gaussian_noise", 1), ("gaussian_noise", 5), ("jpeg", 1), ("jpeg", 5)}
    n_train = summary.groupby("train_fraction")["n_train"].first()
    assert n_train[0.5] == round(n_train[1.0] / 2)
    n_test = int(summary["n_test"].iloc[0])
    assert len(per_image) == len(summary) * n_test
    rf = per_image[(per_image["method"] == "pixel-rf") & (per_image["train_fraction"] == 1.0)]
    clean = rf[rf["corruption"] == "none"].set_index("image_id")["iou_lesion"]
    noisy = rf[(rf["corruption"] == "gaussian_noise") & (rf["severity"] == 5)].set_index("image_id")["iou_lesion"]
    assert not np.allclose(clean, noisy[clean.index])  # the corrupted images were really scored
    cells = sorted((out / "cells").iterdir())
    stamps = [(c / "cell.json").stat().st_mtime_ns for c in cells]
    assert json.loads((cells[0] / "cell.json").read_text())["variants"]
    assert main(argv) == 0  # resume: nothing recomputed
    assert [(c / "cell.json").stat().st_mtime_ns for c in sorted((out / "cells").iterdir())] == stamps
