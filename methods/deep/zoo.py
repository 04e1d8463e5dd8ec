"""The field's model zoos as deep methods: segmentation_models_pytorch (smp) architectures on smp or timm
encoders, and torchvision's segmentation networks, trained by segbench's one training loop under the same
protocol as the hand-written networks (work size, budgets, folds, seeds, shared bases: ``smp-unet+crf``).

They need the ``zoo`` extra (``pip install 'segbench[zoo]'``: torchvision, segmentation-models-pytorch,
timm); without it they are still listed, and asking for one is a one-line error naming the extra.

Initial weights, the ``weights`` option:

* ``none`` (default): the library's random initialisation, seeded. No file is read and nothing touches the
  network (torchvision's builders get ``weights=None, weights_backbone=None``, smp ``encoder_weights=None``;
  ``HF_HUB_OFFLINE=1`` is set unless the user set it, so a stray hub call fails at once instead of retrying).
* ``imagenet``: the encoder's ImageNet weights through the library's own download and cache
  (torchvision: ``$TORCH_HOME/hub/checkpoints/<file of the weights URL>``; smp encoders: the Hugging Face
  cache, repository ``smp-hub/<encoder>.imagenet``; ``tu-`` timm encoders: the Hugging Face cache, timm's
  repository for that encoder). A cached file is used without any network call; otherwise the host is probed
  (3 s) and, when unreachable, the error says which file to place where.
* a path: a state dict (``torch.save`` or ``.safetensors``; a ``{"state_dict": ...}`` or ``{"model": ...}``
  wrapper is unwrapped) of the whole network or of its encoder (smp ``model.encoder``, torchvision
  ``model.backbone``); for ``tu-`` encoders also timm's own checkpoint of that model, loaded by timm
  (``pretrained_cfg_overlay=dict(file=PATH)``). A file that fits neither is an error naming it and the first
  mismatching keys.

The weights used (``weights``: none, imagenet or the path; ``weights_source``: the file or URL;
``weights_sha256``) go into ``train_info`` (summary.csv) and, from ``weights_provenance``, environment.json.
The runner resolves them once before any cell (``prepare``), so a download happens once, in the driver.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segbench.methods.base import METHODS, SetupError
from segbench.methods.deep.method import DeepMethod, DeepOptions

__all__ = ["ZooMethod", "SmpMethod", "TorchvisionMethod", "ZooNetwork", "WEIGHT_CHOICES"]

#: Keyword values of the ``weights`` option; anything else is a path.
WEIGHT_CHOICES = ("none", "imagenet")
#: Seconds to wait for a download host before saying which file to place where.
PROBE_TIMEOUT_S = 3.0

# Never a hub call unless weights=imagenet asks for one (set before huggingface_hub is imported; a value the
# user set is kept, and decides whether imagenet may download).
_USER_HF_OFFLINE = os.environ.get("HF_HUB_OFFLINE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class ZooNetwork(nn.Module):
    """A library network behind the ``(N, 3, H, W) -> (N, C, H, W)`` logits contract of ``DeepMethod``.

    Pads the input with zeros (the normalised mean) to a multiple of ``multiple`` (smp's encoders need sides
    divisible by their output stride, e.g. 32; CamVid's 240x180 is not) and crops the logits back, and picks
    ``key`` from a network that returns a dict (torchvision's ``{"out": ...}``).
    """

    def __init__(self, net: nn.Module, *, multiple: int = 1, key: str | None = None) -> None:
        super().__init__()
        self.net = net
        self.multiple = multiple
        self.key = key

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        out = self.net(x)
        if self.key is not None:
            out = out[self.key]
        return out[..., :h, :w]


@dataclass(kw_only=True)
class ZooOptions(DeepOptions):
    """Training-loop options plus ``weights``: ``none``, ``imagenet`` or a path (see the module docstring), and
    ``bn_momentum``: the momentum of every BatchNorm's running statistics (None: the library's own).

    0.1 (PyTorch's default) by default because torchvision's MobileNetV3 networks use 0.01, tuned for long
    ImageNet runs: after the few epochs a CPU budget buys, their running statistics still sit near their initial
    values, and in eval mode ``tv-lraspp-mobilenet`` predicted background everywhere (PH2, 6 epochs at 128 px:
    Dice 0.00 with 0.01, 0.83 with 0.1, the same training loss; see docs/zoo.md)."""

    weights: str = "none"
    bn_momentum: float | None = 0.1


class ZooMethod(DeepMethod):
    """A zoo network trained by the one training loop; subclasses say how to build it and where its encoder is."""

    extra: ClassVar[str | None] = "zoo"
    Options: ClassVar[type] = ZooOptions
    quick_options: ClassVar[dict[str, Any]] = {"epochs": 2, "patience": None, "warmup_epochs": 0.5}
    #: Attribute of the library network holding the encoder (``encoder`` in smp, ``backbone`` in torchvision).
    encoder_attr: ClassVar[str] = "encoder"

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        problem = self.unavailable()
        if problem:
            raise SetupError(problem)
        super().__init__(num_classes, **kwargs)
        if self.opts.bn_momentum is not None and not 0 < self.opts.bn_momentum <= 1:
            raise SetupError(f"{self.name}.bn_momentum={self.opts.bn_momentum}: give a value in (0, 1], or none for the library's")
        if not self.opts.weights:
            raise SetupError(f"{self.name}.weights is empty; give none, imagenet or a path to a state-dict file")
        self._provenance: dict[str, Any] | None = None

    # -- for subclasses ---------------------------------------------------------------------------------

    def network(self) -> nn.Module:
        """The library network, randomly initialised (no download, no file)."""
        raise NotImplementedError

    def imagenet_file(self) -> tuple[Path, str, str]:
        """``(cached path, download URL or hub id, placement hint)`` of the encoder's ImageNet weights."""
        raise NotImplementedError

    def download_imagenet(self) -> Path:
        """Download the ImageNet weights through the library's own mechanism; returns the cached file."""
        raise NotImplementedError

    def load_imagenet(self, net: nn.Module, path: Path) -> None:
        """Load the cached ImageNet file into ``net`` the library's way."""
        self.load_into(net, path)

    def wrap(self, net: nn.Module) -> nn.Module:
        return ZooNetwork(net)

    # -- the network ------------------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        model = self.wrap(self.network())
        if self.opts.bn_momentum is not None:
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = self.opts.bn_momentum
        return model

    def _train(self, model: nn.Module, train: list[Any], val: list[Any] | None) -> Any:
        self.load_weights(model)  # training starts from the asked-for weights
        return super()._train(model, train, val)

    def prepare_untrained(self) -> bool:
        """The network with its ``weights`` loaded (random under ``none``), not trained: for timing, or to predict
        with pretrained weights as they are."""
        super().prepare_untrained()
        self.load_weights(self.model)
        return True

    def load_weights(self, model: nn.Module) -> dict[str, Any]:
        """Load the ``weights`` option's file into ``model`` (a ``build_model`` result); returns the provenance."""
        info = self.prepare()
        if info["weights"] == "imagenet":
            self.load_imagenet(model.net, Path(info["weights_source_file"]))
        elif info["weights"] != "none":
            self.load_into(model.net, Path(info["weights"]))
        return info

    # -- provenance -------------------------------------------------------------------------------------

    def prepare(self) -> dict[str, Any]:
        """Resolve the ``weights`` option to a local file (downloading it under ``imagenet`` when not cached and
        the host answers) and check that it fits; returns ``weights``, ``weights_source``, ``weights_sha256``.

        Raises:
            SetupError: a missing file, no network with nothing cached (naming the file to place and where),
                or a file that does not fit (naming the first mismatching keys).
        """
        if self._provenance is not None:
            return self._provenance
        weights = self.opts.weights
        if weights == "none":
            info = {"weights": "none", "weights_source": "", "weights_sha256": ""}
        elif weights == "imagenet":
            cached, source, hint = self.imagenet_file()
            if not cached.is_file():
                if _USER_HF_OFFLINE not in (None, "", "0") or not _reachable(source):
                    raise SetupError(f"{self.name} weights=imagenet: {cached.name} is not cached here and "
                                     f"{_host(source)} cannot be reached; {hint}")
                cached = self.download_imagenet()
            info = {"weights": "imagenet", "weights_source": source, "weights_sha256": sha256(cached),
                    "weights_source_file": str(cached)}
        else:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise SetupError(f"{self.name}.weights={weights}: no such file; give a state dict of the whole network "
                                 f"or of its {self.encoder_attr} (torch.save or .safetensors), or none / imagenet")
            self.load_into(self.network(), path)  # fails here, before any training, on a file that does not fit
            info = {"weights": str(path), "weights_source": str(path.resolve()), "weights_sha256": sha256(path)}
        self._provenance = info
        return info

    @property
    def train_info(self) -> dict[str, Any]:
        info = dict(super().train_info)
        meta = self.checkpoint_meta or {}
        source = meta.get("weights_provenance") or self._provenance or {"weights": self.opts.weights}
        info.update({k: source.get(k, "") for k in ("weights", "weights_sha256", "weights_source")})
        return info

    def setup(self) -> dict[str, Any]:
        return {k: v for k, v in self.prepare().items() if k != "weights_source_file"}

    def architecture(self) -> dict[str, Any]:
        """The network's options; ``weights`` only decides where training starts (a checkpoint trained from any
        weights loads into the same architecture)."""
        return {k: v for k, v in super().architecture().items() if k != "weights"}

    def _identity(self) -> dict[str, Any]:
        """A reusable ``best.pt`` must also have started from the same weights (same file hash)."""
        identity = super()._identity()
        if self.opts.weights != "none":
            identity["weights"] = {"weights": self.opts.weights, "sha256": self.prepare()["weights_sha256"]}
        return identity

    def save(self, path: str | Path) -> Path:
        if self.checkpoint_meta is not None and self._provenance is not None:  # where its initial weights came from
            self.checkpoint_meta.setdefault("weights_provenance", self.setup())
        return super().save(path)

    # -- loading a state dict ---------------------------------------------------------------------------

    def load_into(self, net: nn.Module, path: Path) -> None:
        """Load a state-dict file into the whole library network or its encoder, whichever it fits exactly.

        Raises:
            SetupError: it fits neither; the message names the file and the first mismatching keys.
        """
        state = read_state_dict(path)
        encoder = getattr(net, self.encoder_attr)
        attempts = []
        for label, module, prefix in (("network", net, ""), (self.encoder_attr, encoder, f"{self.encoder_attr}.")):
            keys = state if not prefix or not all(k.startswith(prefix) for k in state) else \
                {k[len(prefix):]: v for k, v in state.items()}
            problem = mismatch(keys, module.state_dict())
            if problem is None:
                module.load_state_dict(keys, strict=False)  # only num_batches_tracked may be absent
                return
            attempts.append((len(set(keys) & set(module.state_dict())), label, problem))
        fallback = self.load_other_format(net, path, state)
        if fallback is None:
            return
        attempts.append(fallback)
        _, label, problem = max(attempts, key=lambda a: a[0])  # the target it came closest to
        raise SetupError(f"{self.name}.weights={path}: fits neither the network nor its {self.encoder_attr} "
                         f"(closest: the {label}: {problem})")

    def load_other_format(self, net: nn.Module, path: Path, state: dict[str, Tensor]) -> tuple[int, str, str] | None:
        """Another layout the library loads itself; None when loaded, else ``(overlap, target, problem)``."""
        return 0, self.encoder_attr, "no other layout is known for this library"


# -- segmentation_models_pytorch --------------------------------------------------------------------------


@dataclass(kw_only=True)
class SmpOptions(ZooOptions):
    """``encoder``: an smp encoder name (``resnet18``, ``mobilenet_v2``, ``efficientnet-b0`` ...) or a timm one
    prefixed ``tu-`` (``tu-convnext_atto``, ``tu-resnet18.a1_in1k``)."""

    encoder: str = "resnet18"


class SmpMethod(ZooMethod):
    """An smp architecture (``arch``: the class name in ``segmentation_models_pytorch``)."""

    arch: ClassVar[str]
    extra_modules: ClassVar[tuple[str, ...]] = ("segmentation_models_pytorch", "timm")
    Options: ClassVar[type] = SmpOptions

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        import segmentation_models_pytorch as smp

        encoder = self.opts.encoder
        if not encoder.startswith("tu-") and encoder not in smp.encoders.get_encoder_names():
            raise SetupError(f"{self.name}.encoder={encoder!r}: not an smp encoder; give one of smp's names "
                             "(resnet18, resnet34, mobilenet_v2, efficientnet-b0, ...) or tu-<timm model name>")
        if encoder.startswith("tu-"):
            import timm

            if not timm.is_model(encoder[3:].split(".")[0]):
                raise SetupError(f"{self.name}.encoder={encoder!r}: timm has no model {encoder[3:]!r}; "
                                 "see timm.list_models()")

    def network(self, **extra: Any) -> nn.Module:
        import segmentation_models_pytorch as smp

        kwargs = {"encoder_name": self.opts.encoder, "encoder_weights": None, "in_channels": 3,
                  "classes": self.num_classes, **extra}
        return getattr(smp, self.arch)(**kwargs)

    def wrap(self, net: nn.Module) -> nn.Module:
        return ZooNetwork(net, multiple=int(net.encoder.output_stride))

    def imagenet_file(self) -> tuple[Path, str, str]:
        from huggingface_hub import constants

        repo, filename, revision = self._hub_file()
        cached = _hub_cached(repo, filename, revision)
        url = f"https://huggingface.co/{repo}/resolve/{revision or 'main'}/{filename}"
        hint = (f"on a machine with internet download {url} and pass {self.name}.weights=PATH to it, or copy that "
                f"machine's {constants.HF_HUB_CACHE}/models--{repo.replace('/', '--')} folder here")
        return cached, url, hint

    def download_imagenet(self) -> Path:
        from huggingface_hub import constants, hf_hub_download

        repo, filename, revision = self._hub_file()
        saved, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, False  # the user asked for imagenet
        try:
            return Path(hf_hub_download(repo, filename=filename, revision=revision))
        finally:
            constants.HF_HUB_OFFLINE = saved

    def _hub_file(self) -> tuple[str, str, str | None]:
        """``(repository, file, revision)`` of the encoder's ImageNet weights, as the library names them."""
        encoder = self.opts.encoder
        if encoder.startswith("tu-"):
            import timm

            cfg = timm.models.get_pretrained_cfg(encoder[3:])
            if cfg is None or not cfg.hf_hub_id:
                raise SetupError(f"{self.name}.encoder={encoder}: timm has no pretrained weights on the Hugging Face hub "
                                 "for it; pick a tagged model (tu-resnet18.a1_in1k) or pass weights=PATH")
            return cfg.hf_hub_id, "model.safetensors", None
        import segmentation_models_pytorch as smp

        settings = smp.encoders.encoders[encoder]["pretrained_settings"]
        if "imagenet" not in settings:
            raise SetupError(f"{self.name}.encoder={encoder}: smp has no imagenet weights for it (it has: "
                             f"{', '.join(settings) or 'none'}); pass weights=PATH")
        return settings["imagenet"]["repo_id"], "model.safetensors", settings["imagenet"]["revision"]

    def load_other_format(self, net: nn.Module, path: Path, state: dict[str, Tensor]) -> tuple[int, str, str] | None:
        """A ``tu-`` encoder also takes timm's own checkpoint of its model (classifier included), loaded by timm."""
        if not self.opts.encoder.startswith("tu-"):
            return super().load_other_format(net, path, state)
        try:
            donor = self.network(encoder_weights=True, pretrained_cfg_overlay={"file": str(path)})
        except Exception as exc:  # timm's loader names what did not fit
            return 0, "timm model", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        net.encoder.load_state_dict(donor.encoder.state_dict())
        return None

    def load_imagenet(self, net: nn.Module, path: Path) -> None:
        self.load_into(net, path)  # smp's files are the encoder's state dict; timm's go through timm's loader


# -- torchvision ----------------------------------------------------------------------------------------------


class TorchvisionMethod(ZooMethod):
    """A torchvision segmentation network (``builder``: its function in ``torchvision.models.segmentation``),
    without the auxiliary head; its ``{"out": ...}`` is the logits."""

    builder: ClassVar[str]
    extra_modules: ClassVar[tuple[str, ...]] = ("torchvision",)
    encoder_attr: ClassVar[str] = "backbone"

    def network(self, **extra: Any) -> nn.Module:
        from torchvision.models import segmentation

        kwargs = {"weights": None, "weights_backbone": None, "num_classes": self.num_classes, **extra}
        if self.builder != "lraspp_mobilenet_v3_large":  # the only builder without an auxiliary head
            kwargs["aux_loss"] = False
        return getattr(segmentation, self.builder)(**kwargs)

    def wrap(self, net: nn.Module) -> nn.Module:
        return ZooNetwork(net, key="out")

    def _backbone_weights(self) -> Any:
        """The ImageNet weights torchvision's builder would fetch by default (its ``weights_backbone`` default)."""
        import inspect

        from torchvision.models import segmentation

        return inspect.signature(getattr(segmentation, self.builder)).parameters["weights_backbone"].default

    def imagenet_file(self) -> tuple[Path, str, str]:
        url = self._backbone_weights().url
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        name = os.path.basename(urlparse(url).path)
        hint = (f"on a machine with internet download {url} and place it as {folder / name} "
                "(torchvision's cache: $TORCH_HOME/hub/checkpoints)")
        return folder / name, url, hint

    def download_imagenet(self) -> Path:
        self._backbone_weights().get_state_dict(progress=False, check_hash=True)  # torchvision's download and cache
        return self.imagenet_file()[0]

    def load_imagenet(self, net: nn.Module, path: Path) -> None:
        # torchvision maps the classification file onto the backbone itself; the file is cached, so no download.
        donor = self.network(weights_backbone=self._backbone_weights())
        net.backbone.load_state_dict(donor.backbone.state_dict())


# -- the registered methods --------------------------------------------------------------------------------


# Each a plain module-level class, so that a fitted method pickles (shared bases, Dask workers).
_ENCODER = "on an smp or timm encoder (encoder=, default resnet18)"


@METHODS.register("smp-unet")
class SmpUnet(SmpMethod):
    arch = "Unet"
    description = f"smp Unet: U-Net decoder {_ENCODER}"


@METHODS.register("smp-unetplusplus")
class SmpUnetPlusPlus(SmpMethod):
    arch = "UnetPlusPlus"
    description = f"smp UnetPlusPlus: UNet++ nested decoder {_ENCODER}"


@METHODS.register("smp-fpn")
class SmpFPN(SmpMethod):
    arch = "FPN"
    description = f"smp FPN: feature pyramid network decoder {_ENCODER}"


@METHODS.register("smp-deeplabv3plus")
class SmpDeepLabV3Plus(SmpMethod):
    arch = "DeepLabV3Plus"
    description = f"smp DeepLabV3Plus: ASPP and a decoder {_ENCODER}"


@METHODS.register("tv-fcn-resnet50")
class TvFcnResnet50(TorchvisionMethod):
    builder = "fcn_resnet50"
    description = "torchvision fcn_resnet50: FCN on a dilated ResNet-50"


@METHODS.register("tv-deeplabv3-resnet50")
class TvDeepLabV3Resnet50(TorchvisionMethod):
    builder = "deeplabv3_resnet50"
    description = "torchvision deeplabv3_resnet50: DeepLabv3 on a dilated ResNet-50"


@METHODS.register("tv-deeplabv3-mobilenet")
class TvDeepLabV3MobileNet(TorchvisionMethod):
    builder = "deeplabv3_mobilenet_v3_large"
    description = "torchvision deeplabv3_mobilenet_v3_large: DeepLabv3 on MobileNetV3-Large"


@METHODS.register("tv-lraspp-mobilenet")
class TvLRASPPMobileNet(TorchvisionMethod):
    builder = "lraspp_mobilenet_v3_large"
    description = "torchvision lraspp_mobilenet_v3_large: LR-ASPP on MobileNetV3-Large"


# -- helpers ------------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A state dict from a ``.safetensors`` or ``torch.save`` file (``weights_only``: no code runs), unwrapped
    from ``{"state_dict": ...}`` / ``{"model": ...}`` and from a ``module.`` prefix (DataParallel)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SetupError(f"{path}: cannot read a state dict ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                         "give a torch.save'd state dict or a .safetensors file") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise SetupError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def mismatch(state: dict[str, Tensor], target: dict[str, Tensor], shown: int = 3) -> str | None:
    """None when ``state`` fits ``target`` exactly (BatchNorm's ``num_batches_tracked`` may be absent), else
    the first missing, unexpected and differently shaped keys."""
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in target]
    shapes = [f"{k} {tuple(state[k].shape)} in the file, {tuple(target[k].shape)} in the model"
              for k in target if k in state and state[k].shape != target[k].shape]
    parts = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shapes differ", shapes)):
        if keys:
            more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
            parts.append(f"{label}: {', '.join(keys[:shown])}{more}")
    return "; ".join(parts) or None


def _host(url: str) -> str:
    return urlparse(url).hostname or url


def _reachable(url: str) -> bool:
    """Whether the download host answers within ``PROBE_TIMEOUT_S`` (a TCP connection to port 443). In a thread,
    because the connection's timeout does not cover the name lookup, which a broken resolver can stall."""
    answered = threading.Event()

    def probe() -> None:
        try:
            with socket.create_connection((_host(url), 443), timeout=PROBE_TIMEOUT_S):
                answered.set()
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    return answered.is_set()


def _hub_cached(repo: str, filename: str, revision: str | None) -> Path:
    """Where the Hugging Face cache holds the file (the path may not exist)."""
    from huggingface_hub import constants, try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, revision=revision)
    if isinstance(found, str):
        return Path(found)
    return Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots" / (revision or "main") / filename
