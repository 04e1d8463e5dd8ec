"""Training under a budget (``budget_s``, ``segbench run --budget-s``): the learning-rate schedule is laid out over
the budget clock's seconds of optimiser work, validation is not charged, training stops when the budget is spent,
and the run records what stopped it; budgets as a grid axis; ``--budget converged``."""

from __future__ import annotations

import math
import time

import pandas as pd
import pytest
import torch

from segbench.datasets import DATASETS
from segbench.methods.deep import training
from segbench.methods.deep.device import seed_everything
from segbench.methods.deep.training import TrainConfig, budget_lr_factor, cooldown_lr_factor, train_model
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


class FakeClock:
    """Advances ``tick`` seconds per reading; ``advance`` jumps ahead (time spent elsewhere)."""

    def __init__(self, tick: float = 0.05) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _tiny_samples():
    ds = DATASETS.get("synthetic")(None, num_images=8, size=(32, 32), seed=2)
    return [ds[i] for i in ds.ids()]


def test_training_by_budget_ends_at_the_cosine_floor():
    # A clock that advances 0.05 s per reading: the run's length in steps does not depend on the machine's load.
    clock = FakeClock()
    ds = DATASETS.get("synthetic")(None, num_images=8, size=(32, 32), seed=2)
    samples = [ds[i] for i in ds.ids()]
    budget = 2.0
    config = TrainConfig(epochs=2, batch_size=4, warmup_epochs=0.5, lr=1e-3, min_lr_ratio=0.05, budget_s=budget,
                         patience=None, progress=False, device="cpu")
    seed_everything(0)
    model = build_method("unet", 2, quick=True, options={"unet": {"device": "cpu"}}).build_model()
    result = train_model(model, samples[:4], samples[4:], num_classes=2, config=config, clock=clock)
    lrs = [r["lr"] for r in result.history]
    assert result.stopped == "budget"
    assert result.epochs_run > config.epochs  # the budget, not the epoch count, decided the length
    assert budget <= result.charged_s < budget + 0.2  # stopped at the first step past the budget
    assert len(lrs) >= 5  # enough epochs for the shape checks below
    # The cosine ended with the budget (the last reading came one tick before the budget check).
    assert lrs[-1] == pytest.approx(config.lr * config.min_lr_ratio, abs=0.01 * config.lr)
    assert max(lrs) > 0.5 * config.lr  # ... after reaching the peak: laid out over the budget, not cut
    peak = lrs.index(max(lrs))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))  # and decaying from there on
    assert not math.isnan(result.best_score)  # the last (partial) epoch was validated


def test_validation_is_not_charged_to_the_budget():
    # Every validation pass takes 10 s of the budget clock: were it charged, a 2 s budget would end after epoch 1.
    clock = FakeClock()
    samples = _tiny_samples()
    seed_everything(0)
    model = build_method("unet", 2, quick=True, options={"unet": {"device": "cpu"}}).build_model()
    data = training.ImageData(samples[:4], TrainConfig(batch_size=4), ignore_index=255, device=torch.device("cpu"))
    passes = []

    def evaluate() -> float:
        clock.advance(10.0)
        passes.append(1)
        return float(len(passes))  # a better score each time: no early stopping

    config = TrainConfig(epochs=2, batch_size=4, warmup_epochs=0.5, budget_s=2.0, patience=None, progress=False, device="cpu")
    result = training.train_loop(model, data, config=config, evaluate=evaluate, clock=clock)
    assert result.stopped == "budget" and result.epochs_run >= 5 and len(passes) == result.epochs_run
    assert 2.0 <= result.charged_s < 2.2  # what the optimiser used, not the 10 s per validation
    assert [r["train_s"] for r in result.history] == sorted(r["train_s"] for r in result.history)
    assert result.history[-1]["train_s"] == result.charged_s
    assert result.val_s == pytest.approx(sum(r["val_s"] for r in result.history)) and result.val_s > 0


def test_budget_clock_counts_cpu_seconds_on_cpu():
    # On CPU the budget is the process's CPU time: sleeping (a machine busy with other work) costs none of it.
    clock = training.budget_clock(torch.device("cpu"))
    start = clock()
    time.sleep(0.2)
    assert clock() - start < 0.1


