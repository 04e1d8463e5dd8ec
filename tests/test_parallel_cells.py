"""Cells side by side (issue 26 items 6-7): ``--workers N`` runs N cells at a time in processes, every cell at
``--threads`` whatever OMP_NUM_THREADS says, latency is timed only when no other cell runs, the machine's load
is recorded; ``--import ./x.py`` works on a Dask LocalCluster, imported once per worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from segbench.cli import main
from segbench.report.latency import latency_markdown
from segbench.methods import METHODS
from segbench.run.environment import loaded_machine

#: A user's own file: logs "import <pid>" when executed and "fit <pid> <threads> <start> <end>" per fit.
LOGGED_METHOD = '''
import os, time
import numpy as np
import torch
from segbench.methods import METHODS, Method

def _log(line):
    with open(os.environ["SEGBENCH_TEST_LOG"], "a") as f:
        f.write(line + "\\n")

_log(f"import {os.getpid()}")


@METHODS.register("test-logged")
class Logged(Method):
    """Logs its process, threads and fit window; predicts foreground where the image is dark."""

    def _fit(self, train, val):
        start = time.time()
        time.sleep(1.0)
        _log(f"fit {os.getpid()} {torch.get_num_threads()} {start} {time.time()}")

    def _predict_proba(self, image):
        fg = (image.mean(axis=2) < 128).astype(np.float32)
        return np.stack([1 - fg, fg])
'''


@pytest.fixture
def logged_method(tmp_path, monkeypatch):
    path = tmp_path / "mine" / "logged_methods.py"
    path.parent.mkdir()
    path.write_text(LOGGED_METHOD)
    log = tmp_path / "log.txt"
    monkeypatch.setenv("SEGBENCH_TEST_LOG", str(log))
    monkeypatch.chdir(path.parent)
    with METHODS.restored():  # the module registers test-logged when the run imports it
        try:
            yield "./logged_methods.py", log
        finally:
            sys.modules.pop("logged_methods", None)


def _lines(log: Path, kind: str) -> list[list[str]]:
    return [line.split()[1:] for line in log.read_text().splitlines() if line.startswith(kind)]


def _argv(out: Path, *extra: str) -> list[str]:
    return ["run", "--datasets", "synthetic", "--dataset-opt", "synthetic.num_images=8", "--dataset-opt",
            "synthetic.size=(40,32)", "--seeds", "0,1,2,3", "--out", str(out), "--no-progress", *extra]


def test_local_workers_run_cells_side_by_side_and_time_latency_alone(tmp_path, logged_method):
    item, log = logged_method
    assert main(_argv(tmp_path / "serial", "--import", item, "--methods", "test-logged,otsu")) == 0
    log.unlink()
    assert main(_argv(tmp_path / "par", "--import", item, "--methods", "test-logged,otsu", "--workers", "2",
                      "--threads", "1")) == 0
    fits = _lines(log, "fit")
    pids = {f[0] for f in fits}
    assert len(fits) == 4 and len(pids) == 2 and str(os.getpid()) not in pids  # two worker processes
    assert {f[1] for f in fits} == {"1"}
    windows = sorted((float(f[2]), float(f[3])) for f in fits)
    assert any(b[0] < a[1] for a, b in zip(windows, windows[1:]))  # two fits overlapped in time
    assert sorted(f[0] for f in _lines(log, "import")) == sorted(pids)  # the file ran once per worker, not per cell
    serial = pd.read_csv(tmp_path / "serial" / "summary.csv").set_index(["method", "seed"]).sort_index()
    par = pd.read_csv(tmp_path / "par" / "summary.csv").set_index(["method", "seed"]).sort_index()
    assert (serial["latency_timed"] == "in cell").all()
    assert (par["latency_timed"] == "after the cells, one at a time").all() and par["latency_ms_p50"].notna().all()
    pd.testing.assert_series_equal(serial["dataset_dice_lesion"], par["dataset_dice_lesion"])
    images = pd.read_csv(tmp_path / "par" / "per_image.csv")
    assert images["latency_ms"].notna().all() and (images["latency_ms"] > 0).all()
    assert not list((tmp_path / "par" / "artifacts").glob("*/fitted_for_latency.pt"))
    env = json.loads((tmp_path / "par" / "environment.json").read_text())
    assert env["cpu_count"] == os.cpu_count() and len(env["load_average_start"]) == 3 and len(env["load_average_end"]) == 3
    assert (env["cells_at_once"], env["threads_per_cell"]) == (2, 1)


def test_every_cell_runs_at_one_thread_whatever_omp_num_threads_says(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    argv = ["run", "--datasets", "synthetic", "--dataset-opt", "synthetic.num_images=6", "--methods", "otsu,constant",
            "--out", str(tmp_path / "run"), "--no-progress"]
    subprocess.run([sys.executable, "-m", "segbench.cli", *argv], env=env, check=True, capture_output=True)
    assert (pd.read_csv(tmp_path / "run" / "summary.csv")["threads"] == 1).all()
    subprocess.run([sys.executable, "-m", "segbench.cli", *argv, "--threads", "2", "--out", str(tmp_path / "two")],
                   env=env, check=True, capture_output=True)
    assert (pd.read_csv(tmp_path / "two" / "summary.csv")["threads"] == 2).all()


def test_dask_local_cluster_imports_a_py_file_once_per_worker(tmp_path, logged_method):
    pytest.importorskip("dask.distributed", reason="the dask executor needs dask[distributed]")
    item, log = logged_method
    assert main(_argv(tmp_path / "run", "--import", item, "--methods", "test-logged", "--executor", "dask",
                      "--workers", "2")) == 0
    summary = pd.read_csv(tmp_path / "run" / "summary.csv")
    assert (summary["status"] == "ok").all() and len(summary) == 4
    workers = {f[0] for f in _lines(log, "fit")}
    imports = [i[0] for i in _lines(log, "import")]
    assert str(os.getpid()) in imports  # the driver
    assert workers and all(imports.count(pid) == 1 for pid in workers), (imports, workers)


def test_an_existing_dask_scheduler_imports_a_py_file_once_per_worker(tmp_path, logged_method):
    distributed = pytest.importorskip("dask.distributed", reason="the dask executor needs dask[distributed]")
    item, log = logged_method
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert main(_argv(tmp_path / "run", "--import", item, "--methods", "test-logged", "--executor", "dask",
                          "--scheduler", cluster.scheduler_address)) == 0
    assert (pd.read_csv(tmp_path / "run" / "summary.csv")["status"] == "ok").all()
    workers, imports = {f[0] for f in _lines(log, "fit")}, [i[0] for i in _lines(log, "import")]
    assert workers and all(imports.count(pid) == 1 for pid in workers), (imports, workers)


def test_the_latency_tables_flag_a_wide_spread_and_a_loaded_machine():
    row = {"status": "ok", "method": "m", "batch_size": 1, "image_size": "32x32", "model_ms_p50": 1.0,
           "overhead_ms_p50": 0.1, "peak_mem_mb": 1.0, "device_name": "cpu", "device": "cpu", "threads": 1,
           "warmup": 1, "repeats": 3}
    table = pd.DataFrame([{**row, "latency_ms_p50": 10.0, "latency_ms_p95": 25.0},
                          {**row, "method": "n", "latency_ms_p50": 10.0, "latency_ms_p95": 15.0}])
    text = latency_markdown(table)
    assert "| m | 10.0 (25.0 !) |" in text and "| n | 10.0 (15.0) |" in text and "! p95 more than twice p50" in text
    base = {"cpu_count": 2, "cells_at_once": 1, "threads_per_cell": 1}
    assert loaded_machine({**base, "load_average_start": [0.9, 1, 1]}) == ""  # one busy core + our one thread: fits
    assert "load average 1.5 at start on 2 CPUs" in loaded_machine({**base, "load_average_start": [1.5, 1, 1]})
    assert "plus 2 thread(s)" in loaded_machine({**base, "cells_at_once": 2, "load_average_start": [0.5, 1, 1]})


def test_worker_and_thread_counts_below_one_are_refused(tmp_path, capsys):
    assert main(["run", "--methods", "otsu", "--workers", "0", "--threads", "0", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--threads 0: give 1 or more" in err and "--workers 0: give 1 or more" in err and "nothing was run" in err


def test_cells_that_load_no_base_run_beside_the_base_providers(tmp_path, monkeypatch):
    # Only a cell that loads a shared base must wait for its provider: a lone network that waited too left one of
    # two workers idle for a whole DeepLab training on CamVid (phase 1: slic and deeplab, phase 2: everything else).
    from segbench.run import runner

    batches = []

    class Recording:  # runs the cells here, one after another, and records what each phase handed it
        name, parallel = "recording", False

        def map_unordered(self, fn, tasks, on_lost):
            batches.append(sorted(t.method for t in tasks))
            for task in tasks:
                yield task, fn(task)

        def close(self):
            pass

    monkeypatch.setattr(runner, "make_executor", lambda kind, **options: Recording())
    argv = ["run", "--datasets", "synthetic", "--dataset-opt", "synthetic.num_images=8", "--dataset-opt",
            "synthetic.size=(40,32)", "--methods", "constant,slic,slic+crf,otsu", "--out", str(tmp_path / "run"),
            "--no-progress"]
    assert main(argv) == 0
    assert batches == [["constant", "otsu", "slic"], ["slic+crf"]]
    summary = pd.read_csv(tmp_path / "run" / "summary.csv").set_index("method")
    assert (summary["status"] == "ok").all() and summary.loc["slic+crf", "base_cell"].startswith("synthetic__slic__")
