"""The latency protocol, in one place: used by the runner and by ``segbench latency``.

Inference only: warm-up calls first (never timed: lazy initialisation, caches, cuDNN autotuning), then
``repeats`` timed calls, each wrapped in a CUDA synchronize on both sides when CUDA is in use, so a timer
measures the kernels and not only their launch. Results are the median, p95, mean and standard deviation in
milliseconds, images per second, and the peak memory of the timed calls, with everything needed to read the
figure (device name, dtype, AMP and channels-last flags, threads, image size, batch size).

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` after a reset; on CPU, the growth of the process's
peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` on Linux) above the resident set
before the warm-up, i.e. the extra memory inference needed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["synchronize", "timed_call", "summarize_ms", "LatencyResult", "measure", "MemoryProbe", "method_latency_table"]

R = TypeVar("R")


def synchronize(device: str | None = None) -> None:
    """Wait for queued CUDA work (no-op on CPU or before CUDA is initialised)."""
    if device is not None and not device.startswith("cuda"):
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed_call(fn: Callable[..., R], *args: Any, **kwargs: Any) -> tuple[R, float]:
    """Call ``fn`` and return ``(result, milliseconds)``, synchronising CUDA before and after."""
    synchronize()
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    synchronize()
    return result, (time.perf_counter() - start) * 1e3


def summarize_ms(times_ms: Sequence[float]) -> dict[str, float]:
    """``latency_ms_p50``, ``latency_ms_p95``, ``latency_ms_mean``, ``latency_ms_std`` (NaN if empty)."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        return {k: float("nan") for k in ("latency_ms_p50", "latency_ms_p95", "latency_ms_mean", "latency_ms_std")}
    return {
        "latency_ms_p50": float(np.median(t)),
        "latency_ms_p95": float(np.percentile(t, 95)),
        "latency_ms_mean": float(t.mean()),
        "latency_ms_std": float(t.std(ddof=1)) if t.size > 1 else 0.0,
    }


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class MemoryProbe:
    """Peak memory of a block of code: CUDA max allocated, or growth of the CPU peak resident set."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda") and torch.cuda.is_available()
        self.peak_mb = float("nan")

    def __enter__(self) -> "MemoryProbe":
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            try:  # "5" resets the peak resident set (VmHWM) to the current one (Linux >= 4.0)
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
            self._base = _status_kb("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        else:
            peak = _status_kb("VmHWM")
            if peak is not None and self._base is not None:
                self.peak_mb = max(0, peak - self._base) / 1024


@dataclass
class LatencyResult:
    """Timed repeats of one call and the context needed to read them."""

    times_ms: list[float]
    warmup: int
    repeats: int
    batch_size: int
    device: str
    device_name: str
    threads: int
    image_size: str = ""
    dtype: str = "float32"
    amp: bool = False
    channels_last: bool = False
    peak_mem_mb: float = float("nan")

    def row(self) -> dict[str, Any]:
        """Flat record: summary statistics, images per second, and the context (units in the names)."""
        stats = summarize_ms(self.times_ms)
        d = {k: v for k, v in asdict(self).items() if k != "times_ms"}
        return {**stats, "images_per_s": 1e3 * self.batch_size / stats["latency_ms_p50"], **d}


def measure(
    fn: Callable[[], Any],
    *,
    warmup: int = 3,
    repeats: int = 20,
    device: str = "cpu",
    batch_size: int = 1,
    **context: Any,
) -> LatencyResult:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones, under ``torch.inference_mode``.

    Args:
        fn: One inference call on already-loaded input (no decoding or training inside).
        warmup: Untimed calls first.
        repeats: Timed calls; the result holds exactly this many times.
        device: ``"cpu"`` or ``"cuda[:i]"``: decides synchronisation and the memory probe.
        batch_size: Images per call, for images per second.
        **context: Recorded with the figures: image_size, dtype, amp, channels_last.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup={warmup} must be >= 0 and repeats={repeats} >= 1")
    from segbench.run.environment import device_name

    times = []
    # The probe spans the warm-up too: allocators keep what warm-up freed, so a probe started after it
    # would miss the memory inference needs.
    with torch.inference_mode(), MemoryProbe(device) as memory:
        for _ in range(warmup):
            fn()
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times.append((time.perf_counter() - start) * 1e3)
    return LatencyResult(
        times_ms=times, warmup=warmup, repeats=repeats, batch_size=batch_size, device=device,
        device_name=device_name(device), threads=torch.get_num_threads(), peak_mem_mb=memory.peak_mb, **context,
    )


def _timing_method(spec: str, size: tuple[int, int], *, device: str, amp: bool, seed: int) -> Any:
    """A method ready to predict at ``size`` (W, H), with its default options (the architecture and model size
    that are benchmarked): untrained where it allows (deep models: random weights, which cost the same), else
    fitted on a few synthetic images of that size (a forest fitted on few pixels may be shallower, so cheaper,
    than one fitted on a real training split)."""
    from segbench.datasets import build_dataset
    from segbench.methods import METHODS, build_method, split_spec

    base_name = split_spec(spec)[0]
    options: dict[str, dict[str, Any]] = {}
    fields = {f.name for f in dataclasses.fields(METHODS.get(base_name).Options)}
    extra = {k: v for k, v in {"device": device, "amp": amp}.items() if k in fields}
    if extra:
        options[base_name] = extra
    dataset = build_dataset("synthetic", options={"num_images": 8, "size": size, "seed": seed})
    method = build_method(spec, dataset.num_classes, seed=seed, work_size=size, options=options)
    base = getattr(method, "base", method)
    if base.prepare_untrained():
        stages = getattr(method, "stages", [])
        for stage in stages:  # stages are cheap to fit, and some tune on the training images
            stage.fit(base, dataset.subset(dataset.ids()[:6]), None)
        return method, dataset, "untrained"
    method.fit(dataset.subset(dataset.ids()[:6]), dataset.subset(dataset.ids()[6:]))
    return method, dataset, "quick fit on synthetic"


def _precision(method: Any) -> dict[str, Any]:
    """Where and how a method runs: device, dtype, and whether AMP and channels-last are in effect."""
    base = getattr(method, "base", method)
    device = str(getattr(base, "device", "cpu"))
    opts = getattr(base, "opts", None)
    on_cuda = device.startswith("cuda")
    amp = bool(getattr(opts, "amp", False)) and on_cuda  # the training loop autocasts on CUDA only
    dtype = "float32"
    if amp:
        from segbench.methods.deep.device import amp_dtype

        dtype = str(amp_dtype(torch.device(device), True)).removeprefix("torch.")
    return {"device": device, "dtype": dtype, "amp": amp, "channels_last": bool(getattr(opts, "channels_last", False)) and on_cuda}


def _batched_call(method: Any, image: Any, batch_size: int) -> tuple[Callable[[], Any], str]:
    """The call to time for ``batch_size`` images, and how it batches (see ``method_latency_table``)."""
    if batch_size == 1:
        return (lambda: method.predict(image)), "none"
    if hasattr(method, "predict_proba_batch"):  # a bare deep method (a Pipeline has no batched path)
        import numpy as np

        batch = np.repeat(image[None], batch_size, axis=0)
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
    batch_size: int = 1,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Any:
    """Latency of each method's ``predict`` at each input size (W, H), working at that size.

    With ``batch_size > 1`` a call handles that many images: a deep method without stages runs its network
    once on the batch (``batching="network"``: throughput, probabilities only); anything else predicts the
    images one after another (``batching="sequential"``), so its images per second stay comparable.
    A method that fails is recorded with its error; the others still run.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    import pandas as pd

    rows = []
    for spec in methods:
        for size in sizes:
            head = {"method": spec, "image_size": f"{size[0]}x{size[1]}"}
            try:
                method, dataset, prepared = _timing_method(spec, size, device=device, amp=amp, seed=seed)
                image = dataset[dataset.ids()[-1]].image
                call, batching = _batched_call(method, image, batch_size)
                result = measure(call, warmup=warmup, repeats=repeats, batch_size=batch_size,
                                 image_size=head["image_size"], **_precision(method))
                rows.append({**head, "status": "ok", "error": "", "family": method.family, "prepared": prepared,
                             "batching": batching, **result.row()})
                log(f"{spec:>24} {head['image_size']:>9}: p50 {rows[-1]['latency_ms_p50']:9.2f} ms")
            except Exception as exc:  # one method's failure must not lose the others' figures
                rows.append({**head, "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
                log(f"{spec:>24} {head['image_size']:>9}: FAILED {rows[-1]['error']}")
    table = pd.DataFrame(rows)
    table["image_size"] = table["image_size"].astype(str)
    return table
