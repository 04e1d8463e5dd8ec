"""Training under a wall-clock budget (``budget_s``, ``segbench run --budget-s``): the learning-rate schedule is
laid out over the budget, training stops when it is spent, and the run records what stopped it."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from segbench.datasets import DATASETS
from segbench.methods.deep import training
from segbench.methods.deep.device import seed_everything
from segbench.methods.deep.training import TrainConfig, budget_lr_factor, train_model
from segbench.methods import build_method
from segbench.cli import main
from segbench.run.runner import RunConfig, run


def test_budget_schedule_by_hand():
    # Warm-up over the first 10% of the budget, then cosine from 1 down to 0.01 (computed here by hand).
    f = lambda t: budget_lr_factor(t, budget_s=10.0, warmup=0.1, min_ratio=0.01)  # noqa: E731
    assert f(0.5) == pytest.approx(0.5)  # halfway through the warm-up
    assert f(1.0) == pytest.approx(1.0)  # the peak where the warm-up ends
    assert f(5.5) == pytest.approx(0.01 + 0.99 * 0.5)  # halfway through the cosine
    assert f(10.0) == pytest.approx(0.01) and f(12.0) == pytest.approx(0.01)  # the floor at the budget's end, and after
    assert budget_lr_factor(3.0, budget_s=4.0, warmup=1.0, min_ratio=0.1) == pytest.approx(0.75)  # all warm-up
    assert budget_lr_factor(4.0, budget_s=4.0, warmup=1.0, min_ratio=0.1) == pytest.approx(0.1)


def test_training_by_budget_ends_at_the_cosine_floor(monkeypatch):
    # A clock that advances 0.05 s per reading: the run's length in steps does not depend on the machine's load.
    ticks = itertools.count()
    monkeypatch.setattr(training, "time", SimpleNamespace(perf_counter=lambda: 0.05 * next(ticks)))
    ds = DATASETS.get("synthetic")(None, num_images=8, size=(32, 32), seed=2)
    samples = [ds[i] for i in ds.ids()]
    budget = 2.0
    config = TrainConfig(epochs=2, batch_size=4, warmup_epochs=0.5, lr=1e-3, min_lr_ratio=0.05, budget_s=budget,
                         patience=None, progress=False, device="cpu")
    seed_everything(0)
    model = build_method("unet", 2, quick=True, options={"unet": {"device": "cpu"}}).build_model()
    result = train_model(model, samples[:4], samples[4:], num_classes=2, config=config)
    lrs = [r["lr"] for r in result.history]
    assert result.stopped == "budget"
    assert result.epochs_run > config.epochs  # the budget, not the epoch count, decided the length
    assert result.seconds >= budget
    assert len(lrs) >= 5  # enough epochs for the shape checks below
    # The cosine ended with the budget (the last reading came one tick before the budget check).
    assert lrs[-1] == pytest.approx(config.lr * config.min_lr_ratio, abs=0.01 * config.lr)
    assert max(lrs) > 0.5 * config.lr  # ... after reaching the peak: laid out over the budget, not cut
    peak = lrs.index(max(lrs))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))  # and decaying from there on
    assert not math.isnan(result.best_score)  # the last (partial) epoch was validated


def test_bad_budget_fails_early():
    with pytest.raises(ValueError, match="budget_s"):
        TrainConfig(budget_s=0).validate()
    with pytest.raises(ValueError, match="budget-s"):
        RunConfig(out="x", datasets=["synthetic"], methods=["otsu"], budget_s=-1).validate()


def test_run_with_a_budget_records_what_stopped_training(tmp_path, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")  # what --no-progress would set, undone after the test
    out, budget = tmp_path / "run", 2.0
    code = main(["run", "--datasets", "synthetic", "--dataset-opt", "synthetic.num_images=10", "--dataset-opt",
                 "synthetic.size=(40,32)", "--methods", "unet,otsu", "--quick", "--retries", "0",
                 "--budget-s", str(budget), "--out", str(out)])
    assert code == 0
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    unet, otsu = summary.loc["unet"], summary.loc["otsu"]
    assert unet["stop_reason"] == "budget" and unet["budget_s"] == budget and unet["epochs_run"] >= 1
    assert pd.isna(otsu["stop_reason"]) and pd.isna(otsu["budget_s"]) and pd.isna(otsu["epochs_run"])  # nothing trained
    history = pd.read_csv(out / "artifacts" / unet["cell"] / "history.csv")
    assert history["lr"].iloc[-1] == pytest.approx(2e-3 * 0.01, rel=0.05)  # unet's lr x min_lr_ratio: the cosine's end

    config = RunConfig(out=out, datasets=["synthetic"], methods=["unet", "otsu"], quick=True, retries=0,
                       dataset_options={"synthetic": {"num_images": 10, "size": (40, 32)}})
    without = run(config, progress=False, log=lambda _: None).summary.set_index("method")
    assert without.loc["unet", "stop_reason"] == "epochs" and pd.isna(without.loc["unet", "budget_s"])
    assert without.loc["unet", "epochs_run"] == 15  # unet's quick epochs
    assert without.loc["unet", "cell"] != unet["cell"]  # the budget is part of the cell key
    assert without.loc["otsu", "cell"] == otsu["cell"]  # ... only where it applies
