"""The method interface, post-processing stages, and composition by name (``"deeplab+crf+morph"``).

A method maps an ``(H, W, 3) uint8`` image to ``(C, H, W) float32`` class probabilities at the image's own
size. Subclasses implement ``_fit`` and ``_predict_proba`` at their working resolution; this base class
resizes training samples down to it and probabilities back up to the original image, so every method is
scored at the mask's original resolution whatever size it works at.

The contract every method honours, a ``Pipeline`` included (code outside ``segbench.methods`` never needs
to know which it holds): ``opts``, ``device``, ``artifacts_dir``, ``tiling``, ``work_size`` and ``fitted``;
``fit``, ``predict``, ``predict_proba(image)``, ``infer(image) -> Prediction`` (labels with their cost
split, probabilities on request), ``predict_proba_scaled(image, scale)`` (the test-time-augmentation hook),
``prepare_untrained``, ``cost`` and ``config``.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from segbench.datasets.base import IGNORE_INDEX, Sample
from segbench.datasets.io import to_rgb
from segbench.datasets.transforms import WorkSize, resize_image, resize_mask, resize_proba, work_shape
from segbench.measure.latency import Stopwatch
from segbench.methods.prediction import Prediction, labels_from_proba
from segbench.methods.tiling import Tiling
from segbench.registry import Registry

__all__ = [
    "METHODS",
    "STAGES",
    "Method",
    "Stage",
    "Pipeline",
    "IncompatibleError",
    "SetupError",
    "build_method",
    "split_spec",
    "labels_to_proba",
]


class IncompatibleError(ValueError):
    """A method cannot run on a dataset by design (e.g. a binary-only method on a multi-class dataset)."""


class SetupError(ValueError):
    """A method cannot be set up as asked here: its optional extra is not installed, or its weights file is
    missing, unreachable or does not fit. The message is one line naming the fix (the CLI exits 2 with it)."""


@dataclasses.dataclass
class NoOptions:
    """A method or stage without options."""


def _make_options(owner: type, cls: type, options: Mapping[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        valid = ", ".join(sorted(fields)) or "(none)"
        raise TypeError(f"{owner.name}: unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    return cls(**options)


def labels_to_proba(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot ``(C, H, W) float32`` probabilities from an ``(H, W)`` label map."""
    return (np.arange(num_classes)[:, None, None] == labels[None]).astype(np.float32)


