"""A U-Net decoder on any timm encoder (``features_only=True``, grayscale input).

The encoder returns feature maps at strides ``r_1 < r_2 < ... < r_K``. The decoder walks from the
deepest map up: upsample (nearest, to the next skip's size), concatenate the skip, two 3x3
conv -> BN -> ReLU. The last decoder output is upsampled to the input size and a 1x1 head gives logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustseg._extras import require
from robustseg.errors import InputError
from robustseg.nn.models.attention_unet import ConvBlock
from robustseg.nn.models.registry import MODELS


def _create_encoder(encoder: str, in_channels: int, pretrained: bool) -> nn.Module:
    """``timm.create_model(encoder, features_only=True)``; user-facing errors as :class:`InputError` (timm itself
    is the optional extra ``robustseg[timm]``)."""
    timm = require("timm", "model 'timm_unet'")

    if not timm.is_model(encoder):
        raise InputError(f"model encoder={encoder!r}: not a timm model name (see timm.list_models())")
    try:
        return timm.create_model(encoder, features_only=True, in_chans=in_channels, pretrained=pretrained)
    except Exception as exc:  # noqa: BLE001 - timm/hub raise many types; report one clear line
        if pretrained:
            raise InputError(
                f"model encoder={encoder!r}: pretrained weights could not be loaded "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "set pretrained=false or make the weights reachable"
            ) from exc
        raise InputError(f"model encoder={encoder!r}: cannot build with features_only ({exc})") from exc


@MODELS.register("timm_unet", positional=2)
class TimmUNet(nn.Module):
    """U-Net decoder over a timm feature-pyramid encoder.

    Args:
        in_channels: input channels (1 for grayscale; timm adapts the stem).
        num_classes: output logits.
        encoder: any timm model name supporting ``features_only``.
        pretrained: load the encoder's pretrained weights (needs them reachable).
        decoder_widths: decoder widths, deepest first; default halves from 256 per level (min 16).
        dropout: Dropout2d in the decoder blocks.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 4,
        *,
        encoder: str = "resnet18",
        pretrained: bool = False,
        decoder_widths: tuple[int, ...] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = _create_encoder(encoder, in_channels, pretrained)
        enc_ch = list(self.encoder.feature_info.channels())
        n = len(enc_ch)
        if decoder_widths is None:
            decoder_widths = tuple(max(256 // 2**i, 16) for i in range(n - 1))
        if len(decoder_widths) != n - 1:
            raise InputError(
                f"model decoder_widths={decoder_widths!r}: expected {n - 1} widths for encoder {encoder!r}"
            )
        self.blocks = nn.ModuleList()
        prev = enc_ch[-1]
        for skip_ch, w in zip(reversed(enc_ch[:-1]), decoder_widths, strict=True):
            self.blocks.append(ConvBlock(prev + skip_ch, w, "batch", dropout))
            prev = w
        self.head = nn.Conv2d(prev, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = self.encoder(x)
        y = feats[-1]
        for block, skip in zip(self.blocks, reversed(feats[:-1]), strict=True):
            y = F.interpolate(y, size=skip.shape[-2:], mode="nearest")
            y = block(torch.cat([y, skip], dim=1))
        y = self.head(y)
        if y.shape[-2:] != size:
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return y
