"""The latency protocol itself: warm-up excluded, repeat count honoured, slower code measures slower,
CUDA synchronised around every timed call, memory probed."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch

import segbench.measure.latency as latency
import segbench.run.latency as run_latency
from segbench.cli import main
from segbench.measure.latency import measure
from segbench.run.latency import method_latency_table


def test_warmup_is_excluded_and_repeats_honoured():
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= 2:  # the warm-up calls are slow, as first calls are
            time.sleep(0.2)

    result = measure(fn, warmup=2, repeats=7)
    assert len(calls) == 9
    assert len(result.times_ms) == 7 and result.repeats == 7 and result.warmup == 2
    assert max(result.times_ms) < 150  # none of the 200 ms warm-up calls was timed


def test_slowed_function_measures_slower():
    fast = measure(lambda: None, warmup=1, repeats=5)
    slow = measure(lambda: time.sleep(0.03), warmup=1, repeats=5)
    row = slow.row()
    assert row["latency_ms_p50"] >= 30  # sleep never returns early
    assert row["latency_ms_p50"] > fast.row()["latency_ms_p50"]
    assert row["images_per_s"] == pytest.approx(1e3 / row["latency_ms_p50"])
    assert row["latency_ms_p95"] >= row["latency_ms_p50"]


def test_cuda_path_synchronises_around_every_timed_call(monkeypatch):
    """With a fake CUDA device: every call is bracketed by a synchronize on each side."""
    events = []
    monkeypatch.setattr(latency, "synchronize", lambda device=None: events.append(("sync", device)))
    monkeypatch.setattr(latency, "device_name", lambda device: "fake GPU")
    monkeypatch.setattr(latency.MemoryProbe, "__enter__", lambda self: self)
    monkeypatch.setattr(latency.MemoryProbe, "__exit__", lambda self, *a: None)
    measure(lambda: events.append(("call", None)), warmup=1, repeats=3, device="cuda:0")
    timed = events[1:]  # the warm-up call is not bracketed
    assert events[0] == ("call", None)
    assert timed == [("sync", "cuda:0"), ("call", None), ("sync", "cuda:0")] * 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (none on this machine)")
def test_real_cuda_timing_includes_the_kernels():
    a = torch.randn(4096, 4096, device="cuda")
    result = measure(lambda: a @ a, warmup=2, repeats=5, device="cuda")
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    a @ a
    end.record()
    torch.cuda.synchronize()
    # without synchronisation the timer would see only the launch (microseconds)
    assert result.row()["latency_ms_p50"] >= 0.5 * start.elapsed_time(end)
    assert result.peak_mem_mb > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CPU memory probe reads /proc")
def test_cpu_memory_probe_sees_a_large_allocation():
    result = measure(lambda: np.ones((4000, 4000)).sum(), warmup=1, repeats=2)  # 122 MiB
    assert 100 < result.peak_mem_mb < 400


def test_method_latency_table_and_cli(tmp_path, capsys):
    table = method_latency_table(["otsu"], [(48, 40), (64, 48)], repeats=2, warmup=1, log=lambda s: None)
    assert list(table["image_size"]) == ["48x40", "64x48"] and set(table["status"]) == {"ok"}
    assert (table["repeats"] == 2).all() and (table["threads"] >= 1).all()
    assert main(["latency", "--methods", "otsu", "--sizes", "48x40", "--repeats", "2", "--out", str(tmp_path / "lat")]) == 0
    assert "| otsu |" in (tmp_path / "lat" / "latency.md").read_text()
    assert main(["latency", "--methods", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["latency", "--methods", "otsu", "--sizes", "256", "--out", str(tmp_path / "x")]) == 2


def test_batched_throughput_runs_the_network_once_per_batch(monkeypatch):
    from segbench.methods import build_method
    from segbench.methods.deep.unet import UNetMethod

    method = build_method("unet", 2, quick=True, work_size=(32, 24))
    assert method.prepare_untrained()
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    single = method.predict_proba(image)
    batch = method.predict_proba_batch(np.stack([image, image[::-1]]))
    assert batch.shape == (2, 2, 24, 32)
    np.testing.assert_allclose(batch[0], single, atol=1e-5)  # the batch path is the same network, same input
    calls = []
    original = UNetMethod.predict_proba_batch
    monkeypatch.setattr(UNetMethod, "predict_proba_batch", lambda self, x: calls.append(len(x)) or original(self, x))
    table = method_latency_table(["unet", "otsu"], [(48, 40)], repeats=2, warmup=1, batch_sizes=(4,), log=lambda s: None)
    assert set(table["status"]) == {"ok"}, table["error"].tolist()
    assert calls == [4] * 3  # one forward pass of 4 images per call: 1 warm-up + 2 timed
    assert list(table["batching"]) == ["network", "sequential"] and (table["batch_size"] == 4).all()
    np.testing.assert_allclose(table["images_per_s"], 4e3 / table["latency_ms_p50"])
    with pytest.raises(ValueError, match="batch sizes"):
        method_latency_table(["otsu"], [(32, 24)], batch_sizes=(0,))


def test_a_pipeline_is_timed_around_an_untrained_base_without_training_it(monkeypatch):
    """`segbench latency` times deeplab+crf with random weights like deeplab: only the CRF stage is fitted
    (it used to train the network for its full epochs first)."""
    from segbench.methods.deep.method import DeepMethod

    monkeypatch.setattr(DeepMethod, "_fit", lambda self, *a, **k: pytest.fail("the base network was trained"))
    method, _, prepared = run_latency._timing_method("unet+crf", (48, 40), device="cpu", amp=False, seed=0)
    assert prepared == "untrained" and method.fitted and method.base.fitted
    assert method.predict(np.zeros((40, 48, 3), np.uint8)).shape == (40, 48)
