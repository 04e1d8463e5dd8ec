"""The one training loop of every deep method: any ``nn.Module`` mapping ``(N, 3, H, W)`` to ``(N, C, H, W)`` logits.

``train_model`` takes samples (already at the working resolution), a ``TrainConfig`` and a seed, and does:

* **data**: images kept in memory as uint8 tensors, normalised with the training split's per-channel mean
  and std (stored with the checkpoint, so inference normalises the same way);
* **augmentation** applied to image and mask together: random scale then a random crop (padded with the
  ignore label where the scaled image is smaller), horizontal and vertical flips, colour jitter
  (brightness, contrast, saturation) per sample, and one 90-degree rotation per batch (per batch, so a
  non-square crop keeps one shape within the batch);
* **optimisation**: AdamW, linear warm-up then a cosine decay per step, gradient-norm clipping;
* **model selection**: validation (mean IoU over classes, dataset-level) every ``val_every`` epochs, early
  stopping after ``patience`` epochs without improvement, and the best weights restored at the end;
* **hardware**: CUDA when available (``device="auto"``), mixed precision (bfloat16 where supported, else
  float16 with a gradient scaler) and channels-last memory there; on CPU float32 and deterministic
  algorithms, so two runs with the same seed give the same weights bit for bit.

Batches are drawn by a seeded ``torch.Generator`` from the in-memory tensors rather than through a
``DataLoader``: with two cores, worker processes only add overhead, and one generator makes the order and
the augmentation reproducible.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from segbench.datasets.base import IGNORE_INDEX, Sample
from segbench.methods.deep.losses import build_loss
from segbench.measure.metrics import ConfusionMatrix

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Normalization",
    "train_model",
    "evaluate_model",
    "predict_proba_tensor",
    "softmax_batch",
    "pick_device",
    "seed_everything",
    "deterministic_algorithms",
    "save_checkpoint",
    "load_checkpoint",
    "lr_factor",
]

Device = Literal["auto", "cpu", "cuda"]


@dataclass(kw_only=True)
class TrainConfig:
    """Options of the training loop (every deep method's ``Options`` extends this).

    Attributes:
        epochs: Maximum number of passes over the training split.
        batch_size: Images per step (an epoch drops the last incomplete batch, so BatchNorm never sees one image).
        lr: Peak learning rate of AdamW (after warm-up).
        weight_decay: AdamW decoupled weight decay.
        warmup_epochs: Linear warm-up length (fractions allowed).
        min_lr_ratio: Cosine floor as a fraction of ``lr``.
        grad_clip: Maximum global gradient norm (None: no clipping).
        loss: Loss spec for ``segbench.methods.deep.losses.build_loss``, e.g. ``"ce+dice"``.
        crop: Training crop ``(height, width)``; None: the smallest training image's shape.
        scale_range: Random rescaling factor range before cropping (``(1, 1)``: none).
        hflip: Random horizontal flips.
        vflip: Random vertical flips.
        rot90: Random multiples of 90 degrees (one per batch).
        color_jitter: Brightness, contrast and saturation factors drawn from ``1 +- color_jitter``.
        val_every: Validate every this many epochs.
        patience: Stop after this many epochs without a better validation score (None: never stop early).
        max_train_s: Stop after this many seconds of training (None: no limit). Makes the result depend on
            the machine's speed, so it is off by default.
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda"``.
        amp: Mixed precision on CUDA (ignored on CPU).
        channels_last: Channels-last memory format on CUDA (ignored on CPU).
        deterministic: Deterministic algorithms while training (bitwise reproducible on CPU).
        progress: Show a progress bar with the loss and the validation score.
    """

    epochs: int = 40
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 2.0
    min_lr_ratio: float = 0.01
    grad_clip: float | None = 5.0
    loss: str = "ce+dice"
    crop: tuple[int, int] | None = None
    scale_range: tuple[float, float] = (0.75, 1.25)
    hflip: bool = True
    vflip: bool = True
    rot90: bool = True
    color_jitter: float = 0.2
    val_every: int = 1
    patience: int | None = 20
    max_train_s: float | None = None
    device: Device = "auto"
    amp: bool = True
    channels_last: bool = True
    deterministic: bool = True
    progress: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value."""
        if self.epochs < 1 or self.batch_size < 1 or self.val_every < 1:
            raise ValueError(f"epochs, batch_size and val_every must be >= 1, got {self.epochs}, {self.batch_size}, {self.val_every}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.min_lr_ratio <= 1 or self.warmup_epochs < 0:
            raise ValueError(
                f"need lr > 0, weight_decay >= 0, 0 <= min_lr_ratio <= 1, warmup_epochs >= 0; got lr={self.lr}, "
                f"weight_decay={self.weight_decay}, min_lr_ratio={self.min_lr_ratio}, warmup_epochs={self.warmup_epochs}"
            )
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")
        if self.crop is not None and (len(self.crop) != 2 or min(self.crop) < 1):
            raise ValueError(f"crop must be (height, width) with positive sides, got {self.crop}")
        if not 0 <= self.color_jitter < 1:
            raise ValueError(f"color_jitter must be in [0, 1), got {self.color_jitter}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        build_loss(self.loss)  # fails early on an unknown loss name


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


@dataclass
class TrainResult:
    """What a training run reports.

    Attributes:
        norm: The input normalisation the model was trained with.
        best_score: Best validation mean IoU (NaN without a validation split).
        best_epoch: Epoch (1-based) of the weights kept.
        epochs_run: Epochs actually run (fewer than configured after early stopping or the time limit).
        stopped: ``"completed"``, ``"early_stopping"`` or ``"time_limit"``.
        seconds: Wall-clock training time.
        history: One dict per epoch: ``epoch``, ``loss``, ``lr``, ``val_miou`` (NaN when not validated), ``seconds``.
    """

    norm: Normalization
    best_score: float
    best_epoch: int
    epochs_run: int
    stopped: str
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


# -- environment ----------------------------------------------------------------------------------------


def pick_device(device: Device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU. Asking for CUDA without one is an error, not a silent fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch sees no CUDA device; use device='auto' or 'cpu'")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (model initialisation draws from torch's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Use deterministic algorithms inside the block and restore the previous global setting after it.

    ``warn_only``: a CUDA op without a deterministic kernel (e.g. max-unpooling's backward) warns instead of
    failing; on CPU every op used here is deterministic.
    """
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        if enabled:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        if prev_cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype on CUDA (bfloat16 where supported, else float16); None: full float32."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# -- schedule -------------------------------------------------------------------------------------------


def progress_bar(iterable: Any, *, desc: str, show: bool) -> Any:
    """A training progress bar, off when ``show`` is False or ``TQDM_DISABLE`` is set (``segbench run --no-progress``).

    tqdm reads ``TQDM_DISABLE`` only for arguments the caller leaves out, and this bar always passes ``disable``.
    """
    off = not show or os.environ.get("TQDM_DISABLE", "").lower() in {"1", "true", "yes"}
    return tqdm(iterable, desc=desc, leave=False, disable=off)


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based): linear warm-up, then cosine to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


# -- data -----------------------------------------------------------------------------------------------


def _to_tensors(samples: Sequence[Sample], ignore_index: int) -> list[tuple[Tensor, Tensor]]:
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


def _augment(
    image: Tensor,
    mask: Tensor,
    *,
    crop: tuple[int, int],
    config: TrainConfig,
    gen: torch.Generator,
    fill: Tensor,
    ignore_index: int,
) -> tuple[Tensor, Tensor]:
    """One training view of a sample.

    Args:
        image: ``(3, H, W) uint8``.
        mask: ``(H, W) int64``.
        crop: Output ``(h, w)``.
        fill: ``(3,)`` float image value for padding (the mean colour, which normalises to 0).

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


def _batches(
    data: list[tuple[Tensor, Tensor]],
    *,
    crop: tuple[int, int],
    config: TrainConfig,
    gen: torch.Generator,
    fill: Tensor,
    ignore_index: int,
) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of augmented ``(B, 3, h, w) float`` / ``(B, h, w) int64`` batches in a seeded random order."""
    n = len(data)
    order = torch.randperm(n, generator=gen).tolist()
    bs = min(config.batch_size, n)
    for start in range(0, n - bs + 1, bs):  # drop the incomplete tail: BatchNorm needs more than one image
        views = [_augment(*data[i], crop=crop, config=config, gen=gen, fill=fill, ignore_index=ignore_index) for i in order[start : start + bs]]
        images = torch.stack([v[0] for v in views])
        masks = torch.stack([v[1] for v in views])
        if config.rot90:
            k = int(torch.randint(0, 4, (), generator=gen))
            if k:
                images, masks = torch.rot90(images, k, dims=(2, 3)), torch.rot90(masks, k, dims=(1, 2))
        yield images.contiguous(), masks.contiguous()


# -- inference ------------------------------------------------------------------------------------------


def _prepare(images: Tensor, norm: Normalization, device: torch.device, channels_last: bool) -> Tensor:
    x = norm.apply(images.to(device, non_blocking=True).float())
    if channels_last and device.type == "cuda":
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
    x = _prepare(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))), norm, device, channels_last)
    dtype = amp_dtype(device, amp)
    with torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
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
    """Dataset-level mean IoU over classes (summed confusion matrix) of ``model`` on ``samples``."""
    meter = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    for s in samples:
        proba = predict_proba_tensor(model, s.image, norm, device=device, amp=amp, channels_last=channels_last)
        meter.update(s.mask, proba.argmax(0), ignore_mask=s.ignore)
    return float(meter.compute()["dataset"]["mean_iou"])


# -- checkpoints ----------------------------------------------------------------------------------------


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write ``{"state_dict", "meta"}`` atomically (a crash never leaves a truncated file at ``path``).

    ``meta`` must hold only plain Python values (str, numbers, bool, None, lists, tuples, dicts), so that
    ``load_checkpoint`` can read it with ``weights_only=True``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"state_dict": state, "meta": meta}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by ``save_checkpoint`` with ``weights_only=True`` (no arbitrary code runs).

    Returns:
        ``(state_dict, meta)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; give the best.pt of a run's artifacts folder")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload or "meta" not in payload:
        raise ValueError(f"{path} is not a segbench checkpoint (expected keys 'state_dict' and 'meta')")
    return payload["state_dict"], payload["meta"]


# -- the loop -------------------------------------------------------------------------------------------


def train_model(
    model: nn.Module,
    train: Sequence[Sample],
    val: Sequence[Sample] | None,
    *,
    num_classes: int,
    config: TrainConfig,
    seed: int = 0,
    ignore_index: int = IGNORE_INDEX,
    device: torch.device | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` in place and leave it holding the best weights (by validation mean IoU).

    Args:
        model: Any module mapping ``(N, 3, H, W)`` normalised images to ``(N, C, H, W)`` logits at the same size.
        train: Training samples at the working resolution (sizes may differ slightly; see ``TrainConfig.crop``).
        val: Validation samples for model selection and early stopping; None: keep the last epoch's weights.
        num_classes: ``C``.
        config: Loop options.
        seed: Seeds the batch order and the augmentation (model initialisation is the caller's, before this).
        ignore_index: Label of pixels left out of the loss and of validation.
        device: Where to train; None: ``pick_device(config.device)``.
        desc: Progress-bar label.
    """
    config.validate()
    if len(train) == 0:
        raise ValueError("train_model: the training split is empty")
    device = device or pick_device(config.device)
    start_time = time.perf_counter()
    train_list = list(train)
    val_list = list(val) if val is not None and len(val) else None
    norm = Normalization.from_samples(train_list)
    data = _to_tensors(train_list, ignore_index)
    crop = tuple(config.crop) if config.crop is not None else (min(d[0].shape[1] for d in data), min(d[0].shape[2] for d in data))
    fill = torch.tensor(norm.mean, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)

    channels_last = config.channels_last and device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    criterion = build_loss(config.loss, ignore_index=ignore_index).to(device)
    # No weight decay on norms and biases (1-d parameters), as in timm's optimizer factory.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr
    )
    steps_per_epoch = max(1, len(data) // min(config.batch_size, len(data)))
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps=total_steps, warmup_steps=warmup_steps, min_ratio=config.min_lr_ratio)
    )
    autocast_dtype = amp_dtype(device, config.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)

    best_score, best_epoch, best_state = -math.inf, 0, None
    history: list[dict[str, float]] = []
    stopped = "completed"
    bar = progress_bar(range(1, config.epochs + 1), desc=desc, show=config.progress)
    with deterministic_algorithms(config.deterministic):
        for epoch in bar:
            model.train()
            losses = []
            for images, masks in _batches(data, crop=crop, config=config, gen=gen, fill=fill, ignore_index=ignore_index):
                x = _prepare(images, norm, device, channels_last)
                y = masks.to(device, non_blocking=True)
                with torch.autocast(device_type=device.type, dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext():
                    logits = model(x)
                loss = criterion(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                losses.append(float(loss.detach()))
            record = {"epoch": epoch, "loss": float(np.mean(losses)), "lr": optimizer.param_groups[0]["lr"], "val_miou": math.nan}
            if val_list is not None and (epoch % config.val_every == 0 or epoch == config.epochs):
                score = evaluate_model(
                    model, val_list, norm, num_classes=num_classes, ignore_index=ignore_index, device=device,
                    amp=config.amp, channels_last=channels_last,
                )
                record["val_miou"] = score
                if score > best_score:  # ties keep the earlier, cheaper-to-reach weights
                    best_score, best_epoch = score, epoch
                    best_state = copy.deepcopy(model.state_dict())
            record["seconds"] = time.perf_counter() - start_time
            history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", val_miou=f"{record['val_miou']:.4f}", best=f"{best_score:.4f}")
            if val_list is not None and config.patience is not None and epoch - best_epoch >= config.patience:
                stopped = "early_stopping"
                break
            if config.max_train_s is not None and record["seconds"] >= config.max_train_s:
                stopped = "time_limit"
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:  # no validation split: the last weights are the result
        best_score, best_epoch = math.nan, len(history)
    model.eval()
    return TrainResult(
        norm=norm,
        best_score=float(best_score),
        best_epoch=best_epoch,
        epochs_run=len(history),
        stopped=stopped,
        seconds=time.perf_counter() - start_time,
        history=history,
    )
