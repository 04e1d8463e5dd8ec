"""The one training loop of every deep method, and its image-to-mask data.

``train_loop`` trains any ``nn.Module`` on a ``TrainData`` (batches of inputs and targets, and the loss
between the network's outputs and the targets):

* **optimisation**: AdamW (no weight decay on norms and biases), linear warm-up then a cosine decay,
  gradient-norm clipping;
* **schedule**: per step over ``epochs`` epochs, or, with ``budget_s``, over a time budget: the cosine's
  progress is charged time / budget, so the learning rate reaches its floor when the budget ends; or, with
  ``cooldown_epochs``, warm-up-stable-cooldown: the peak learning rate until the validation score has not
  improved for ``patience`` epochs (or until ``epochs - cooldown_epochs``), then a cosine cooldown to the floor
  over ``cooldown_epochs`` epochs, after which training stops. Early stopping under the plain cosine stops
  while the learning rate is still high (the cosine is laid over the epoch cap); the cooldown anneals first;
* **the budget clock** (``budget_clock``): what a budget counts is the optimiser's work only. On CPU that is
  the process's CPU seconds (``time.process_time``, every torch thread included), so a loaded or shared
  machine stretches the wall time but not the work a budget buys; on CUDA wall-clock seconds, synchronised.
  Validation passes are timed apart (``TrainResult.val_s``, wall clock) and never charged. The clock can be
  injected (``train_loop(clock=...)``), e.g. a fake one in tests;
* **model selection**: a validation score every ``val_every`` epochs, early stopping after ``patience``
  epochs without improvement, and the best weights restored at the end;
* **precision** (``precision``, ``device.training_precision``): ``fp32``, or ``bf16``: the forward pass under
  ``torch.autocast`` to bfloat16 with the network and its inputs in channels-last memory, on CPUs with native
  bfloat16 (AVX512-BF16, AMX; elsewhere float32, the reason recorded) and on CUDA (float16 with a gradient
  scaler on GPUs without bfloat16). Weights, optimiser state and losses stay float32. On CPU, validation and
  inference run in float32 and contiguous memory whatever the training precision;
* **hardware**: CUDA when available (``device="auto"``); deterministic algorithms, so on CPU two runs with
  the same seed and precision trained by epochs give the same weights bit for bit.

``train_model`` is the loop on whole images: ``ImageData`` (augmented views from ``augment``, normalised
with the training split's statistics) and the validation mean IoU. Patch classifiers bring their own
``TrainData`` (``sliding_window.PatchData``).

Batches are drawn by a seeded ``torch.Generator`` from in-memory tensors rather than through a ``DataLoader``:
with two cores, worker processes only add overhead, and one generator makes the order and the augmentation
reproducible.
"""

from __future__ import annotations

import abc
import copy
import itertools
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from segbench.datasets.base import IGNORE_INDEX, Sample
from segbench.methods.deep.augment import augmented_batches, to_tensors
from segbench.methods.deep.device import (
    Device,
    Precision,
    autocast,
    deterministic_algorithms,
    pick_device,
    training_precision,
)
from segbench.methods.deep.inference import Normalization, evaluate_model, prepare
from segbench.methods.deep.losses import build_loss

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainData",
    "ImageData",
    "train_loop",
    "train_model",
    "lr_factor",
    "budget_lr_factor",
    "cooldown_lr_factor",
    "budget_clock",
    "progress_bar",
]


#: ``TrainConfig`` field metadata: what a checkpoint's identity (``DeepMethod._identity``) makes of the option.
#: Left out: it does not change what trained weights mean. Added later: compared only when not at its default,
#: so checkpoints saved before the option existed stay reusable.
LEFT_OUT_OF_IDENTITY = {"identity": "left out"}
ADDED_LATER = {"identity": "when set"}


