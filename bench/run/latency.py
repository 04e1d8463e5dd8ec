"""``segbench latency``: fit (or prepare) each method and time its inference at given input sizes, by the
protocol of ``segbench.measure.latency`` (the timing primitives); one table row per method, size and batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from segbench.datasets import build_dataset
from segbench.datasets.transforms import resize_image, work_shape
from segbench.measure.latency import configured_threads, measure, summarize_split
from segbench.measure.roofline import accelerator, roofline_ms
from segbench.methods import METHODS, build_method, split_spec
from segbench.methods.deep.device import amp_dtype

__all__ = ["method_latency_table"]


def _timing_method(spec: str, size: tuple[int, int], *, device: str, amp: bool, seed: int) -> Any:
    """A method ready to predict at ``size`` (W, H), with its default options (the architecture and model size
    that are benchmarked): untrained where it allows (deep models: random weights, which cost the same), else
    fitted on a few synthetic images of that size (a forest fitted on few pixels may be shallower, so cheaper,
    than one fitted on a real training split). Stages are fitted either way (cheap; some tune on the images)."""

    base_name = split_spec(spec)[0]
    options: dict[str, dict[str, Any]] = {}
    fields = {f.name for f in dataclasses.fields(METHODS.get(base_name).Options)}
    extra = {k: v for k, v in {"device": device, "precision": "bf16" if amp else "fp32"}.items() if k in fields}
    if extra:
        options[base_name] = extra
    dataset = build_dataset("synthetic", options={"num_images": 8, "size": size, "seed": seed})
    method = build_method(spec, dataset.num_classes, seed=seed, work_size=size, options=options)
    train, val = dataset.subset(dataset.ids()[:6]), dataset.subset(dataset.ids()[6:])
    if method.prepare_untrained():
        prepared = "untrained"
        if not method.fitted:  # a pipeline around a prepared base fits only its stages (fit would train the base)
            method.fit_stages(train, val)
    else:
        prepared = "quick fit on synthetic"
        method.fit(train, val)
    return method, dataset, prepared


def _precision(method: Any) -> dict[str, Any]:
    """Where and how a method runs: device, dtype, and whether AMP and channels-last are in effect."""
    device = str(method.device)
    on_cuda = device.startswith("cuda")
    amp = getattr(method.opts, "precision", "fp32") != "fp32" and on_cuda  # inference autocasts on CUDA only
    dtype = "float32"
    if amp:

        dtype = str(amp_dtype(torch.device(device), True)).removeprefix("torch.")
    return {"device": device, "dtype": dtype, "amp": amp, "channels_last": bool(getattr(method.opts, "channels_last", False)) and on_cuda}


def _batched_call(method: Any, image: Any, batch_size: int) -> tuple[Callable[[], Any], str]:
    """The call to time for ``batch_size`` images (``batch_size > 1``), and how it batches (see ``method_latency_table``)."""
    if hasattr(method, "predict_proba_batch"):  # a bare deep method (a Pipeline has no batched path)
        small = resize_image(image, work_shape(*image.shape[:2], method.work_size))
        batch = np.repeat(small[None], batch_size, axis=0)
        return (lambda: method.predict_proba_batch(batch)), "network"
    return (lambda: [method.predict(image) for _ in range(batch_size)]), "sequential"


def method_latency_table(
    methods: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    *,
    device: str = "cpu",
    amp: bool = False,
    warmup: int = 3,
    repeats: int = 10,
    batch_sizes: Sequence[int] = (1,),
    threads: int | None = None,
    roofline: str | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Any:
    """Latency of each method's prediction at each input size (W, H), working at that size.

    At batch size 1 a call is ``Method.infer`` on one image: ``latency_ms_*`` end to end, split into
    ``model_ms_*`` (the method's own work) and ``overhead_ms_*`` (conversion, resizes, argmax). With a batch
    size above 1 a call handles that many images: a deep method without stages runs its network once on the
    batch (``batching="network"``: throughput, probabilities only); anything else predicts the images one
    after another (``batching="sequential"``), so its images per second stay comparable. Deep methods also
    get ``params`` and ``flops`` (one image at the working size), and with ``roofline`` (an accelerator name,
    ``segbench.measure.roofline``) ``roofline_ms``, a lower bound on the call's latency there.
    A method that fails is recorded with its error; the others still run.
    """
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch sizes must be >= 1, got {list(batch_sizes)}")

    peak = accelerator(roofline) if roofline else None
    rows = []
    with configured_threads(threads):
        for spec in methods:
            for size in sizes:
                head = {"method": spec, "image_size": f"{size[0]}x{size[1]}"}
                try:
                    method, dataset, prepared = _timing_method(spec, size, device=device, amp=amp, seed=seed)
                    image = dataset[dataset.ids()[-1]].image
                    cost = method.cost(image.shape[:2])
                except Exception as exc:  # one method's failure must not lose the others' figures
                    rows.append({**head, "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
                    log(f"{spec:>24} {head['image_size']:>9}: FAILED {rows[-1]['error']}")
                    continue
                for batch_size in batch_sizes:
                    try:
                        row = _latency_row(method, image, batch_size, warmup=warmup, repeats=repeats, context=head)
                        if peak is not None and cost:
                            pixels = int(np.prod(work_shape(*image.shape[:2], method.work_size)))
                            row["roofline_device"] = peak.name
                            row["roofline_ms"] = roofline_ms(peak, flops=cost["flops"], params=cost["params"], batch=batch_size,
                                                             pixels=pixels, num_classes=method.num_classes)
                        rows.append({**head, "status": "ok", "error": "", "family": method.family, "prepared": prepared,
                                     **cost, **row})
                        log(f"{spec:>24} {head['image_size']:>9} batch {batch_size:>3}: p50 {row['latency_ms_p50']:9.2f} ms")
                    except Exception as exc:
                        rows.append({**head, "batch_size": batch_size, "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
                        log(f"{spec:>24} {head['image_size']:>9}: FAILED {rows[-1]['error']}")
    table = pd.DataFrame(rows)
    table["image_size"] = table["image_size"].astype(str)
    return table


def _latency_row(method: Any, image: np.ndarray, batch_size: int, *, warmup: int, repeats: int,
                 context: dict[str, Any]) -> dict[str, Any]:
    """One timed configuration: the ``LatencyResult`` row, with the model/overhead split at batch size 1."""
    if batch_size == 1:
        parts: list[tuple[float, float]] = []  # (model_ms, overhead_ms) of each call; not the predictions themselves

        def call() -> None:
            prediction = method.infer(image)
            parts.append((prediction.model_ms, prediction.overhead_ms))

        result = measure(call, warmup=warmup, repeats=repeats, image_size=context["image_size"], **_precision(method))
        model_ms, overhead_ms = zip(*parts[warmup:])
        split = summarize_split(result.times_ms, model_ms, overhead_ms)
        return {**result.row(), **split, "batching": "none"}
    call, batching = _batched_call(method, image, batch_size)
    result = measure(call, warmup=warmup, repeats=repeats, batch_size=batch_size, image_size=context["image_size"],
                     **_precision(method))
    return {**result.row(), "batching": batching}
