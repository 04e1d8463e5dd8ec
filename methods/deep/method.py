"""``DeepMethod``: the base of every deep method; wraps a network, the training loop and checkpoints.

A subclass adds its architecture options to ``Options`` and implements ``build_model``; training, device
choice, checkpoints and inference are shared.

Checkpoints:
    After training, the best weights are saved as ``<artifacts_dir>/best.pt`` (the runner gives each cell
    its own artifacts folder) with ``history.csv`` beside it. They are reused without retraining:

    * ``checkpoint=PATH`` (``--opt unet.checkpoint=results/x/artifacts/<cell>/best.pt``) loads those
      weights and skips training; the architecture options must match the checkpoint's (the error names
      any that differ), training options are ignored.
    * With ``reuse_checkpoint=True`` (default), a ``best.pt`` already in the cell's artifacts folder with
      the same method, classes, architecture, training options and seed is loaded instead of retraining,
      e.g. when a run was interrupted after training but before its cell was committed.

    Files are read with ``torch.load(weights_only=True)``, so a checkpoint cannot run code. The recorded
    ``train_s`` of a cell that loaded a checkpoint is the loading time; the original training time is in
    the checkpoint's metadata (``meta["train_s"]``).
"""

from __future__ import annotations

import abc
import csv
import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segbench.datasets.base import IGNORE_INDEX, Sample
from segbench.datasets.io import to_rgb
from segbench.datasets.transforms import WorkSize, resize_image, resize_proba, work_shape
from segbench.methods.base import Method
from segbench.methods.deep.checkpoint import load_checkpoint, save_checkpoint
from segbench.methods.deep.device import pick_device, seed_everything
from segbench.methods.deep.inference import Normalization, softmax_batch
from segbench.methods.deep.training import (
    ADDED_LATER,
    LEFT_OUT_OF_IDENTITY,
    TrainConfig,
    TrainResult,
    train_model,
)

__all__ = ["DeepMethod", "CHECKPOINT_NAME"]

#: File name of the best weights in a cell's artifacts folder.
CHECKPOINT_NAME = "best.pt"
_FORMAT = 1


@dataclass(kw_only=True)
class DeepOptions(TrainConfig):
    """Training-loop options plus checkpoint reuse (see the module docstring)."""

    checkpoint: str | None = None
    reuse_checkpoint: bool = True