class Method(abc.ABC):
    """A segmentation method behind the harness's one interface.

    Class constants (capability flags) tell the runner and the report what a method is:

    - ``needs_training``: ``fit`` learns from the training split (False: it only reads it, or nothing).
    - ``supports_gpu``: the method runs on CUDA when ``device`` allows it.
    - ``binary_only``: only two-class datasets (the runner records other cells as skipped).
    - ``default_work_size``: the resolution the method works at unless ``--size`` says otherwise.
    - ``quick_options``: option overrides for small budgets (the default suite, tests).
    - ``extra``: the optional dependency group (``pip install 'segbench[<extra>]'``) the method needs beyond
      the core, with ``extra_modules`` the modules it brings; None for the core's methods. Methods with an
      extra are left out of the default suite and run when named.

    Options are a dataclass ``Options`` nested in the subclass; ``self.opts`` holds the validated values.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    family: ClassVar[str] = "classical"
    needs_training: ClassVar[bool] = True
    supports_gpu: ClassVar[bool] = False
    binary_only: ClassVar[bool] = False
    default_work_size: ClassVar[WorkSize] = None
    quick_options: ClassVar[dict[str, Any]] = {}
    extra: ClassVar[str | None] = None
    extra_modules: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type] = NoOptions
    #: Where the method computes; deep methods set it from their ``device`` option.
    device: torch.device = torch.device("cpu")

    def __init__(
        self,
        num_classes: int,
        *,
        seed: int = 0,
        work_size: WorkSize = None,
        ignore_index: int = IGNORE_INDEX,
        tiling: Tiling | None = None,
        artifacts_dir: str | Path | None = None,
        **options: Any,
    ) -> None:
        """Validate the options (``Options`` fields) and keep the settings.

        Args:
            num_classes: Number of classes of the dataset (at least 2).
            seed: Seed for everything random in fitting.
            work_size: Working resolution; None: ``default_work_size``.
            ignore_index: Label value to ignore in training.
            tiling: Predict in overlapping tiles at the working resolution (``segbench.methods.tiling``);
                None: the whole image at once.
            artifacts_dir: Where the method may keep files of its cell (checkpoints); None: nowhere.
            **options: Values for the fields of ``Options``.
        """
        if num_classes < 2:
            raise ValueError(f"{self.name}: num_classes must be at least 2, got {num_classes}")
        if self.binary_only and num_classes != 2:
            raise IncompatibleError(f"{self.name} handles two-class datasets only; this one has {num_classes} classes")
        self.num_classes = num_classes
        self.seed = seed
        self.work_size = work_size if work_size is not None else self.default_work_size
        self.ignore_index = ignore_index
        self.opts = _make_options(type(self), self.Options, options)
        self.fitted = False
        self.tiling = tiling
        self.artifacts_dir: Path | None = Path(artifacts_dir) if artifacts_dir is not None else None

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this method cannot run in this environment (its extra's modules do not import), or None.

        Imports the modules, so a package that is installed but broken (e.g. a torchvision built for another
        torch) counts as missing too."""
        problems = []
        for module in cls.extra_modules:
            try:
                importlib.import_module(module)
            except Exception as exc:  # ImportError, or a broken install failing at import time
                problems.append(module if isinstance(exc, ModuleNotFoundError) and exc.name == module
                                else f"{module}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        if not problems:
            return None
        return (f"{cls.name} needs the optional extra {cls.extra!r}, which is not installed here ({'; '.join(problems)}): "
                f"pip install 'segbench[{cls.extra}]' into a venv whose torch matches it, or run `make {cls.extra}` "
                f"(it builds .venv-{cls.extra})")

    # -- public API -------------------------------------------------------------------------------------

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> "Method":
        """Learn from ``train`` (and ``val`` for model selection); returns self."""
        if self.needs_training and len(train) == 0:
            raise ValueError(f"{self.name}: the training split is empty; give the dataset more images or a split file")
        self._fit(self._to_work(train), self._to_work(val) if val is not None else None)
        self.fitted = True
        return self

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, 3) uint8`` image -> ``(C, H, W) float32`` probabilities at the image's size.

        Greyscale, RGBA and 16-bit arrays are converted first (``segbench.datasets.io.to_rgb``).
        """
        rgb, proba = self._work(image, Stopwatch(self.device))
        return resize_proba(proba, rgb.shape[:2])

    def predict(self, image: np.ndarray) -> np.ndarray:
        """``(H, W)`` label map: the argmax of ``predict_proba`` (first class on ties), computed cheaply."""
        return self.infer(image).labels

    def infer(self, image: np.ndarray) -> Prediction:
        """Labels, their cost split into ``model_ms`` and ``overhead_ms``, and probabilities on request.

        The labels equal ``predict_proba(image).argmax(0)``; the full-resolution probabilities are computed
        only when ``Prediction.proba()`` is called, outside the timed part.
        """
        watch = Stopwatch(self.device)
        rgb, proba = self._work(image, watch)
        shape = rgb.shape[:2]
        labels = labels_from_proba(proba, shape)
        watch.lap("overhead")
        return Prediction(labels, watch.model_ms, watch.overhead_ms, lambda: resize_proba(proba, shape))

    def predict_proba_scaled(self, image: np.ndarray, scale: float) -> np.ndarray:
        """Probabilities of the image rescaled by ``scale``, resized back to its size: the hook of the ``tta`` stage.

        This default rescales the image itself; a method whose cost is its working resolution (a network)
        overrides it to work at ``scale`` times that resolution instead.
        """
        if scale <= 0:
            raise ValueError(f"{self.name}: scale must be > 0, got {scale}")
        if scale == 1.0:
            return self.predict_proba(image)
        h, w = image.shape[:2]
        small = resize_image(image, (max(1, round(h * scale)), max(1, round(w * scale))))
        return resize_proba(self.predict_proba(small), (h, w))

    @property
    def base_method(self) -> "Method":
        """The method whose fit the stages of a pipeline follow: itself for a bare method."""
        return self

    def fit_stages(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> "Method":
        """Fit what follows a fitted ``base_method`` (nothing for a bare method); returns self."""
        return self

    def with_base(self, base: "Method") -> "Method":
        """This method around ``base``, an already fitted ``base_method`` of the same settings (one fit shared by
        several pipelines): a bare method is ``base`` itself."""
        return base

    def cost(self, shape: tuple[int, int]) -> dict[str, float]:
        """Model cost of one ``(H, W)`` image at the working size: ``params`` and ``flops`` where counted.

        Only networks count them (``DeepMethod``); other methods return an empty dict.
        """
        return {}

    def _work(self, image: np.ndarray, watch: Stopwatch) -> tuple[np.ndarray, torch.Tensor | np.ndarray]:
        """The RGB image and the ``(C, h, w)`` probabilities at the working size (on ``device``), timed on ``watch``."""
        rgb = to_rgb(image)
        small = resize_image(rgb, work_shape(*rgb.shape[:2], self.work_size))
        watch.lap("overhead")
        proba = self._work_proba(small)
        watch.lap("model")
        if tuple(proba.shape) != (self.num_classes, *small.shape[:2]):
            raise RuntimeError(f"{self.name}: _predict_proba returned {tuple(proba.shape)}, expected {(self.num_classes, *small.shape[:2])}")
        return rgb, proba

    def _work_proba(self, small: np.ndarray) -> torch.Tensor | np.ndarray:
        """``_predict_proba`` on the whole image or tile by tile; deep methods keep the result on their device."""
        return self._predict_proba(small) if self.tiling is None else self.tiling.predict(self._predict_proba, small)

    @property
    def train_info(self) -> dict[str, Any]:
        """What training did, for the records: ``epochs_run``, ``budget_s``, ``stop_reason`` of a trained network;
        empty for methods that train none (``DeepMethod`` fills it)."""
        return {}

    def prepare_untrained(self) -> bool:
        """Make ``predict`` work without ``fit``, for timing only; return False where that is impossible.

        Deep models override this (random weights cost the same to run as trained ones); methods whose
        cost depends on what they learned keep the default, and ``segbench latency`` fits them instead.
        """
        return False

    def setup(self) -> dict[str, Any]:
        """Fetch and check what the method needs beyond the data (a pretrained weights file), before any cell runs;
        returns its provenance for ``environment.json`` (empty: nothing needed).

        Raises:
            SetupError: it cannot be had here; the message names the fix.
        """
        return {}

    def config(self) -> dict[str, Any]:
        """Everything that identifies this method's settings in records."""
        config = {"method": self.name, "work_size": self.work_size, **dataclasses.asdict(self.opts)}
        if self.tiling is not None:
            config["tiling"] = dataclasses.asdict(self.tiling)
        return config

    # -- for subclasses ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def _fit(self, train: list[Sample], val: list[Sample] | None) -> None:
        """Fit on samples already resized to the working resolution."""

    @abc.abstractmethod
    def _predict_proba(self, image: np.ndarray) -> np.ndarray:
        """``(h, w, 3) uint8`` at the working resolution -> ``(C, h, w) float32``."""

    def _to_work(self, samples: Sequence[Sample]) -> list[Sample]:
        out = []
        for s in samples:
            shape = work_shape(*s.mask.shape, self.work_size)
            out.append(
                Sample(
                    id=s.id,
                    image=resize_image(s.image, shape),
                    mask=resize_mask(s.mask, shape),
                    ignore=None if s.ignore is None else resize_mask(s.ignore, shape),
                )
            )
        return out


