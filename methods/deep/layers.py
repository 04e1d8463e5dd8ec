"""Small building blocks shared by the deep architectures."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConvBNReLU", "DoubleConv", "pad_to_multiple", "init_weights"]


class ConvBNReLU(nn.Sequential):
    """``k x k`` convolution (no bias: BatchNorm follows) -> BatchNorm -> ReLU; padding keeps the size at stride 1."""

    def __init__(self, in_ch: int, out_ch: int, *, kernel: int = 3, stride: int = 1, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two 3x3 ``ConvBNReLU`` (the U-Net block)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(ConvBNReLU(in_ch, out_ch), ConvBNReLU(out_ch, out_ch))


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Pad ``(N, C, H, W)`` at the bottom and right (replicating the border) to sides divisible by ``multiple``.

    Returns:
        The padded tensor and the original ``(H, W)`` to crop the output back to.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def init_weights(module: nn.Module) -> None:
    """He (Kaiming) normal initialisation for convolutions, unit BatchNorm, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