class DeepMethod(Method):
    """A network trained from scratch by ``segbench.methods.deep.training.train_model``.

    Attributes:
        device: ``torch.device`` the network runs on (set at construction from ``opts.device``).
        model: The network (None before ``fit``).
        norm: Input normalisation the network was trained with.
        train_result: What the training run reported (None when weights were loaded from a checkpoint).
        checkpoint_meta: Metadata of the weights in use (training history summary, scores, versions).
    """

    family: ClassVar[str] = "deep"
    supports_gpu: ClassVar[bool] = True
    #: 128 px on the longer side (128x96 for PH2): what trains in minutes on a 2-core CPU; ``--size`` changes it.
    default_work_size: ClassVar[WorkSize] = 128
    Options: ClassVar[type] = DeepOptions
    #: Other methods whose checkpoints hold the same network (``checkpoint=PATH`` loads theirs too).
    loads_checkpoints_of: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        num_classes: int,
        *,
        seed: int = 0,
        work_size: WorkSize = None,
        ignore_index: int = IGNORE_INDEX,
        **options: Any,
    ) -> None:
        super().__init__(num_classes, seed=seed, work_size=work_size, ignore_index=ignore_index, **options)
        self.train_config().validate()
        self.device: torch.device = pick_device(self.opts.device)
        self.model: nn.Module | None = None
        self.norm: Normalization | None = None
        self.train_result: TrainResult | None = None
        self.checkpoint_meta: dict[str, Any] | None = None

    # -- for subclasses ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised network mapping ``(N, 3, H, W)`` to ``(N, num_classes, H, W)`` logits."""

    # -- options ----------------------------------------------------------------------------------------

    def train_config(self) -> TrainConfig:
        """The training-loop part of the options."""
        return TrainConfig(**{f.name: getattr(self.opts, f.name) for f in dataclasses.fields(TrainConfig)})

    def architecture(self) -> dict[str, Any]:
        """The options that define the network (those a subclass adds to ``DeepOptions``)."""
        common = {f.name for f in dataclasses.fields(DeepOptions)}
        return {f.name: getattr(self.opts, f.name) for f in dataclasses.fields(self.opts) if f.name not in common}

    def _identity(self) -> dict[str, Any]:
        """What a reusable ``best.pt`` must share with this instance."""
        training = {}  # each training option by the identity rule its field declares (``training.TrainConfig``)
        for f in dataclasses.fields(TrainConfig):
            value, rule = getattr(self.opts, f.name), f.metadata.get("identity")
            if rule != LEFT_OUT_OF_IDENTITY["identity"] and not (rule == ADDED_LATER["identity"] and value == f.default):
                training[f.name] = value
        return {
            "method": self.name,
            "num_classes": self.num_classes,
            "architecture": _plain(self.architecture()),
            "training": _plain(training),
            "work_size": _plain(self.work_size),
            "seed": self.seed,
        }

    # -- fit --------------------------------------------------------------------------------------------

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> "DeepMethod":
        """Train, or load reusable weights without reading the data (see the module docstring)."""
        source = self._checkpoint_to_load()
        if source is not None:
            self.load(source)
            self.fitted = True
            return self
        return super().fit(train, val)  # type: ignore[return-value]

    def _fit(self, train: list[Sample], val: list[Sample] | None) -> None:
        seed_everything(self.seed)  # the initial weights depend on the seed only
        model = self.build_model()
        result = self._train(model, train, val)
        self.model, self.norm, self.train_result = model, result.norm, result
        self.checkpoint_meta = {
            "format": _FORMAT,
            **self._identity(),
            "norm_mean": list(result.norm.mean),
            "norm_std": list(result.norm.std),
            "best_val_miou": result.best_score,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "stopped": result.stopped,
            "train_s": result.seconds,
            "charged_s": result.charged_s,
            "val_s": result.val_s,
            "precision": result.precision,
            "precision_note": result.precision_note,
            "history": result.history,
            "torch": str(torch.__version__),  # TorchVersion would not pass weights_only loading
            "device": str(self.device),
        }
        if self.artifacts_dir is not None:
            self.save(Path(self.artifacts_dir) / CHECKPOINT_NAME)
            _write_history(Path(self.artifacts_dir) / "history.csv", result.history)

    def _train(self, model: nn.Module, train: list[Sample], val: list[Sample] | None) -> TrainResult:
        """Train ``model`` in place on whole images; a method that trains on other data (patches) overrides this to
        give ``train_loop`` its own ``TrainData``."""
        return train_model(
            model,
            train,
            val,
            num_classes=self.num_classes,
            config=self.train_config(),
            seed=self.seed,
            ignore_index=self.ignore_index,
            device=self.device,
            desc=self.name,
        )

    @property
    def train_info(self) -> dict[str, Any]:
        """How training went (the checkpoint's record when weights were loaded): ``epochs_run``, ``best_epoch``
        (the epoch whose weights were kept), ``stop_reason``, ``budget_s``, ``patience`` and ``max_epochs`` (the
        epoch cap: ``epochs`` when trained by epochs), ``charged_s`` (budget-clock seconds of optimiser work),
        ``val_s`` (validation, wall clock), ``precision`` (used) and ``curve`` (one dict per epoch)."""
        meta = self.checkpoint_meta
        if meta is None:
            return {}
        training = meta["training"]
        return {
            "epochs_run": meta["epochs_run"],
            "best_epoch": meta.get("best_epoch"),
            "stop_reason": meta["stopped"],
            "budget_s": training.get("budget_s"),
            "patience": training.get("patience"),
            "max_epochs": training.get("epochs") if training.get("budget_s") is None else None,
            "charged_s": meta.get("charged_s"),
            "val_s": meta.get("val_s"),
            "precision": meta.get("precision", "fp32"),  # checkpoints from before precisions trained in float32
            "curve": meta.get("history", []),
        }

    def prepare_untrained(self) -> bool:
        """Random weights, for timing only (``segbench latency``): a network costs the same trained or not."""
        seed_everything(self.seed)
        model = self.build_model().to(self.device)
        if self.opts.channels_last and self.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        self.model = model.eval()
        self.norm = Normalization((128.0, 128.0, 128.0), (64.0, 64.0, 64.0))
        self.fitted = True
        return True

    # -- checkpoints ------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Save the fitted network and its metadata to ``path``; returns the path."""
        if self.model is None or self.checkpoint_meta is None:
            raise RuntimeError(f"{self.name}: nothing to save; call fit first")
        save_checkpoint(Path(path), self.model, self.checkpoint_meta)
        return Path(path)

    def load(self, path: str | Path) -> "DeepMethod":
        """Load weights saved by ``save`` (``weights_only=True``) and mark the method fitted.

        Raises:
            ValueError: The checkpoint belongs to another method, class count or architecture.
        """
        state, meta = load_checkpoint(path)
        mine = self._identity()
        if meta.get("method") not in (self.name, *self.loads_checkpoints_of) or meta.get("num_classes") != self.num_classes:
            raise ValueError(
                f"{path}: checkpoint of {meta.get('method')!r} with {meta.get('num_classes')} classes cannot load into "
                f"{self.name!r} with {self.num_classes} classes"
            )
        theirs = meta.get("architecture", {})
        differ = {k: (theirs.get(k), v) for k, v in mine["architecture"].items() if theirs.get(k) != v}
        if differ:
            hint = ", ".join(f"{self.name}.{k}={t!r} (now {m!r})" for k, (t, m) in differ.items())
            raise ValueError(f"{path}: the checkpoint's architecture differs; pass --opt {hint}")
        if meta.get("work_size") != mine["work_size"]:
            warnings.warn(
                f"{path}: trained at work_size={meta.get('work_size')!r}, now predicting at {self.work_size!r}", stacklevel=2
            )
        seed_everything(self.seed)
        model = self.build_model()
        model.load_state_dict(state)
        model.to(self.device)
        if self.opts.channels_last and self.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        model.eval()
        self.model = model
        self.norm = Normalization(tuple(meta["norm_mean"]), tuple(meta["norm_std"]))  # type: ignore[arg-type]
        self.checkpoint_meta = meta
        self.train_result = None
        self.fitted = True
        return self

    def _checkpoint_to_load(self) -> Path | None:
        if self.opts.checkpoint:
            return Path(self.opts.checkpoint)
        if not self.opts.reuse_checkpoint or self.artifacts_dir is None:
            return None
        path = Path(self.artifacts_dir) / CHECKPOINT_NAME
        if not path.is_file():
            return None
        try:
            _, meta = load_checkpoint(path)
        except Exception as exc:  # a damaged file is retrained over, not fatal
            warnings.warn(f"{path}: cannot read ({exc}); training again", stacklevel=3)
            return None
        mine = self._identity()
        if any(meta.get(k) != v for k, v in mine.items()):
            warnings.warn(f"{path}: saved with other settings; training again", stacklevel=3)
            return None
        return path

    # -- inference --------------------------------------------------------------------------------------

    def predict_proba_scaled(self, image: np.ndarray, scale: float) -> np.ndarray:
        """Run the network at ``scale`` times the working resolution (test-time augmentation); the
        probabilities are resized back to the image."""
        if scale <= 0:
            raise ValueError(f"{self.name}: scale must be > 0, got {scale}")
        if scale == 1.0:
            return self.predict_proba(image)
        image = to_rgb(image)
        h, w = image.shape[:2]
        wh, ww = work_shape(h, w, self.work_size)
        small = resize_image(image, (max(1, round(wh * scale)), max(1, round(ww * scale))))
        return resize_proba(self._proba_tensor(small[None])[0], (h, w))

    def predict_proba_batch(self, images: np.ndarray) -> np.ndarray:
        """``(N, h, w, 3) uint8`` images already at the working resolution -> ``(N, C, h, w)`` in one forward
        pass: the batched throughput path of ``segbench latency --batch`` (``predict_proba`` is batch size 1)."""
        return self._proba_tensor(images).cpu().numpy()

    def cost(self, shape: tuple[int, int]) -> dict[str, float]:
        """``params`` (learned weights) and ``flops`` (floating-point operations, a multiply-add counting 2, as
        ``torch.utils.flop_counter.FlopCounterMode`` counts them) of one forward pass on one ``(H, W)`` image
        resized to the working size."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: not fitted; call fit (or prepare_untrained) first")
        small = np.zeros((1, *work_shape(*shape, self.work_size), 3), np.uint8)
        with FlopCounterMode(display=False) as counter:
            self._proba_tensor(small)
        return {"params": float(sum(p.numel() for p in self.model.parameters())), "flops": float(counter.get_total_flops())}

    def _proba_tensor(self, images: np.ndarray) -> torch.Tensor:
        """``(N, h, w, 3) uint8`` at the working resolution -> ``(N, C, h, w)`` probabilities left on ``device``."""
        if self.model is None or self.norm is None:
            raise RuntimeError(f"{self.name}: not fitted; call fit (or load a checkpoint) first")
        return softmax_batch(self.model, images, self.norm, device=self.device, amp=self.opts.precision != "fp32",
                             channels_last=self.opts.channels_last)

    def _work_proba(self, small: np.ndarray) -> torch.Tensor | np.ndarray:
        # Untiled, the probabilities stay on the device: the resize back and the argmax run there too.
        return super()._work_proba(small) if self.tiling is not None else self._proba_tensor(small[None])[0]

    def _predict_proba(self, image: np.ndarray) -> np.ndarray:
        return self._proba_tensor(image[None])[0].cpu().numpy()


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively: a checkpoint's metadata compares equal to options after a round trip."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    if not history:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