class Stage(abc.ABC):
    """A post-processing stage: probabilities of the method before it in, probabilities out.

    Stages run at the image's original resolution. ``fit`` may tune the stage on the training split given
    the pipeline before it (never on the test split).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    #: The working size of the pipeline the stage follows (``build_method`` sets it), for stages that work
    #: at a reduced resolution (the CRF).
    work_size: WorkSize = None

    def __init__(self, num_classes: int, *, seed: int = 0, **options: Any) -> None:
        self.num_classes = num_classes
        self.seed = seed
        self.opts = _make_options(type(self), self.Options, options)

    def fit(self, before: Method, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        """Tune on the training split; the default does nothing."""

    @abc.abstractmethod
    def apply(self, image: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """``image (H, W, 3) uint8``, ``proba (C, H, W)`` -> refined ``(C, H, W) float32``."""

    def config(self) -> dict[str, Any]:
        return {"stage": self.name, **dataclasses.asdict(self.opts)}


class Pipeline(Method):
    """A base method followed by post-processing stages, built from a spec such as ``"slic+crf+morph"``.

    It honours the whole method contract: settings (``opts``, ``device``, ``artifacts_dir``, ``tiling``,
    ``work_size``, capability flags) are its base method's; stages run at the image's size after the base
    method's probabilities are resized to it. ``fit`` fits the base, then the stages; ``fit_stages`` fits only
    the stages around a base that is already fitted (one fit shared by several pipelines, ``with_base``).
    """

    def __init__(self, base: Method, stages: Sequence[Stage]) -> None:
        # Not Method.__init__: every setting is the base method's, read through the properties below.
        self.base = base
        self.stages = list(stages)
        self.name = "+".join([base.name, *(s.name for s in stages)])  # type: ignore[misc]
        self.needs_training = base.needs_training  # type: ignore[misc]
        self.supports_gpu = base.supports_gpu  # type: ignore[misc]
        self.binary_only = base.binary_only  # type: ignore[misc]
        self.family = base.family  # type: ignore[misc]
        self.fitted = False

    num_classes = property(lambda self: self.base.num_classes)
    seed = property(lambda self: self.base.seed)
    work_size = property(lambda self: self.base.work_size)
    ignore_index = property(lambda self: self.base.ignore_index)
    opts = property(lambda self: self.base.opts)
    device = property(lambda self: self.base.device)  # type: ignore[assignment]
    tiling = property(lambda self: self.base.tiling)

    @property
    def artifacts_dir(self) -> Path | None:
        return self.base.artifacts_dir

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> "Pipeline":
        self.base.fit(train, val)
        return self.fit_stages(train, val)

    @property
    def base_method(self) -> Method:
        return self.base

    def with_base(self, base: Method) -> "Pipeline":
        return Pipeline(base, self.stages)

    def fit_stages(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> "Pipeline":
        """Fit only the stages, around a base that is already fitted (one fitted base shared by pipelines)."""
        if not self.base.fitted:
            raise RuntimeError(f"{self.name}: fit_stages needs a fitted base; call fit")
        for i, stage in enumerate(self.stages):
            before = self.base if i == 0 else Pipeline(self.base, self.stages[:i])
            before.fitted = True
            stage.fit(before, train, val)
        self.fitted = True
        return self

    def prepare_untrained(self) -> bool:
        """Prepare the base method for timing; the stages still need ``fit_stages`` (``fit`` would fit the base)."""
        return self.base.prepare_untrained()

    def setup(self) -> dict[str, Any]:
        return self.base.setup()

    def cost(self, shape: tuple[int, int]) -> dict[str, float]:
        """The base method's cost (stages are not counted)."""
        return self.base.cost(shape)

    def _work(self, image: np.ndarray, watch: Stopwatch) -> tuple[np.ndarray, torch.Tensor | np.ndarray]:
        rgb, proba = self.base._work(image, watch)  # stages see the same RGB image as the base method
        proba = resize_proba(proba, rgb.shape[:2])
        watch.lap("overhead")
        for stage in self.stages:
            proba = stage.apply(rgb, proba)
        watch.lap("model")
        return rgb, proba

    def config(self) -> dict[str, Any]:
        return {**self.base.config(), "method": self.name, "stages": [s.config() for s in self.stages]}

    @property
    def train_info(self) -> dict[str, Any]:
        return self.base.train_info

    def _fit(self, train, val):  # pragma: no cover - Pipeline overrides fit
        raise NotImplementedError

    def _predict_proba(self, image):  # pragma: no cover - Pipeline overrides _work
        raise NotImplementedError


