"""One training epoch of every deep method in fp32 and bf16 (pytest-benchmark): 16 synthetic images at 256x192,
batch 8, one thread, the methods' default architectures, through the shared loop (``DeepMethod._train``), so
the timed work is what a cell's training does per epoch (augmentation on tensors, forward, backward, AdamW).

``bf16`` is autocast to bfloat16 with channels-last memory on CPUs with native bfloat16 (AVX512-BF16, AMX); on
other CPUs it runs in float32 (``precision`` says which ran) and the two rows time the same thing. Under
``--benchmark-enable -s`` the module prints each method's fp32 / bf16 time ratio; ``make bench-check`` fails when
an epoch is slower than the saved baseline. Each timed epoch must also train: finite loss, weights changed.
"""

from __future__ import annotations

import math

import pytest
import torch

from segbench.datasets import build_dataset
from segbench.methods import METHODS, build_method, core_methods
from segbench.methods.deep.device import seed_everything

SIZE = (256, 192)
IMAGES, BATCH = 16, 8
DEEP = [name for name in core_methods() if METHODS.get(name).family == "deep"]  # the zoo: scripts/zoo_costs.py
RESULTS: dict[tuple[str, str], float] = {}


@pytest.fixture(scope="module")
def samples():
    data = build_dataset("synthetic", options={"num_images": IMAGES, "size": SIZE, "seed": 3})
    return list(data.subset(data.ids()))


def _epoch(name: str, precision: str, samples):
    """A fresh network, then a callable that trains it for one epoch."""
    options = {"device": "cpu", "precision": precision, "epochs": 1, "batch_size": BATCH, "patience": None,
               "progress": False, "warmup_epochs": 0.0}
    method = build_method(name, 2, work_size=SIZE, options={name: options})
    work = method._to_work(samples)
    seed_everything(0)
    model = method.build_model()
    before = [p.detach().clone() for p in model.parameters()]
    return method, model, work, before


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", DEEP)
def test_training_epoch(benchmark, samples, name, precision):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        state = {}

        def setup():
            state["method"], state["model"], work, state["before"] = _epoch(name, precision, samples)
            return (state["model"], work, None), {}

        benchmark.group = f"one training epoch, {IMAGES} images {SIZE[0]}x{SIZE[1]}, batch {BATCH}"
        result = benchmark.pedantic(lambda model, work, val: state["method"]._train(model, work, val), setup=setup,
                                    rounds=3 if benchmark.enabled else 1, warmup_rounds=0)
    finally:
        torch.set_num_threads(threads)
    assert result.epochs_run == 1 and math.isfinite(result.history[0]["loss"])
    assert result.precision in (precision, "fp32")  # fp32 where this CPU has no native bfloat16
    changed = any(not torch.equal(a, b) for a, b in zip(state["before"], state["model"].parameters()))
    assert changed, f"{name}: one epoch left every weight as it was"
    if benchmark.stats is not None:  # None under --benchmark-disable (the default test run)
        RESULTS[(name, precision)] = benchmark.stats.stats.median
        if precision == "bf16" and (name, "fp32") in RESULTS:
            fp32, bf16 = RESULTS[(name, "fp32")], RESULTS[(name, "bf16")]
            print(f"\n{name}: fp32 {fp32:.2f} s, {result.precision} {bf16:.2f} s per epoch: {fp32 / bf16:.2f}x")
