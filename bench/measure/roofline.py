"""A lower bound on a network's latency on a named accelerator, from its FLOPs and the bytes it must move.

``latency >= max(flops / peak FLOP/s, bytes / memory bandwidth)`` (the roofline model, Williams et al.
2009). FLOPs are counted by ``DeepMethod.cost`` (``torch.utils.flop_counter.FlopCounterMode``); the bytes
are the least any implementation must move through memory: the weights once per batch, each image's input
(3 channels) and output probabilities (C channels), all in bf16. Activations are assumed to stay on chip,
so the bound is optimistic: it says how far a GPU figure could go, never what it will be.

Peaks are dense (no 2:4 sparsity) bf16 tensor-core throughput and HBM bandwidth of the SXM parts, from the
vendor datasheets:

- H200: 1,979 TFLOP/s bf16 *with sparsity* -> 989 TFLOP/s dense; 4.8 TB/s HBM3e
  (NVIDIA H200 Tensor Core GPU datasheet, nvidia.com/en-us/data-center/h200/).
- H100: 1,979 TFLOP/s bf16 with sparsity -> 989 TFLOP/s dense; 3.35 TB/s HBM3
  (NVIDIA H100 Tensor Core GPU datasheet, nvidia.com/en-us/data-center/h100/).
- A100 80GB: 312 TFLOP/s bf16 dense; 2,039 GB/s HBM2e (NVIDIA A100 datasheet, nvidia.com/en-us/data-center/a100/).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Accelerator", "ACCELERATORS", "accelerator", "roofline_ms"]

#: bf16: two bytes per value.
BYTES_PER_VALUE = 2


@dataclass(frozen=True)
class Accelerator:
    """Peak dense bf16 throughput (FLOP/s) and memory bandwidth (bytes/s) of one device."""

    name: str
    peak_flops: float
    bandwidth: float


ACCELERATORS: dict[str, Accelerator] = {
    "h200": Accelerator("NVIDIA H200 SXM", 989e12, 4.8e12),
    "h100": Accelerator("NVIDIA H100 SXM", 989e12, 3.35e12),
    "a100": Accelerator("NVIDIA A100 SXM 80GB", 312e12, 2.039e12),
}


def accelerator(name: str) -> Accelerator:
    """The accelerator called ``name`` (case-insensitive); a clear error lists the known ones."""
    try:
        return ACCELERATORS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown accelerator {name!r} for --roofline; known: {', '.join(ACCELERATORS)}") from None


def roofline_ms(
    device: Accelerator, *, flops: float, params: float, batch: int, pixels: int, num_classes: int
) -> float:
    """Lower bound in ms on one call of ``batch`` images of ``pixels`` pixels each at the working size.

    Args:
        device: The accelerator.
        flops: FLOPs of one image.
        params: Learned weights (read once per call).
        batch: Images per call.
        pixels: Pixels of one image at the working size.
        num_classes: Output channels.
    """
    moved = BYTES_PER_VALUE * (params + batch * pixels * (3 + num_classes))
    return 1e3 * max(batch * flops / device.peak_flops, moved / device.bandwidth)
