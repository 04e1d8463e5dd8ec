"""Cheap post-processing gives the same labels as the NumPy path; the latency split, thread counts, memory
figure, FLOPs, roofline and throughput are what they claim; a pipeline honours the method contract."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier
from threadpoolctl import threadpool_info

from segbench.cli import main
from segbench.datasets import build_dataset
from segbench.datasets.transforms import resize_image, resize_proba
from segbench.measure import latency as latency_module
from segbench.measure.latency import MemoryProbe, configured_threads
from segbench.run.latency import method_latency_table
from segbench.measure.roofline import ACCELERATORS, accelerator, roofline_ms
from segbench.methods import METHODS, Method, Pipeline, build_method
from segbench.methods.prediction import labels_from_proba
from segbench.methods.tiling import Tiling
from segbench.run.runner import RunConfig, run


def _numpy_labels(proba: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The path every method used before: full-resolution probabilities, then NumPy's argmax."""
    return resize_proba(proba, shape).argmax(axis=0)


@pytest.mark.parametrize("num_classes", [2, 3, 12])
@pytest.mark.parametrize("shape", [(96, 128), (576, 768), (61, 47)])
def test_labels_equal_the_numpy_path(num_classes, shape):
    rng = np.random.default_rng(num_classes)
    logits = rng.normal(size=(num_classes, 96, 128)).astype(np.float32)
    proba = torch.softmax(torch.from_numpy(logits), 0).numpy()
    labels = labels_from_proba(proba, shape)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, _numpy_labels(proba, shape))
    np.testing.assert_array_equal(labels_from_proba(torch.from_numpy(proba), shape), labels)  # a tensor, on the CPU


