"""Segmentation losses, chosen by name, and weighted sums of them (``build_loss("ce+dice")``).

Every loss maps ``logits (N, C, H, W)`` and integer ``target (N, H, W)`` to a scalar. Pixels whose target
equals ``ignore_index`` count for nothing. Models always emit one channel per class (C = 2 for binary
masks), so each loss works unchanged for binary and multi-class data:

* ``ce``: softmax cross-entropy, mean over valid pixels.
* ``bce``: binary cross-entropy of each channel's sigmoid against the one-hot target (one-vs-rest),
  mean over channels and valid pixels.
* ``focal``: softmax focal loss ``-(1 - p_t)^gamma log p_t`` (Lin et al. 2017), mean over valid pixels.
* ``dice``: ``1 - 2 TP / (2 TP + FP + FN)`` on softmax probabilities, per class over the whole batch,
  averaged over the classes present in the batch's target (the convention of segmentation_models.pytorch:
  a class absent from the target is left out, so it neither rewards nor punishes).
* ``tversky``: ``1 - TP / (TP + alpha FP + beta FN)`` with ``alpha = 0.3, beta = 0.7`` (Salehi et al.
  2017), which weighs missed pixels over false alarms; ``alpha = beta = 0.5`` is the Dice loss.
* ``focal_tversky``: ``(1 - TI)^gamma`` per class with ``gamma = 0.75`` (Abraham & Khan 2019), which
  focuses on classes the model still segments badly.

A spec joins terms with ``+``, each optionally weighted: ``"ce+dice"``, ``"0.5*bce+dice"``,
``"ce+0.5*focal_tversky"``. Hyphens and underscores are interchangeable (``focal-tversky``).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segbench.datasets.base import IGNORE_INDEX

__all__ = [
    "LOSSES",
    "CrossEntropyLoss",
    "BinaryCrossEntropyLoss",
    "FocalLoss",
    "DiceLoss",
    "TverskyLoss",
    "FocalTverskyLoss",
    "WeightedSum",
    "build_loss",
]

_EPS = 1e-7


def _check(logits: Tensor, target: Tensor) -> None:
    if logits.ndim != 4 or target.ndim != 3 or logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"expected logits (N, C, H, W) and target (N, H, W), got {tuple(logits.shape)} and {tuple(target.shape)}")


def _valid_onehot(logits: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """``valid (N, 1, H, W)`` 0/1 float and ``onehot (N, C, H, W)`` float, zero at ignored pixels."""
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))  # any in-range label; masked out below
    onehot = F.one_hot(safe.long(), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    valid_f = valid.unsqueeze(1).to(logits.dtype)
    return valid_f, onehot * valid_f


def _zero(logits: Tensor) -> Tensor:
    """A zero that keeps the graph (a batch whose every pixel is ignored)."""
    return logits.sum() * 0.0


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy, mean over valid pixels.

    Args:
        ignore_index: Target value of pixels to leave out.
        class_weights: Optional ``(C,)`` weights per class (then the mean is weighted, as in ``F.cross_entropy``).
    """

    def __init__(self, *, ignore_index: int = IGNORE_INDEX, class_weights: Tensor | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check(logits, target)
        if not (target != self.ignore_index).any():
            return _zero(logits)
        return F.cross_entropy(logits.float(), target.long(), weight=self.class_weights, ignore_index=self.ignore_index)


class BinaryCrossEntropyLoss(nn.Module):
    """Sigmoid binary cross-entropy of every channel against the one-hot target, mean over channels and valid pixels."""

    def __init__(self, *, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check(logits, target)
        logits = logits.float()
        valid, onehot = _valid_onehot(logits, target, self.ignore_index)
        count = valid.sum() * logits.shape[1]
        if count == 0:
            return _zero(logits)
        per_pixel = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
        return (per_pixel * valid).sum() / count


class FocalLoss(nn.Module):
    """Softmax focal loss ``-alpha_t (1 - p_t)^gamma log p_t`` (Lin et al. 2017), mean over valid pixels.

    Args:
        gamma: Focusing exponent; 0 gives cross-entropy.
        alpha: Optional ``(C,)`` class weights ``alpha_t``.
        ignore_index: Target value of pixels to leave out.
    """

    def __init__(self, *, gamma: float = 2.0, alpha: Tensor | None = None, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.register_buffer("alpha", alpha, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check(logits, target)
        valid = target != self.ignore_index
        if not valid.any():
            return _zero(logits)
        logp = F.log_softmax(logits.float(), dim=1)
        safe = torch.where(valid, target, torch.zeros_like(target)).long()
        logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)  # (N, H, W)
        loss = -((1.0 - logp_t.exp()) ** self.gamma) * logp_t
        if self.alpha is not None:
            loss = loss * self.alpha[safe]
        return loss[valid].mean()


class TverskyLoss(nn.Module):
    """``mean_c (1 - TI_c)^gamma`` with ``TI_c = (TP + s) / (TP + alpha FP + beta FN + s)`` on softmax probabilities.

    TP, FP and FN are soft counts summed over the batch's valid pixels, per class; classes absent from the
    batch's target are left out of the mean (with ``smooth = 0`` their index would be 0/FP).

    Args:
        alpha: Weight of false positives.
        beta: Weight of false negatives.
        gamma: Exponent on ``1 - TI`` (1: Tversky; below 1: focal Tversky).
        smooth: Added to numerator and denominator.
        ignore_index: Target value of pixels to leave out.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 1.0,
        smooth: float = 0.0,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ValueError(f"tversky needs alpha, beta >= 0 and not both 0, got alpha={alpha}, beta={beta}")
        if gamma <= 0:
            raise ValueError(f"tversky gamma must be > 0, got {gamma}")
        self.alpha, self.beta, self.gamma, self.smooth = alpha, beta, gamma, smooth
        self.ignore_index = ignore_index

    def index(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Per-class Tversky index ``(C,)`` and a ``(C,) bool`` mask of the classes present in the target."""
        _check(logits, target)
        logits = logits.float()
        valid, onehot = _valid_onehot(logits, target, self.ignore_index)
        proba = F.softmax(logits, dim=1) * valid
        dims = (0, 2, 3)
        tp = (proba * onehot).sum(dims)
        fp = (proba * (1.0 - onehot) * valid).sum(dims)
        fn = ((1.0 - proba) * onehot).sum(dims)
        ti = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth).clamp_min(_EPS)
        return ti, onehot.sum(dims) > 0

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        ti, present = self.index(logits, target)
        if not present.any():
            return _zero(logits)
        return ((1.0 - ti[present]).clamp_min(0.0) ** self.gamma).mean()


class DiceLoss(TverskyLoss):
    """Soft Dice loss ``1 - 2 TP / (2 TP + FP + FN)``: the Tversky loss with ``alpha = beta = 0.5``."""

    def __init__(self, *, smooth: float = 0.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__(alpha=0.5, beta=0.5, gamma=1.0, smooth=smooth, ignore_index=ignore_index)


class FocalTverskyLoss(TverskyLoss):
    """Focal Tversky loss ``(1 - TI)^gamma`` (Abraham & Khan 2019; their best ``gamma = 1 / (4/3) = 0.75``)."""

    def __init__(
        self, *, alpha: float = 0.3, beta: float = 0.7, gamma: float = 0.75, smooth: float = 0.0, ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__(alpha=alpha, beta=beta, gamma=gamma, smooth=smooth, ignore_index=ignore_index)


#: Loss classes by name; each is built with ``ignore_index=...`` and its literature defaults.
LOSSES: dict[str, type[nn.Module]] = {
    "ce": CrossEntropyLoss,
    "bce": BinaryCrossEntropyLoss,
    "focal": FocalLoss,
    "dice": DiceLoss,
    "tversky": TverskyLoss,
    "focal_tversky": FocalTverskyLoss,
}


class WeightedSum(nn.Module):
    """``sum_i w_i * loss_i(logits, target)``; ``terms`` keeps ``(name, weight)`` for logging."""

    def __init__(self, losses: list[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        if not losses:
            raise ValueError("a weighted sum needs at least one loss")
        self.terms = [(name, weight) for name, weight, _ in losses]
        self.losses = nn.ModuleList([loss for _, _, loss in losses])

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        total = None
        for (_, weight), loss in zip(self.terms, self.losses):
            value = weight * loss(logits, target)
            total = value if total is None else total + value
        return total


_TERM = re.compile(r"^(?:(?P<weight>\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?(?P<name>[a-z_\-]+)$")


def build_loss(spec: str, *, ignore_index: int = IGNORE_INDEX) -> WeightedSum:
    """Build a loss from a spec such as ``"ce"``, ``"bce+dice"`` or ``"0.5*ce+focal_tversky"``.

    Args:
        spec: ``+``-joined terms ``[WEIGHT*]NAME`` with names from ``LOSSES``.
        ignore_index: Target value of pixels every term leaves out.

    Returns:
        A ``WeightedSum`` (also for a single term, so callers handle one type).
    """
    terms: list[tuple[str, float, nn.Module]] = []
    for raw in spec.split("+"):
        match = _TERM.match(raw.strip().lower())
        if match is None:
            raise ValueError(f"loss term {raw!r} in {spec!r} is malformed; write NAME or WEIGHT*NAME, e.g. ce+0.5*dice")
        name = match["name"].replace("-", "_")
        if name not in LOSSES:
            raise ValueError(f"unknown loss {match['name']!r} in {spec!r}; known losses: {', '.join(sorted(LOSSES))}")
        weight = float(match["weight"]) if match["weight"] else 1.0
        terms.append((name, weight, LOSSES[name](ignore_index=ignore_index)))
    return WeightedSum(terms)