@dataclass(kw_only=True)
class TrainConfig:
    """Options of the training loop (every deep method's ``Options`` extends this).

    Attributes:
        epochs: Maximum number of passes over the training split (unused with ``budget_s``).
        batch_size: Images per step (an epoch drops the last incomplete batch, so BatchNorm never sees one image).
        lr: Peak learning rate of AdamW (after warm-up).
        weight_decay: AdamW decoupled weight decay.
        warmup_epochs: Linear warm-up length (fractions allowed); with ``budget_s``, the warm-up takes the same
            fraction of the budget as ``warmup_epochs / epochs``.
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
        patience: Stop after this many epochs without a better validation score (None: never stop early); with
            ``cooldown_epochs``, start the cooldown instead.
        cooldown_epochs: Warm-up-stable-cooldown schedule (None: warm-up then cosine over ``epochs``): the peak
            learning rate until ``patience`` epochs pass without a better validation score or ``epochs -
            cooldown_epochs`` epochs have run, then a cosine to ``min_lr_ratio`` over this many epochs, then stop
            (``stop_reason`` ``cooldown``). By epochs only (a budget anneals over its seconds already).
            ``segbench run --cooldown``.
        max_train_s: Cut training after the epoch in which this many seconds have passed (None: no limit); the
            schedule stays laid out over ``epochs``. A safety cap: the result depends on the machine's speed.
        budget_s: Train for this many seconds of the budget clock (``budget_clock``: CPU seconds of optimiser
            work on CPU, wall-clock seconds on CUDA; validation not charged), with the schedule laid out over them
            (the cosine ends when the budget does), instead of for ``epochs`` (None: by epochs).
            ``segbench run --budget-s``.
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"`` or ``"bf16"`` (autocast to bfloat16 with channels-last memory where the hardware has
            bfloat16; see the module docstring). ``segbench run --precision``.
        channels_last: Channels-last memory with ``bf16`` on CPU and always on CUDA (off: contiguous memory).
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
    cooldown_epochs: int | None = field(default=None, metadata=ADDED_LATER)
    max_train_s: float | None = field(default=None, metadata=LEFT_OUT_OF_IDENTITY)
    budget_s: float | None = field(default=None, metadata=ADDED_LATER)
    device: Device = field(default="auto", metadata=LEFT_OUT_OF_IDENTITY)
    precision: Precision = "bf16"
    channels_last: bool = True
    deterministic: bool = True
    progress: bool = field(default=True, metadata=LEFT_OUT_OF_IDENTITY)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value."""
        if self.epochs < 1 or self.batch_size < 1 or self.val_every < 1:
            raise ValueError(f"epochs, batch_size and val_every must be >= 1, got {self.epochs}, {self.batch_size}, {self.val_every}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.min_lr_ratio <= 1 or self.warmup_epochs < 0:
            raise ValueError(
                f"need lr > 0, weight_decay >= 0, 0 <= min_lr_ratio <= 1, warmup_epochs >= 0; got lr={self.lr}, "
                f"weight_decay={self.weight_decay}, min_lr_ratio={self.min_lr_ratio}, warmup_epochs={self.warmup_epochs}"
            )
        if self.budget_s is not None and not self.budget_s > 0:
            raise ValueError(f"budget_s must be > 0 seconds (or None: train by epochs), got {self.budget_s}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")
        if self.crop is not None and (len(self.crop) != 2 or min(self.crop) < 1):
            raise ValueError(f"crop must be (height, width) with positive sides, got {self.crop}")
        if not 0 <= self.color_jitter < 1:
            raise ValueError(f"color_jitter must be in [0, 1), got {self.color_jitter}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.cooldown_epochs is not None:
            if self.budget_s is not None:
                raise ValueError(f"cooldown_epochs={self.cooldown_epochs} trains by epochs; budget_s={self.budget_s} anneals "
                                 "over its seconds already: give one")
            if not 1 <= self.cooldown_epochs < self.epochs:
                raise ValueError(f"cooldown_epochs must be in [1, epochs={self.epochs}), got {self.cooldown_epochs}")
        build_loss(self.loss)  # fails early on an unknown loss name


@dataclass
class TrainResult:
    """What a training run reports.

    Attributes:
        norm: The input normalisation the model was trained with.
        best_score: Best validation score (NaN without a validation split).
        best_epoch: Epoch (1-based) of the weights kept.
        epochs_run: Epochs actually run (the last one may be partial when the budget ends in it).
        stopped: What ended training: ``"epochs"`` (all of them ran), ``"early_stopping"``, ``"time_limit"``
            (``max_train_s``) or ``"budget"`` (``budget_s`` spent).
        seconds: Wall-clock time of the whole loop, validation included.
        charged_s: Seconds of the budget clock spent on optimiser work (what ``budget_s`` counts).
        val_s: Wall-clock seconds of the validation passes (not charged to the budget).
        precision: The precision used (``fp32``, ``bf16``, ``fp16``); ``precision_note`` says why where it is
            not the one asked for.
        history: One dict per epoch: ``epoch``, ``train_s`` (budget-clock seconds charged so far), ``loss``,
            ``val_score`` (validation mean IoU; NaN when not validated), ``lr`` (after the epoch's last step),
            ``val_s`` (this epoch's validation, wall clock).
    """

    norm: Normalization
    best_score: float
    best_epoch: int
    epochs_run: int
    stopped: str
    seconds: float
    charged_s: float = math.nan
    val_s: float = 0.0
    precision: str = "fp32"
    precision_note: str = ""
    history: list[dict[str, float]] = field(default_factory=list)


# -- schedule -------------------------------------------------------------------------------------------


def progress_bar(iterable: Any, *, desc: str, show: bool) -> Any:
    """A training progress bar, off when ``show`` is False or ``TQDM_DISABLE`` is set (``segbench run --no-progress``).

    tqdm reads ``TQDM_DISABLE`` only for arguments the caller leaves out, and this bar always passes ``disable``.
    """
    off = not show or os.environ.get("TQDM_DISABLE", "").lower() in {"1", "true", "yes"}
    return tqdm(iterable, desc=desc, leave=False, disable=off)


def budget_clock(device: torch.device) -> Callable[[], float]:
    """The clock a budget counts on ``device``: CPU seconds of this process (every thread) on CPU, so a machine
    shared with other work stretches the wall time a budget takes but not the work it buys; on CUDA
    wall-clock seconds after the queued kernels finish."""
    if device.type == "cuda":
        def cuda_clock() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return cuda_clock
    return time.process_time


def _cosine(progress: float, min_ratio: float) -> float:
    """Cosine from 1 at ``progress`` 0 down to ``min_ratio`` at 1 (and after)."""
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based): linear warm-up, then cosine to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    return _cosine((step - warmup_steps) / max(1, total_steps - warmup_steps), min_ratio)


def cooldown_lr_factor(step: int, *, warmup_steps: int, cooldown_start: int | None, cooldown_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based) of a warm-up-stable-cooldown schedule: linear
    warm-up, the peak until the cooldown starts at step ``cooldown_start`` (None: not yet), then a cosine to
    ``min_ratio`` over ``cooldown_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if cooldown_start is None or step < cooldown_start:
        return 1.0
    return _cosine((step - cooldown_start) / cooldown_steps, min_ratio)


def budget_lr_factor(elapsed_s: float, *, budget_s: float, warmup: float, min_ratio: float) -> float:
    """Multiplier of the peak learning rate after ``elapsed_s`` of a ``budget_s`` budget: the step schedule's
    shape stretched over time, a linear warm-up over the first ``warmup`` fraction, then cosine to ``min_ratio``."""
    progress = elapsed_s / budget_s
    if progress < warmup:
        return progress / warmup
    return _cosine((progress - warmup) / (1.0 - warmup) if warmup < 1 else 1.0, min_ratio)


# -- what the loop trains on ----------------------------------------------------------------------------


class TrainData(abc.ABC):
    """What ``train_loop`` trains on: batches of (inputs, targets) and the loss of the network's outputs.

    Attributes:
        norm: The input normalisation (returned in ``TrainResult`` and stored with the checkpoint).
        steps_per_epoch: Optimiser steps in one epoch.
    """

    norm: Normalization
    steps_per_epoch: int

    @abc.abstractmethod
    def batches(self, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch of ``(inputs, targets)`` on the CPU, every random draw from ``gen``."""

    def to_device(self, inputs: Tensor, device: torch.device, *, channels_last: bool) -> Tensor:
        """``inputs`` as the network reads them, on ``device``."""
        return inputs.to(device, non_blocking=True)

    def forward(self, model: nn.Module, x: Tensor) -> Tensor:
        """The network's outputs for ``x`` (run under the training precision's autocast)."""
        return model(x)

    @abc.abstractmethod
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The training loss (float32 outputs; not under autocast)."""


class ImageData(TrainData):
    """Whole images and their masks: augmented views (``augment``), normalised on the device, a per-pixel loss.

    Args:
        samples: Training samples at the working resolution.
        config: Batch size, crop, augmentation and loss options.
        ignore_index: Label of pixels left out of the loss.
        device: Where the loss runs.
    """

    def __init__(self, samples: Sequence[Sample], config: TrainConfig, *, ignore_index: int, device: torch.device) -> None:
        self.config = config
        self.ignore_index = ignore_index
        self.norm = Normalization.from_samples(samples)
        self.data = to_tensors(samples, ignore_index)
        self.crop = tuple(config.crop) if config.crop is not None else (
            min(d[0].shape[1] for d in self.data), min(d[0].shape[2] for d in self.data)
        )
        self.fill = torch.tensor(self.norm.mean, dtype=torch.float32)
        self.steps_per_epoch = max(1, len(self.data) // min(config.batch_size, len(self.data)))
        self.criterion = build_loss(config.loss, ignore_index=ignore_index).to(device)

    def batches(self, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        return augmented_batches(self.data, crop=self.crop, config=self.config, gen=gen, fill=self.fill, ignore_index=self.ignore_index)

    def to_device(self, inputs: Tensor, device: torch.device, *, channels_last: bool) -> Tensor:
        return prepare(inputs, self.norm, device, channels_last)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self.criterion(outputs, targets)


# -- the loop -------------------------------------------------------------------------------------------


def train_loop(
    model: nn.Module,
    data: TrainData,
    *,
    config: TrainConfig,
    evaluate: Callable[[], float] | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    desc: str = "train",
    clock: Callable[[], float] | None = None,
) -> TrainResult:
    """Train ``model`` in place and leave it holding the best weights (by ``evaluate``).

    Works for any ``nn.Module`` that ``data.forward`` runs. Where precision applies: the model and its inputs
    go to channels-last memory before the first step (``bf16`` on CPU, any precision on CUDA), and only the
    forward pass runs under autocast; the loss, the backward's parameter gradients and the optimiser are float32.

    Args:
        model: The network ``data.forward`` runs.
        data: Batches and loss.
        config: Loop options (``data`` reads the options about its batches itself).
        evaluate: The validation score of ``model`` as it stands, higher is better; None: no validation, the
            last epoch's weights are kept. Its time is measured apart (wall clock) and not charged to the budget.
        seed: Seeds the batch order and the augmentation (model initialisation is the caller's, before this).
        device: Where to train; None: ``pick_device(config.device)``.
        desc: Progress-bar label.
        clock: The budget clock (seconds, monotonic); None: ``budget_clock(device)``.
    """
    config.validate()
    device = device or pick_device(config.device)
    clock = clock or budget_clock(device)
    start_time = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    autocast_dtype, precision, precision_note = training_precision(device, config.precision)
    # Channels-last pays off with bfloat16 on CPU (oneDNN's blocked kernels) and on CUDA (tensor cores).
    channels_last = config.channels_last and (device.type == "cuda" or autocast_dtype is not None)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    # No weight decay on norms and biases (1-d parameters), as in timm's optimizer factory.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr
    )
    budget = config.budget_s
    charged = 0.0  # budget-clock seconds of optimiser work so far (validation excluded)
    epoch_start = 0.0  # the budget clock when the current epoch's training began

    def spent_s() -> float:
        return charged + clock() - epoch_start

    cooldown = config.cooldown_epochs
    cooldown_start: int | None = None  # the step the cooldown began at (None: not begun)
    cooldown_end = 0  # the epoch it ends with
    if budget is None:
        total_steps = data.steps_per_epoch * config.epochs
        warmup_steps = round(config.warmup_epochs * data.steps_per_epoch)
        epochs: Iterator[int] | range = range(1, config.epochs + 1)

        def factor(step: int) -> float:
            if cooldown is not None:
                return cooldown_lr_factor(step, warmup_steps=warmup_steps, cooldown_start=cooldown_start,
                                          cooldown_steps=cooldown * data.steps_per_epoch, min_ratio=config.min_lr_ratio)
            return lr_factor(step, total_steps=total_steps, warmup_steps=warmup_steps, min_ratio=config.min_lr_ratio)
    else:
        warmup = min(1.0, config.warmup_epochs / config.epochs)
        epochs = itertools.count(1)  # until the budget is spent (or early stopping)

        def factor(step: int) -> float:
            return budget_lr_factor(spent_s() if step else 0.0, budget_s=budget, warmup=warmup, min_ratio=config.min_lr_ratio)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)

    best_score, best_epoch, best_state = -math.inf, 0, None
    history: list[dict[str, float]] = []
    val_total = 0.0
    stopped = "epochs"
    bar = progress_bar(epochs, desc=desc, show=config.progress)
    with deterministic_algorithms(config.deterministic):
        for epoch in bar:
            model.train()
            losses = []
            spent = False
            epoch_start = clock()
            for inputs, targets in data.batches(gen):
                x = data.to_device(inputs, device, channels_last=channels_last)
                y = targets.to(device, non_blocking=True)
                with autocast(device, autocast_dtype):
                    outputs = data.forward(model, x)
                loss = data.loss(outputs.float(), y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                losses.append(float(loss.detach()))
                if budget is not None and spent_s() >= budget:
                    spent = True
                    break
            charged = spent_s()
            record = {"epoch": epoch, "train_s": charged, "loss": float(np.mean(losses)), "val_score": math.nan,
                      "lr": optimizer.param_groups[0]["lr"], "val_s": 0.0}
            last = spent or (budget is None and epoch == config.epochs)
            if evaluate is not None and (epoch % config.val_every == 0 or last):
                val_start = time.perf_counter()
                record["val_score"] = score = evaluate()
                record["val_s"] = time.perf_counter() - val_start
                val_total += record["val_s"]
                if score > best_score:  # ties keep the earlier, cheaper-to-reach weights
                    best_score, best_epoch = score, epoch
                    best_state = copy.deepcopy(model.state_dict())
            history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", val=f"{record['val_score']:.4f}", best=f"{best_score:.4f}")
            if spent:
                stopped = "budget"
                break
            plateau = evaluate is not None and config.patience is not None and epoch - best_epoch >= config.patience
            if cooldown is not None:
                if cooldown_start is not None and epoch >= cooldown_end:
                    stopped = "cooldown"
                    break
                if cooldown_start is None and (plateau or epoch >= config.epochs - cooldown):
                    # The next step is the cooldown's first; the scheduler already holds its factor (the peak).
                    cooldown_start, cooldown_end = epoch * data.steps_per_epoch, epoch + cooldown
            elif plateau:
                stopped = "early_stopping"
                break
            if config.max_train_s is not None and time.perf_counter() - start_time >= config.max_train_s:
                stopped = "time_limit"
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:  # no validation split: the last weights are the result
        best_score, best_epoch = math.nan, len(history)
    if channels_last and device.type == "cpu":  # CPU inference runs in float32, on contiguous memory
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    return TrainResult(
        norm=data.norm,
        best_score=float(best_score),
        best_epoch=best_epoch,
        epochs_run=len(history),
        stopped=stopped,
        seconds=time.perf_counter() - start_time,
        charged_s=charged,
        val_s=val_total,
        precision=precision,
        precision_note=precision_note,
        history=history,
    )


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
    clock: Callable[[], float] | None = None,
) -> TrainResult:
    """Train an image-to-mask network with ``train_loop``, selecting weights by validation mean IoU.

    Args:
        model: Any module mapping ``(N, 3, H, W)`` normalised images to ``(N, C, H, W)`` logits at the same size.
        train: Training samples at the working resolution (sizes may differ slightly; see ``TrainConfig.crop``).
        val: Validation samples for model selection and early stopping; None or empty: keep the last epoch's weights.
        num_classes: ``C``.
        config: Loop options.
        seed: Seeds the batch order and the augmentation (model initialisation is the caller's, before this).
        ignore_index: Label of pixels left out of the loss and of validation.
        device: Where to train; None: ``pick_device(config.device)``.
        desc: Progress-bar label.
        clock: The budget clock (``train_loop``); None: ``budget_clock(device)``.
    """
    config.validate()
    if len(train) == 0:
        raise ValueError("train_model: the training split is empty")
    device = device or pick_device(config.device)
    data = ImageData(list(train), config, ignore_index=ignore_index, device=device)
    val_list = list(val) if val is not None and len(val) else None
    channels_last = config.channels_last and device.type == "cuda"

    def evaluate() -> float:
        return evaluate_model(
            model, val_list, data.norm, num_classes=num_classes, ignore_index=ignore_index, device=device,
            amp=config.precision != "fp32", channels_last=channels_last,
        )

    return train_loop(model, data, config=config, evaluate=evaluate if val_list else None, seed=seed, device=device,
                      desc=desc, clock=clock)