def test_converged_training_is_reproducible_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    args = ["run", "--datasets", "synthetic", "--dataset-opt", "synthetic.num_images=10", "--dataset-opt",
            "synthetic.size=(40,32)", "--methods", "unet", "--quick", "--retries", "0", "--budget", "converged",
            "--patience", "2", "--max-epochs", "6"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = (pd.read_csv(tmp_path / r / "summary.csv").iloc[0] for r in "ab")
    assert a["patience"] == 2 and a["max_epochs"] == 6 and a["stop_reason"] in ("epochs", "early_stopping")
    assert 1 <= a["best_epoch"] <= a["epochs_run"] <= 6
    for column in ("per_image_dice_lesion", "dataset_dice_lesion", "best_epoch", "epochs_run", "stop_reason"):
        assert a[column] == b[column]
    curves = [pd.read_csv(tmp_path / r / "curves.csv") for r in "ab"]
    pd.testing.assert_frame_equal(curves[0][["epoch", "loss", "val_score", "lr"]], curves[1][["epoch", "loss", "val_score", "lr"]])
    assert len(curves[0]) == a["epochs_run"]
    assert curves[0]["val_score"].idxmax() + 1 == a["best_epoch"]  # the kept epoch is the curve's best (first on ties)


def test_budget_axis_makes_a_cell_per_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    out = tmp_path / "run"
    code = main(["run", "--datasets", "synthetic", "--dataset-opt", "synthetic.num_images=10", "--dataset-opt",
                 "synthetic.size=(40,32)", "--methods", "unet,otsu", "--quick", "--retries", "0",
                 "--budget-s", "0.5,1", "--out", str(out)])
    assert code == 0
    summary = pd.read_csv(out / "summary.csv")
    unet = summary[summary["method"] == "unet"].set_index("budget_s")
    assert sorted(unet.index) == [0.5, 1.0] and unet["cell"].nunique() == 2  # a cell per budget
    assert (unet["charged_s"] >= unet.index).all()
    assert (summary["method"] == "otsu").sum() == 1  # methods without a budget run once
    per_image = pd.read_csv(out / "per_image.csv")
    assert sorted(per_image.loc[per_image["method"] == "unet", "budget_s"].unique()) == [0.5, 1.0]
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves["budget_s"]) == {0.5, 1.0} and set(curves["method"]) == {"unet"}
    # Resume: the same command finds every cell finished.
    before = {p.name: p.stat().st_mtime for p in (out / "cells").iterdir()}
    assert main(["run", "--datasets", "synthetic", "--dataset-opt", "synthetic.num_images=10", "--dataset-opt",
                 "synthetic.size=(40,32)", "--methods", "unet,otsu", "--quick", "--retries", "0",
                 "--budget-s", "0.5,1", "--out", str(out)]) == 0
    assert {p.name: p.stat().st_mtime for p in (out / "cells").iterdir()} == before
    # The report: the training section with its learning curves, and accuracy against training compute (the
    # real writer's tables: budget_s in both, otsu as the classical target at its fit time).
    report = (out / "report.md").read_text()
    assert "### Training" in report and "### Accuracy against training compute" in report
    figures = out / "figures"
    assert all((figures / f"{name}_synthetic.png").is_file() for name in ("learning_curves", "compute_seconds", "compute_flops"))
    target = report.split("### Accuracy against training compute")[1].split("###")[0]
    assert "| unet | otsu " in target and ("| 0.5 s |" in target or "| 1 s |" in target or "not within the sweep" in target)


def test_bad_budget_fails_early():
    with pytest.raises(ValueError, match="budget_s"):
        TrainConfig(budget_s=0).validate()
    with pytest.raises(ValueError, match="budget-s"):
        RunConfig(out="x", datasets=["synthetic"], methods=["otsu"], budget_s=[-1]).validate()
    with pytest.raises(ValueError, match="exclude"):
        RunConfig(out="x", datasets=["synthetic"], methods=["otsu"], budget_s=[10], budget="converged").validate()
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16").validate()
    with pytest.raises(ValueError, match="cooldown_epochs=3 trains by epochs"):
        TrainConfig(cooldown_epochs=3, budget_s=10).validate()
    with pytest.raises(ValueError, match="cooldown_epochs must be in"):
        TrainConfig(cooldown_epochs=5, epochs=5).validate()
    with pytest.raises(ValueError, match="--cooldown and --budget-s exclude each other"):
        RunConfig(out="x", datasets=["synthetic"], methods=["otsu"], budget_s=[10], cooldown=3).validate()


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
    assert unet["charged_s"] >= budget and unet["val_s"] > 0 and 1 <= unet["best_epoch"] <= unet["epochs_run"]
    assert pd.isna(otsu["stop_reason"]) and pd.isna(otsu["budget_s"]) and pd.isna(otsu["epochs_run"])  # nothing trained
    assert pd.isna(otsu["precision"]) and pd.isna(otsu["val_s"])
    history = pd.read_csv(out / "artifacts" / unet["cell"] / "history.csv")
    assert history["lr"].iloc[-1] == pytest.approx(2e-3 * 0.01, rel=0.05)  # unet's lr x min_lr_ratio: the cosine's end

    config = RunConfig(out=out, datasets=["synthetic"], methods=["unet", "otsu"], quick=True, retries=0,
                       dataset_options={"synthetic": {"num_images": 10, "size": (40, 32)}})
    without = run(config, progress=False, log=lambda _: None).summary.set_index("method")
    assert without.loc["unet", "stop_reason"] == "epochs" and pd.isna(without.loc["unet", "budget_s"])
    assert without.loc["unet", "epochs_run"] == 15  # unet's quick epochs
    assert without.loc["unet", "cell"] != unet["cell"]  # the budget is part of the cell key
    assert without.loc["otsu", "cell"] == otsu["cell"]  # ... only where it applies