@pytest.mark.parametrize("num_classes", [2, 5])
def test_ties_go_to_the_first_class(num_classes):
    """Probabilities on a coarse grid tie often (before and after resizing); NumPy picks the first maximum."""
    rng = np.random.default_rng(0)
    proba = rng.integers(0, 3, size=(num_classes, 12, 16)).astype(np.float32) / 4
    for shape in [(12, 16), (36, 48)]:
        expected = _numpy_labels(proba, shape)
        ties = (resize_proba(proba, shape) == resize_proba(proba, shape).max(0)).sum(0) > 1
        assert ties.mean() > 0.05  # the case is really exercised
        np.testing.assert_array_equal(labels_from_proba(proba, shape), expected)
    np.testing.assert_array_equal(labels_from_proba(np.full((num_classes, 4, 4), 0.5, np.float32), (8, 8)), 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (none on this machine)")
def test_labels_on_cuda_equal_the_cpu_path():
    proba = torch.softmax(torch.randn(12, 96, 128), 0)
    np.testing.assert_array_equal(labels_from_proba(proba.cuda(), (576, 768)), _numpy_labels(proba.numpy(), (576, 768)))


@pytest.fixture(scope="module")
def data():
    return build_dataset("synthetic", options={"num_images": 8, "size": (64, 48), "seed": 3})


@pytest.mark.parametrize("spec", ["otsu", "unet", "unet+crf", "pixel-rf+morph"])
def test_predict_is_the_argmax_of_predict_proba(spec, data):
    """Every method's labels (now from ``infer``) equal today's: the argmax of its full-resolution probabilities."""
    method = build_method(spec, 2, work_size=(32, 24), quick=True)
    if not method.prepare_untrained() or not method.fitted:
        method.fit(data.subset(data.ids()[:6]))
    image = data[data.ids()[7]].image
    prediction = method.infer(image)
    proba = method.predict_proba(image)
    np.testing.assert_array_equal(prediction.labels, proba.argmax(0))
    np.testing.assert_array_equal(method.predict(image), prediction.labels)
    np.testing.assert_array_equal(prediction.proba(), proba)  # computed on request, the same probabilities
    assert prediction.model_ms > 0 and prediction.overhead_ms > 0


class _FakeClock:
    """perf_counter's stand-in: time moves only when a method "works" (``work``), so the split is exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self, device: str | None = None) -> float:
        return self.now

    def work(self, seconds: float) -> None:
        self.now += seconds


class _SlowBox(Method):
    """30 ms of work on the fake clock at the working size; nothing else (registered only inside its test)."""

    name = "test-slow-box"
    needs_training = False
    clock: _FakeClock

    def _fit(self, train, val):
        pass

    def _predict_proba(self, image):
        self.clock.work(0.030)
        return np.full((self.num_classes, *image.shape[:2]), 1 / self.num_classes, np.float32)


def test_latency_split_charges_the_method_and_the_harness(monkeypatch):
    """The method's work goes to ``model_ms``, none of it to ``overhead_ms``; checked on a fake clock, so the
    harness's real resizes (no time on it) cannot blur the split and a loaded machine cannot fail the test."""
    fake = _FakeClock()
    monkeypatch.setattr(latency_module, "clock", fake)
    monkeypatch.setattr(_SlowBox, "clock", fake, raising=False)
    with METHODS.temporarily("test-slow-box", _SlowBox):
        method = build_method("test-slow-box", 2, work_size=(32, 24))
        prediction = method.infer(np.zeros((576, 768, 3), np.uint8))
        assert prediction.model_ms == pytest.approx(30) and prediction.overhead_ms == 0
        table = method_latency_table(["test-slow-box"], [(48, 40)], warmup=1, repeats=3, log=lambda s: None)
        row = table.iloc[0]
        assert row["model_ms_p50"] == pytest.approx(30) and row["overhead_ms_p50"] == 0
        assert row["latency_ms_p50"] == pytest.approx(30)


def test_recorded_threads_are_the_threads_that_ran(data, monkeypatch):
    """A forest predicts with the configured threads (not every core), BLAS/OpenMP pools follow too."""
    seen = []
    original = RandomForestClassifier.predict_proba

    def spy(self, x):
        seen.append((self.n_jobs, {p["user_api"]: p["num_threads"] for p in threadpool_info()}))
        return original(self, x)

    monkeypatch.setattr(RandomForestClassifier, "predict_proba", spy)
    before = torch.get_num_threads()
    try:
        method = build_method("pixel-rf", 2, work_size=(32, 24), quick=True)
        method.fit(data.subset(data.ids()[:6]))
        with configured_threads(1) as threads:
            method.predict(data[data.ids()[7]].image)
        assert threads == 1
        n_jobs, pools = seen[-1]
        assert n_jobs == 1 and all(n == 1 for n in pools.values()), pools
        table = method_latency_table(["pixel-rf"], [(48, 40)], warmup=1, repeats=1, threads=1, log=lambda s: None)
        assert table["threads"].iloc[0] == 1 and seen[-1][0] == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the resident-set part reads /proc")
def test_memory_probe_never_reads_zero_for_an_allocation():
    """Allocators keep freed memory, so the resident set stops growing after the first time; the probe still
    sees each 8 MiB array."""
    for _ in range(3):
        with MemoryProbe("cpu") as memory:
            a = np.ones(2**20)  # 8 MiB
            del a
        assert 7.5 < memory.peak_mb < 200
    table = method_latency_table(["otsu"], [(256, 256)], warmup=1, repeats=1, log=lambda s: None)
    assert table["peak_mem_mb"].iloc[0] > 0.1  # the resized image, probabilities and labels, at least


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the malloc sampler needs glibc")
def test_memory_probe_sees_torch_cpu_tensors():
    """Torch's CPU tensors are invisible to tracemalloc, and the resident set stops growing once the allocator
    holds memory (here: after a forward at 512x512); the sampled malloc peak still sees a forward at 256x256.
    Without the sampler this read 0.19 MiB (the image and label arrays), with it 12.8 MiB."""
    image = np.zeros((256, 256, 3), np.uint8)
    large = build_method("fcn8s", 2, work_size=(512, 512))
    large.prepare_untrained()
    large.infer(np.zeros((512, 512, 3), np.uint8))
    method = build_method("fcn8s", 2, work_size=(256, 256))
    method.prepare_untrained()
    method.infer(image)
    with MemoryProbe("cpu") as memory:
        method.infer(image)
    assert memory.peak_mb > 2.0


def test_unet_flops_scale_with_pixels():
    """A fully convolutional net: 4x the pixels, 4x the FLOPs; the parameter count does not change."""
    method = build_method("unet", 2, work_size=(256, 256))
    method.prepare_untrained()
    small = method.cost((256, 256))
    method_large = build_method("unet", 2, work_size=(512, 512))
    method_large.prepare_untrained()
    large = method_large.cost((512, 512))
    assert small["flops"] > 1e9
    assert large["flops"] / small["flops"] == pytest.approx(4, rel=0.05)
    assert large["params"] == small["params"] == sum(p.numel() for p in method.model.parameters())
    assert build_method("otsu", 2).cost((64, 64)) == {}


def test_flops_count_a_hand_computed_network():
    """One 3x3 convolution, 3 -> 2 channels, on 8x8: 2 * (3 * 9) * 2 * 64 FLOPs (a multiply-add is 2)."""

    class OneConv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 3, padding=1, bias=False)

        def forward(self, x):
            return self.conv(x)

    method = build_method("unet", 2, work_size=(8, 8))
    method.prepare_untrained()
    method.model = OneConv().eval()
    assert method.cost((8, 8)) == {"flops": 2 * 27 * 2 * 64, "params": 54}


