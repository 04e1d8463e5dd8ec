"""Training views of image-to-mask samples: in-memory tensors, joint image/mask augmentation, seeded batches.

Augmentation applied to image and mask together: random scale then a random crop (padded with the ignore
label where the scaled image is smaller), horizontal and vertical flips, colour jitter (brightness, contrast,
saturation) per sample, and one 90-degree rotation per batch (per batch, so a non-square crop keeps one shape
within the batch). Every random draw comes from one seeded ``torch.Generator``, so order and augmentation
are reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from segbench.datasets.base import Sample

__all__ = ["AugmentOptions", "to_tensors", "augment", "augmented_batches"]


class AugmentOptions(Protocol):
    """The options augmentation reads (``TrainConfig`` has them all)."""

    batch_size: int
    scale_range: tuple[float, float]
    hflip: bool
    vflip: bool
    rot90: bool
    color_jitter: float


def to_tensors(samples: Sequence[Sample], ignore_index: int) -> list[tuple[Tensor, Tensor]]:
    """``(3, H, W) uint8`` image and ``(H, W) int64`` mask per sample; the ignore mask folded into the labels."""
    out = []
    for s in samples:
        mask = s.mask.astype(np.int64)
        if s.ignore is not None:
            mask = np.where(s.ignore, ignore_index, mask)
        out.append((torch.from_numpy(np.ascontiguousarray(s.image.transpose(2, 0, 1))), torch.from_numpy(mask)))
    return out


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def augment(
    image: Tensor,
    mask: Tensor,
    *,
    crop: tuple[int, int],
    config: AugmentOptions,
    gen: torch.Generator,
    fill: Tensor,
    ignore_index: int,
) -> tuple[Tensor, Tensor]:
    """One training view of a sample.

    Args:
        image: ``(3, H, W) uint8``.
        mask: ``(H, W) int64``.
        crop: Output ``(h, w)``.
        config: Which augmentations to apply and how strongly.
        gen: The source of every random draw.
        fill: ``(3,)`` float image value for padding (the mean colour, which normalises to 0).
        ignore_index: Label of padded pixels.

    Returns:
        ``(3, h, w) float32`` in 0..255 and ``(h, w) int64``.
    """
    img = image.float()
    lo, hi = config.scale_range
    scale = _uniform(gen, lo, hi) if hi > lo else lo
    if scale != 1.0:
        size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[2] * scale)))
        img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
        # "nearest-exact" samples pixel centres like the bilinear image does; plain "nearest" is shifted.
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
    ch, cw = crop
    h, w = img.shape[1:]
    if h < ch or w < cw:  # pad the bottom/right; padded pixels are ignored by every loss
        ph, pw = max(0, ch - h), max(0, cw - w)
        padded = fill.view(3, 1, 1).expand(3, h + ph, w + pw).clone()
        padded[:, :h, :w] = img
        img = padded
        mask = F.pad(mask, (0, pw, 0, ph), value=ignore_index)
        h, w = img.shape[1:]
    top = int(torch.randint(0, h - ch + 1, (), generator=gen))
    left = int(torch.randint(0, w - cw + 1, (), generator=gen))
    img = img[:, top : top + ch, left : left + cw]
    mask = mask[top : top + ch, left : left + cw]
    if config.hflip and torch.rand((), generator=gen) < 0.5:
        img, mask = img.flip(-1), mask.flip(-1)
    if config.vflip and torch.rand((), generator=gen) < 0.5:
        img, mask = img.flip(-2), mask.flip(-2)
    j = config.color_jitter
    if j > 0:
        brightness, contrast, saturation = (_uniform(gen, 1 - j, 1 + j) for _ in range(3))
        img = img * brightness
        img = (img - img.mean()) * contrast + img.mean()
        grey = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
        img = (img - grey) * saturation + grey
        img = img.clamp(0.0, 255.0)
    return img.contiguous(), mask.contiguous()


def augmented_batches(
    data: list[tuple[Tensor, Tensor]],
    *,
    crop: tuple[int, int],
    config: AugmentOptions,
    gen: torch.Generator,
    fill: Tensor,
    ignore_index: int,
) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of augmented ``(B, 3, h, w) float`` / ``(B, h, w) int64`` batches in a seeded random order."""
    n = len(data)
    order = torch.randperm(n, generator=gen).tolist()
    bs = min(config.batch_size, n)
    for start in range(0, n - bs + 1, bs):  # drop the incomplete tail: BatchNorm needs more than one image
        views = [augment(*data[i], crop=crop, config=config, gen=gen, fill=fill, ignore_index=ignore_index) for i in order[start : start + bs]]
        images = torch.stack([v[0] for v in views])
        masks = torch.stack([v[1] for v in views])
        if config.rot90:
            k = int(torch.randint(0, 4, (), generator=gen))
            if k:
                images, masks = torch.rot90(images, k, dims=(2, 3)), torch.rot90(masks, k, dims=(1, 2))
        yield images.contiguous(), masks.contiguous()
