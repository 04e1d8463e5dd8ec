"""Executors, crash safety and resume: the same grid on Dask gives the same tables; a killed run resumes
without recomputing finished cells; a failing cell is retried, recorded, and does not stop the grid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from segbench.methods import METHODS
from segbench.run.runner import RunConfig, run

TINY = {"synthetic": {"num_images": 10, "size": (48, 40)}, "synthetic-multiclass": {"num_images": 10, "size": (48, 40)}}
TIMING = ["train_s", "threads", "peak_mem_mb", "latency_timed",
          *(f"{part}_{stat}" for part in ("latency_ms", "model_ms", "overhead_ms") for stat in ("p50", "p95", "mean", "std"))]
PER_IMAGE_TIMING = ["latency_ms", "model_ms", "overhead_ms"]


def _grid(out: Path, **kw) -> RunConfig:
    grid = dict(datasets=["synthetic", "synthetic-multiclass"], methods=["otsu", "pixel-rf"], seeds=[0, 1], dataset_options=TINY, quick=True)
    return RunConfig(out=out, **{**grid, **kw})


def test_dask_local_cluster_gives_the_same_tables(tmp_path):
    pytest.importorskip("dask.distributed", reason="the dask executor needs dask[distributed]")
    methods = ["otsu", "pixel-rf", "pixel-rf+morph"]  # the pipeline reuses pixel-rf's fitted base on both executors
    local = run(_grid(tmp_path / "local", methods=methods), progress=False)
    dask = run(_grid(tmp_path / "dask", methods=methods, executor="dask", executor_options={"workers": 2, "threads_per_worker": 1}),
               progress=False)
    assert len(local.summary) == 12 and set(local.summary["status"]) == {"ok", "skipped"}
    rows = dask.summary.set_index(["dataset", "method", "seed"])
    assert (rows.xs("pixel-rf+morph", level="method")["base_cell"] == rows.xs("pixel-rf", level="method")["cell"]).all()
    pd.testing.assert_frame_equal(local.summary.drop(columns=TIMING), dask.summary.drop(columns=TIMING))
    pd.testing.assert_frame_equal(local.per_image.drop(columns=PER_IMAGE_TIMING), dask.per_image.drop(columns=PER_IMAGE_TIMING))


def test_failing_cell_is_retried_recorded_and_the_rest_finishes(tmp_path):
    config = _grid(tmp_path / "run", retries=2, method_options={"otsu": {"channel": "bogus"}})
    logs: list[str] = []
    result = run(config, progress=False, log=logs.append)
    status = result.summary.set_index(["dataset", "method", "seed"])["status"]
    assert status[("synthetic", "otsu", 0)] == "failed"
    assert (status.xs("pixel-rf", level="method") == "ok").all()
    failure = result.summary[result.summary["status"] == "failed"].iloc[0]
    assert "channel 'bogus'" in failure["error"] and failure["attempts"] == 3
    assert sum("retrying" in line for line in logs) == 4  # two failing cells, two retries each


def _start(out: Path, fit_log: Path, seeds: str) -> subprocess.Popen:
    tests = Path(__file__).parent
    args = ["run", "--import", "slow_method", "--datasets", "synthetic", "--methods", "test-slow-logged", "--seeds", seeds,
            "--dataset-opt", "synthetic.num_images=9", "--dataset-opt", "synthetic.size=(40,32)", "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(tests), "SEGBENCH_TEST_FIT_LOG": str(fit_log), "SEGBENCH_TEST_FIT_SECONDS": "1.0"}
    return subprocess.Popen([sys.executable, "-m", "segbench.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_then_resume_recomputes_nothing_finished(tmp_path):
    out, fit_log = tmp_path / "run", tmp_path / "fits.log"
    proc = _start(out, fit_log, "0,1,2,3,4,5")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until two cells are committed, then kill mid-grid
        if len(list((out / "cells").glob("synthetic__*"))) >= 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = {p.name for p in (out / "cells").glob("synthetic__*")}
    assert 2 <= len(finished_before) < 6
    pd.read_csv(out / "summary.csv")  # whatever was written at the kill parses
    fits_before = fit_log.read_text().split()

    proc = _start(out, fit_log, "0,1,2,3,4,5")
    assert proc.wait(timeout=180) == 0, proc.stderr.read().decode()
    fits_after = fit_log.read_text().split()[len(fits_before):]
    seeds_done_before = {int(name.split("__seed")[1].split("-")[0]) for name in finished_before}
    assert not seeds_done_before & {int(s) for s in fits_after}, "a finished cell was recomputed"
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["seed"]) == [0, 1, 2, 3, 4, 5] and set(summary["status"]) == {"ok"}
    assert len(pd.read_csv(out / "per_image.csv")) == 6 * len(pd.read_csv(out / "splits" / "synthetic.csv").query("split == 'test'"))
    # a kill may leave a cell's temporary folder (write_atomic's ".<key>.tmp-..."), never one elsewhere
    assert all(p.parent.name == "cells" for p in out.rglob(".*.tmp-*") if p.is_dir())


@pytest.fixture
def slow_method_plugin():
    """The runner imports slow_method (as ``--import`` does), which registers its methods: undo both after."""
    with METHODS.restored():
        yield
    sys.modules.pop("slow_method", None)  # a later import registers them again


def test_dead_worker_is_retried_then_recorded(tmp_path, slow_method_plugin):
    pytest.importorskip("dask.distributed", reason="the dask executor needs dask[distributed]")
    import dask

    config = RunConfig(out=tmp_path / "run", datasets=["synthetic"], methods=["test-dies", "otsu"], dataset_options=TINY,
                       imports=["slow_method"], executor="dask", executor_options={"workers": 2, "threads_per_worker": 1}, retries=1)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # one death is enough to give up on a task
        result = run(config, progress=False, log=lambda line: None)
    status = result.summary.set_index("method")
    assert status.loc["otsu", "status"] == "ok"
    assert status.loc["test-dies", "status"] == "failed" and status.loc["test-dies", "attempts"] == 2
    assert "KilledWorker" in status.loc["test-dies", "error"]