def test_roofline_bound_is_the_slower_of_compute_and_memory():
    h200 = accelerator("H200")
    # compute-bound: 1 TFLOP takes at least 1e12 / 989e12 s
    assert roofline_ms(h200, flops=1e12, params=0, batch=1, pixels=1, num_classes=2) == pytest.approx(1e3 / 989)
    # memory-bound: 1e9 bf16 weights (2 GB) and nothing to compute: 2e9 B / 4.8e12 B/s
    assert roofline_ms(h200, flops=0, params=1e9, batch=1, pixels=0, num_classes=2) == pytest.approx(2e3 / 4.8e3)
    with pytest.raises(ValueError, match="known: h200"):
        accelerator("tpu9")
    assert set(ACCELERATORS) >= {"h200", "h100"}


def test_latency_cli_batches_roofline_and_throughput_figure(tmp_path):
    out = tmp_path / "lat"
    code = main(["latency", "--methods", "unet,otsu", "--sizes", "48x40", "--repeats", "1", "--warmup", "1",
                 "--batch", "1,2", "--threads", "1", "--roofline", "h200", "--out", str(out)])
    assert code == 0
    table = pd.read_csv(out / "latency.csv")
    assert sorted(zip(table["method"], table["batch_size"])) == [("otsu", 1), ("otsu", 2), ("unet", 1), ("unet", 2)]
    unet = table[table["method"] == "unet"]
    assert (unet["flops"] > 0).all() and (unet["roofline_ms"] > 0).all() and unet["params"].notna().all()
    assert table[table["method"] == "otsu"]["flops"].isna().all()
    assert (out / "throughput.png").is_file()
    text = (out / "latency.md").read_text()
    assert "overhead ms" in text and "GFLOPs" in text and "unet (batch 2)" in text
    assert main(["latency", "--methods", "otsu", "--batch", "1,0", "--out", str(tmp_path / "x")]) == 2
    assert main(["latency", "--methods", "otsu", "--roofline", "tpu9", "--out", str(tmp_path / "y")]) == 2


def test_pipeline_honours_the_method_contract(tmp_path, data):
    tiling = Tiling(32, overlap=8)
    pipe = build_method("unet+crf", 2, quick=True, tiling=tiling, artifacts_dir=tmp_path,
                        options={"unet": {"device": "cpu", "progress": False}})
    assert isinstance(pipe, Pipeline)
    base = pipe.base
    assert pipe.opts is base.opts and pipe.device == base.device == torch.device("cpu")
    assert pipe.artifacts_dir == base.artifacts_dir == tmp_path and pipe.tiling is base.tiling is tiling
    assert pipe.work_size == base.work_size and pipe.num_classes == 2
    # A pipeline around an already-fitted base fits only its stages (fit_stages; fit would fit the base too).
    base = build_method("otsu", 2)
    base.fit(data.subset(data.ids()[:6]))
    fitted = base.fitted
    calls = []
    base.fit = lambda *a, **k: calls.append(1)  # type: ignore[method-assign]
    pipe = build_method("otsu+morph", 2, base=base).fit_stages(data.subset(data.ids()[:6]))
    assert fitted and pipe.base is base and calls == [] and pipe.fitted
    assert pipe.base_method is base and build_method("otsu+morph", 2).with_base(base).base is base
    with pytest.raises(ValueError, match="not 'slic'"):
        build_method("slic+morph", 2, base=base)


def test_tta_scales_through_the_hook_for_any_method(data):
    """Not a deep method: the default hook rescales the image itself."""
    pipe = build_method("otsu+tta", 2, options={"tta": {"scales": (0.5, 1.0), "flips": ()}})
    pipe.fit(data.subset(data.ids()[:6]))
    image = data[data.ids()[7]].image
    half = pipe.base.predict_proba(resize_image(image, (24, 32)))
    expected = (resize_proba(half, image.shape[:2]) + pipe.base.predict_proba(image)) / 2
    np.testing.assert_allclose(pipe.predict_proba(image), expected, atol=1e-6)


def test_run_records_the_split_memory_and_cost(tmp_path):
    config = RunConfig(out=tmp_path / "run", datasets=["synthetic"], methods=["otsu", "unet"], quick=True,
                       dataset_options={"synthetic": {"num_images": 10, "size": (48, 40)}},
                       method_options={"unet": {"epochs": 1, "progress": False, "device": "cpu"}})
    result = run(config, progress=False)
    assert not result.failures
    summary = result.summary.set_index("method")
    per_image = result.per_image
    # the parts are timed inside the end-to-end call
    assert (per_image["model_ms"] + per_image["overhead_ms"] <= per_image["latency_ms"] * 1.001 + 0.01).all()
    assert (per_image[["model_ms", "overhead_ms"]] > 0).all().all()
    assert (summary["model_ms_p50"] > 0).all() and (summary["overhead_ms_p50"] > 0).all()
    assert (summary["peak_mem_mb"] > 0).all()
    assert summary.loc["unet", "flops"] > 0 and summary.loc["unet", "params"] > 0
    assert pd.isna(summary.loc["otsu", "flops"])