def test_cooldown_schedule_by_hand():
    # Warm-up over 4 steps, the peak until the cooldown starts at step 10, a cosine to 0.01 over 8 steps.
    f = lambda step, start: cooldown_lr_factor(step, warmup_steps=4, cooldown_start=start, cooldown_steps=8, min_ratio=0.01)  # noqa: E731
    assert [f(s, None) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(4, None) == f(500, None) == 1.0  # stable until a cooldown starts
    assert f(9, 10) == 1.0 and f(10, 10) == pytest.approx(1.0)  # the cooldown's first step still at the peak
    assert f(14, 10) == pytest.approx(0.01 + 0.99 * 0.5)  # halfway
    assert f(18, 10) == pytest.approx(0.01) and f(30, 10) == pytest.approx(0.01)  # the floor at its end, and after


def _cooldown_run(scores: list[float], *, patience: int | None, cooldown: int, epochs: int = 30):
    """Train the quick U-Net with a validation 'score' read from ``scores`` (one per epoch)."""
    samples = _tiny_samples()
    seed_everything(0)
    model = build_method("unet", 2, quick=True, options={"unet": {"device": "cpu"}}).build_model()
    config = TrainConfig(epochs=epochs, batch_size=4, warmup_epochs=1, lr=1e-3, min_lr_ratio=0.05, patience=patience,
                         cooldown_epochs=cooldown, progress=False, device="cpu")
    data = training.ImageData(samples[:4], config, ignore_index=255, device=torch.device("cpu"))
    passes = iter(scores)
    return training.train_loop(model, data, config=config, evaluate=lambda: next(passes))


def test_cooldown_starts_at_the_plateau_and_anneals_before_stopping():
    # Scores climb for 4 epochs, then plateau: with patience 3 the plateau is seen after epoch 7, the cooldown
    # runs epochs 8-11 and training stops; the plain schedule would have stopped at epoch 7 at the peak rate.
    scores = [0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4, 0.41, 0.45, 0.5, 0.44] + [0.0] * 20
    result = _cooldown_run(scores, patience=3, cooldown=4)
    lrs = [r["lr"] for r in result.history]
    assert result.stopped == "cooldown" and result.epochs_run == 11
    assert lrs[1:7] == pytest.approx([1e-3] * 6)  # stable at the peak after the one-epoch warm-up
    assert lrs[-1] == pytest.approx(1e-3 * 0.05)  # annealed to the floor when it stopped
    assert all(a > b for a, b in zip(lrs[6:], lrs[7:]))  # decaying through the cooldown
    assert result.best_epoch == 10 and result.best_score == 0.5  # the cooldown's gain kept, not the last epoch
    plain = _cooldown_run(scores, patience=3, cooldown=None)
    assert plain.stopped == "early_stopping" and plain.epochs_run == 7 and plain.history[-1]["lr"] > 0.9e-3


def test_cooldown_fits_within_the_epoch_cap():
    # Always improving: no plateau, so the cooldown takes the last 3 of the 8 epochs (the same without patience).
    for patience in (2, None):
        result = _cooldown_run([i / 10 for i in range(1, 20)], patience=patience, cooldown=3, epochs=8)
        lrs = [r["lr"] for r in result.history]
        assert result.stopped == "cooldown" and result.epochs_run == 8 and result.best_epoch == 8
        assert lrs[1:5] == pytest.approx([1e-3] * 4) and lrs[-1] == pytest.approx(1e-3 * 0.05)


def test_cooldown_reaches_every_deep_method_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    args = ["run", "--datasets", "synthetic", "--dataset-opt", "synthetic.num_images=10", "--dataset-opt",
            "synthetic.size=(40,32)", "--methods", "unet,otsu", "--quick", "--retries", "0", "--budget", "converged",
            "--patience", "2", "--max-epochs", "8", "--cooldown", "2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    summary = pd.read_csv(tmp_path / "a" / "summary.csv").set_index("method")
    unet = summary.loc["unet"]
    assert unet["stop_reason"] == "cooldown" and '"cooldown_epochs": 2' in unet["method_config"]
    curve = pd.read_csv(tmp_path / "a" / "curves.csv")
    assert curve["lr"].iloc[-1] == pytest.approx(2e-3 * 0.01)  # unet's lr x min_lr_ratio
    assert pd.isna(summary.loc["otsu", "stop_reason"])