METHODS: Registry[type[Method]] = Registry("method")
STAGES: Registry[type[Stage]] = Registry("stage")


def split_spec(spec: str) -> tuple[str, list[str]]:
    """``"deeplab+crf+morph"`` -> ``("deeplab", ["crf", "morph"])``, checking every name exists."""
    parts = [p.strip() for p in spec.split("+")]
    if not parts or any(not p for p in parts):
        raise ValueError(f"method spec {spec!r} is malformed; write METHOD or METHOD+STAGE+STAGE (e.g. slic+crf)")
    base, stages = parts[0], parts[1:]
    METHODS.get(base)
    for stage in stages:
        if stage in METHODS and stage not in STAGES:
            raise ValueError(f"{spec!r}: {stage!r} is a method, not a stage; only the first name may be a method")
        STAGES.get(stage)
    return base, stages


def build_method(
    spec: str,
    num_classes: int,
    *,
    seed: int = 0,
    work_size: WorkSize = None,
    ignore_index: int = IGNORE_INDEX,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    quick: bool = False,
    tiling: Tiling | None = None,
    artifacts_dir: str | Path | None = None,
    base: Method | None = None,
) -> Method:
    """Build a method or pipeline from its spec.

    Args:
        spec: A registered method name, optionally followed by ``+stage`` names.
        num_classes: Number of classes of the dataset.
        seed: Seed for everything random in fitting.
        work_size: Working resolution (see ``segbench.datasets.transforms.WorkSize``); None: the method's default.
        ignore_index: Label value to ignore in training.
        options: Per-component options keyed by method or stage name, e.g. ``{"slic": {"n_segments": 400}}``.
        quick: Apply each method's ``quick_options`` (small budgets) before ``options``.
        tiling: Predict in overlapping tiles at the working resolution (``segbench.methods.tiling``).
        artifacts_dir: Where the method may keep files of its cell (checkpoints).
        base: An already built (possibly fitted) base method to put the stages after, instead of building
            one; its name must be the spec's first name.
    """
    options = options or {}
    base_name, stage_names = split_spec(spec)
    if base is None:
        base_cls = METHODS.get(base_name)
        base_opts = {**(base_cls.quick_options if quick else {}), **options.get(base_name, {})}
        base = base_cls(num_classes, seed=seed, work_size=work_size, ignore_index=ignore_index, tiling=tiling,
                        artifacts_dir=artifacts_dir, **base_opts)
    elif base.name != base_name:
        raise ValueError(f"{spec!r}: the given base method is {base.name!r}, not {base_name!r}")
    if not stage_names:
        return base
    stages = [STAGES.get(n)(num_classes, seed=seed, **options.get(n, {})) for n in stage_names]
    for stage in stages:
        stage.work_size = base.work_size
    return Pipeline(base, stages)
