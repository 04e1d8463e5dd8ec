"""SegNet (Badrinarayanan, Kendall & Cipolla, TPAMI 2017): a decoder that upsamples by max-unpooling with the
encoder's pooling indices."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from segbench.methods.base import METHODS
from segbench.methods.deep.method import DeepMethod, DeepOptions
from segbench.methods.deep.layers import ConvBNReLU, init_weights

__all__ = ["SegNet", "SegNetMethod"]

#: Max-unpooling is flagged non-deterministic because colliding indices would race; indices of
#: non-overlapping 2x2 windows never collide, so the warning under deterministic training is noise here.
_UNPOOL_WARNING = r"max_unpooling2d_forward_out does not have a deterministic implementation"


def _convs(in_ch: int, out_ch: int, n: int, *, last_ch: int | None = None) -> nn.Sequential:
    """``n`` 3x3 ConvBNReLU; the last one outputs ``last_ch`` channels when given."""
    layers = []
    for i in range(n):
        out = last_ch if (last_ch is not None and i == n - 1) else out_ch
        layers.append(ConvBNReLU(in_ch if i == 0 else out_ch, out))
    return nn.Sequential(*layers)


class _Encoder(nn.Module):
    """VGG-style stages, each ending in a 2x2 max-pool whose indices the decoder reuses."""

    def __init__(self, in_ch: int, widths: list[int], convs: list[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(_convs(in_ch if i == 0 else widths[i - 1], widths[i], n) for i, n in enumerate(convs))

    def forward(self, x: Tensor) -> tuple[Tensor, list[tuple[Tensor, tuple[int, int]]]]:
        """Returns the deepest features and, per stage, the pooling indices and the size before pooling."""
        pools = []
        for stage in self.stages:
            x = stage(x)
            size = (x.shape[-2], x.shape[-1])
            x, idx = F.max_pool2d(x, kernel_size=2, stride=2, return_indices=True)
            pools.append((idx, size))
        return x, pools


class _Decoder(nn.Module):
    """Mirror of the encoder: max-unpool with the stored indices (sparse map), then convolutions densify it."""

    def __init__(self, widths: list[int], convs: list[int]) -> None:
        super().__init__()
        n = len(widths)
        # Stage i (deepest first) unpools to widths[i] channels and ends with the next shallower stage's width.
        self.stages = nn.ModuleList(
            _convs(widths[i], widths[i], convs[i], last_ch=widths[max(i - 1, 0)]) for i in reversed(range(n))
        )

    def forward(self, x: Tensor, pools: list[tuple[Tensor, tuple[int, int]]]) -> Tensor:
        for stage, (idx, size) in zip(self.stages, reversed(pools)):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_UNPOOL_WARNING)
                x = F.max_unpool2d(x, idx, kernel_size=2, stride=2, output_size=size)
            x = stage(x)
        return x


class SegNet(nn.Module):
    """SegNet: VGG-style encoder -> index-unpooling decoder -> 3x3 classifier.

    Unpooling with ``output_size`` restores odd sizes exactly, so no padding is needed; each side must be
    at least ``2 ** depth`` pixels.

    Args:
        num_classes: Output channels ``C``.
        width: Channels of the first stage; stage ``i`` has ``width * 2 ** i``, capped at ``8 * width``
            (VGG-16's 64-128-256-512-512 with ``width=64``).
        convs_per_stage: Convolutions per encoder stage (and its decoder mirror); its length is the depth.
            The paper's VGG-16 encoder is ``(2, 2, 3, 3, 3)``.
        in_channels: Input channels.

    Shapes:
        ``(N, in_channels, H, W)`` -> ``(N, C, H, W)`` logits.
    """

    def __init__(self, num_classes: int, *, width: int = 16, convs_per_stage: tuple[int, ...] = (2, 2, 3, 3), in_channels: int = 3) -> None:
        super().__init__()
        if width < 1 or not convs_per_stage or min(convs_per_stage) < 1:
            raise ValueError(f"SegNet needs width >= 1 and convs_per_stage of positive counts, got {width}, {convs_per_stage}")
        convs = list(convs_per_stage)
        widths = [width * min(2**i, 8) for i in range(len(convs))]
        self.min_side = 2 ** len(convs)
        self.encoder = _Encoder(in_channels, widths, convs)
        self.decoder = _Decoder(widths, convs)
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=3, padding=1)
        init_weights(self)
        # The classifier is initialised for logits of std ~1 (He, fan-in): He's fan-out initialisation gives the 3x3
        # classifier over ``width`` ReLU channels logits of std ~2.5 (a softmax confidently wrong on half the pixels,
        # loss 2.2 at the start), and without skip connections SegNet then sat at "all background" for the first
        # epochs, in 4 of 5 PH2 folds for the whole 90 s budget (measured: scripts/segnet_diagnosis.py); PyTorch's
        # default (std ~0.4) fixed that on PH2 but left the quick SegNet far below this one on the regression grid
        # (tests/test_accuracy_regression.py; the lesion Dice measured for the two has moved with bf16 training).
        nn.init.kaiming_normal_(self.head.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < self.min_side:
            raise ValueError(f"SegNet with depth {self.min_side.bit_length() - 1} needs sides >= {self.min_side}, got {tuple(x.shape[-2:])}")
        features, pools = self.encoder(x)
        return self.head(self.decoder(features, pools))


@METHODS.register("segnet")
class SegNetMethod(DeepMethod):
    """SegNet trained from scratch (Badrinarayanan et al. 2017); see ``SegNet`` for the architecture options."""

    description = "SegNet: decoder upsamples with the encoder's max-pooling indices, trained from scratch"
    quick_options = {"width": 8, "convs_per_stage": (2, 2, 2), "epochs": 20, "patience": None, "warmup_epochs": 1.0}

    @dataclass(kw_only=True)
    class Options(DeepOptions):
        epochs: int = 60  # cheaper per epoch than U-Net and slower to converge: same ~10-minute budget
        width: int = 16
        convs_per_stage: tuple[int, ...] = (2, 2, 3, 3)

    def build_model(self) -> nn.Module:
        return SegNet(self.num_classes, width=self.opts.width, convs_per_stage=tuple(self.opts.convs_per_stage))
