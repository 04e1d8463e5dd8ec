"""The sliding-window loop against its converted (fully convolutional) network: one 256x256 image, stride 4,
window 32, the same random weights (a network costs the same trained or not), one timed run each.

``pytest tests/benchmarks/test_bench_sliding.py --benchmark-enable -s`` prints the speed-up; run as a script
(``python tests/benchmarks/test_bench_sliding.py``) it prints both times and the ratio without pytest.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from segbench.methods import build_method

SIZE = 256
RESULTS: dict[str, float] = {}


def _method():
    method = build_method("sliding-window", 2, work_size=SIZE, options={"sliding-window": {"device": "cpu", "stride": 4, "window": 32}})
    method.prepare_untrained()
    return method


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def reference():
    """The loop's heatmap, computed once outside the timing: what the converted network must reproduce."""
    method, image = _method(), _image()
    return method, image, method.heatmap(image, one_pass=False)


@pytest.mark.parametrize("one_pass", [False, True], ids=["loop", "converted"])
def test_heatmap_256_stride4(benchmark, reference, one_pass):
    method, image, expected = reference
    benchmark.group = "sliding window 256x256 stride 4"
    heat = benchmark.pedantic(method.heatmap, args=(image,), kwargs={"one_pass": one_pass}, rounds=1, iterations=1, warmup_rounds=1)
    assert heat.shape == (2, 65, 65)
    assert np.abs(heat - expected).max() < 1e-4  # the converted network must give the loop's heatmap
    assert np.abs(heat).max() > 100 * 1e-4  # not vacuous: real scores, not (near) zeros
    if benchmark.stats is not None:  # None under --benchmark-disable (the default test run)
        RESULTS["converted" if one_pass else "loop"] = benchmark.stats.stats.median
    if len(RESULTS) == 2:
        print(f"\nloop {RESULTS['loop'] * 1e3:.1f} ms, converted {RESULTS['converted'] * 1e3:.1f} ms: "
              f"{RESULTS['loop'] / RESULTS['converted']:.0f}x")


if __name__ == "__main__":
    method, image = _method(), _image()
    times = {}
    for one_pass in (False, True):
        method.heatmap(image, one_pass=one_pass)  # warm-up
        start = time.perf_counter()
        heats = method.heatmap(image, one_pass=one_pass)
        times[one_pass] = time.perf_counter() - start
        if one_pass:
            diff = np.abs(heats - loop_heat).max()
        else:
            loop_heat = heats
    print(f"loop {times[False] * 1e3:.1f} ms, converted {times[True] * 1e3:.1f} ms: {times[False] / times[True]:.0f}x "
          f"(max |loop - converted| = {diff:.2e})")
