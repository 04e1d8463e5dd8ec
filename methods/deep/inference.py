"""Running a trained network: input normalisation, softmax probabilities, and the validation score.

Networks map ``(N, 3, H, W)`` normalised images to ``(N, C, H, W)`` logits. Inputs are normalised with the
training split's per-channel mean and std (stored with the checkpoint, so inference normalises the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segbench.datasets.base import IGNORE_INDEX, Sample
from segbench.methods.deep.device import amp_dtype, autocast
from segbench.methods.tuning import SelectionScore

__all__ = ["Normalization", "prepare", "predict_proba_tensor", "predict_proba_batch", "softmax_batch", "evaluate_model"]


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``mean`` and ``std`` of the training images, in 0..255 units."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> "Normalization":
        total = np.zeros(3)
        total_sq = np.zeros(3)
        count = 0
        for s in samples:
            px = s.image.reshape(-1, 3).astype(np.float64)
            total += px.sum(0)
            total_sq += (px**2).sum(0)
            count += px.shape[0]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 1.0))  # >= 1 grey level: a flat channel stays finite
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std))  # type: ignore[arg-type]

    def apply(self, images: Tensor) -> Tensor:
        """``(N, 3, H, W)`` float in 0..255 -> normalised float."""
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        return (images - mean) / std


def prepare(images: Tensor, norm: Normalization, device: torch.device, channels_last: bool) -> Tensor:
    """``(N, 3, H, W)`` images in 0..255 -> the network's input on ``device`` (normalised; channels-last memory if
    asked: on CUDA, and on CPU while training in bfloat16)."""
    x = norm.apply(images.to(device, non_blocking=True).float())
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@torch.inference_mode()
def predict_proba_tensor(
    model: nn.Module,
    image: np.ndarray,
    norm: Normalization,
    *,
    device: torch.device,
    amp: bool = True,
    channels_last: bool = True,
) -> np.ndarray:
    """Softmax probabilities of one image.

    Args:
        model: Maps ``(N, 3, H, W)`` to ``(N, C, H, W)`` logits; put in eval mode here.
        image: ``(H, W, 3) uint8``.
        norm: The normalisation the model was trained with.
        device: Where the model is.
        amp: Autocast on CUDA.
        channels_last: Channels-last input on CUDA.

    Returns:
        ``(C, H, W) float32``, summing to 1 over classes.
    """
    return predict_proba_batch(model, image[None], norm, device=device, amp=amp, channels_last=channels_last)[0]


@torch.inference_mode()
def predict_proba_batch(
    model: nn.Module,
    images: np.ndarray,
    norm: Normalization,
    *,
    device: torch.device,
    amp: bool = True,
    channels_last: bool = True,
) -> np.ndarray:
    """``(N, H, W, 3) uint8`` -> ``(N, C, H, W) float32`` softmax probabilities in one forward pass."""
    return softmax_batch(model, images, norm, device=device, amp=amp, channels_last=channels_last).cpu().numpy()


@torch.inference_mode()
def softmax_batch(
    model: nn.Module,
    images: np.ndarray,
    norm: Normalization,
    *,
    device: torch.device,
    amp: bool = True,
    channels_last: bool = True,
) -> Tensor:
    """``predict_proba_batch`` leaving the ``(N, C, H, W) float32`` probabilities on ``device``."""
    model.eval()
    # Channels-last on CUDA only: CPU inference runs in float32 on contiguous memory.
    x = prepare(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))), norm, device,
                channels_last and device.type == "cuda")
    with autocast(device, amp_dtype(device, amp)):
        logits = model(x)
    return F.softmax(logits.float(), dim=1)


def evaluate_model(
    model: nn.Module,
    samples: Sequence[Sample],
    norm: Normalization,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    device: torch.device,
    amp: bool = True,
    channels_last: bool = True,
) -> float:
    """The selection score (``segbench.methods.tuning``: dataset-level mean IoU) of ``model`` on ``samples``."""
    meter = SelectionScore(num_classes, ignore_index=ignore_index)
    for s in samples:
        proba = predict_proba_tensor(model, s.image, norm, device=device, amp=amp, channels_last=channels_last)
        meter.update(s.mask, proba.argmax(0), ignore_mask=s.ignore)
    return meter.value()
