"""Attention U-Net (Oktay et al., 2018) for 2D images; a plain U-Net when the gates are off.

Layout (``depth`` = 4, ``base`` = 64 gives the classic widths 64, 128, 256, 512 and a 1024 bottleneck):

* encoder level ``i``: two 3x3 conv -> norm -> ReLU, width ``base * 2**i``, then 2x2 max-pool;
* decoder level ``i``: 2x2 transposed conv (stride 2) to width ``base * 2**i``, an additive attention
  gate on the skip, concatenation, two 3x3 conv -> norm -> ReLU (``decoder_convs = 1``: one, the layout of
  MONAI's ``AttentionUnet``);
* a 1x1 head to ``num_classes`` logits (softmax is applied by the loss / at prediction).

The additive gate computes ``alpha = sigmoid(psi(relu(W_x x + W_g g)))`` and returns ``alpha * x``.
The gating signal ``g`` is the upsampled decoder feature, which already has the skip's resolution, so
no attention map needs resampling. ``W_x x + W_g g`` is computed as one 1x1 convolution over the
concatenation ``[x, g]`` (mathematically identical, one kernel call instead of two plus an add); the
concatenation is the same tensor the decoder block consumes next, so it costs nothing extra.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustseg.errors import InputError
from robustseg.nn.models.registry import MODELS

NORMS = ("batch", "instance", "group", "none")
INITS = ("torch", "he", "he_zero_head")


def _norm(kind: str, channels: int) -> nn.Module:
    """A normalisation layer of ``kind`` for ``channels`` feature maps."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    assert kind == "none", kind
    return nn.Identity()


class Pointwise(nn.Conv2d):
    """1x1 convolution; on channels-last input it runs as one GEMM over the (N*H*W, C) pixel matrix.

    PyTorch routes channels-last 1x1 convolutions on CPU to a slow generic kernel; the GEMM computes
    the same sums. Parameters and state-dict keys are those of ``nn.Conv2d(in_ch, out_ch, 1)``.
    """

    def __init__(self, in_ch: int, out_ch: int, bias: bool = True) -> None:
        super().__init__(in_ch, out_ch, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            y = F.linear(x.permute(0, 2, 3, 1), self.weight[:, :, 0, 0], self.bias)
            return y.permute(0, 3, 1, 2)
        return super().forward(x)


class ConvBlock(nn.Sequential):
    """``convs`` (3x3 conv -> norm -> ReLU) layers (two by default) with optional spatial dropout after the first."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, dropout: float, convs: int = 2) -> None:
        bias = norm == "none"
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias),
            _norm(norm, out_ch),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        for _ in range(convs - 1):
            layers += [
                nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=bias),
                _norm(norm, out_ch),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection; returns ``[alpha * x, g]`` concatenated."""

    def __init__(self, x_ch: int, g_ch: int, inter_ch: int, norm: str) -> None:
        super().__init__()
        self.x_ch = x_ch
        # One 1x1 conv over [x, g] == W_x x + W_g g (+ bias).
        self.theta = Pointwise(x_ch + g_ch, inter_ch, bias=norm == "none")
        self.theta_norm = _norm(norm, inter_ch)
        self.psi = Pointwise(inter_ch, 1, bias=True)

    def attention(self, xg: torch.Tensor) -> torch.Tensor:
        """The gate coefficients ``alpha`` in [0, 1], shape (N, 1, H, W), from ``cat([x, g])``."""
        a = torch.relu(self.theta_norm(self.theta(xg)))
        return torch.sigmoid(self.psi(a))

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        xg = torch.cat([x, g], dim=1)
        alpha = self.attention(xg)
        return torch.cat([x * alpha, g], dim=1)


def _he_init(model: nn.Module, *, zero_head: bool) -> None:
    """nnU-Net's ``InitWeights_He(1e-2)`` on every (transposed) convolution; optionally a zero output head."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, a=1e-2)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if zero_head:
        nn.init.zeros_(model.head.weight)


@MODELS.register("attention_unet", fixed={"attention": True}, positional=2)
@MODELS.register("unet", fixed={"attention": False}, positional=2)
class AttentionUNet(nn.Module):
    """U-Net with optional additive attention gates on every skip connection.

    Args:
        in_channels: input channels (1 for grayscale).
        num_classes: output channels (logits).
        base: width of the first level; level ``i`` has ``base * 2**i`` channels.
        depth: number of down-sampling steps (the bottleneck is level ``depth``).
        norm: ``batch``, ``instance``, ``group`` or ``none``.
        dropout: Dropout2d probability inside the bottleneck and decoder blocks (0 disables).
        attention: add attention gates (``False`` gives a plain U-Net).
        decoder_convs: 3x3 convolutions (-> norm -> ReLU) per decoder level after the concatenation: 2 (the
            default: the classic U-Net and Oktay et al.'s Attention U-Net, the architecture of studies/thesis.toml) or 1
            (the lean variant, MONAI ``AttentionUnet``'s layout: 20 % fewer FLOPs at any width, and on the phantom
            styles CSP validation Dice lower by 0.03 on average, benchmarks/transfer_log.md).
        init: weight initialisation. ``torch``: PyTorch's defaults; ``he``: nnU-Net's (Kaiming normal with
            negative slope 0.01 for every convolution, zero biases); ``he_zero_head``: ``he`` with the output
            head's weights zero, so every class starts at the same logit.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 4,
        *,
        base: int = 64,
        depth: int = 4,
        norm: str = "batch",
        dropout: float = 0.0,
        attention: bool = True,
        init: str = "torch",
        decoder_convs: int = 2,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise InputError(f"model norm={norm!r}: expected one of {', '.join(NORMS)}")
        if not (isinstance(base, int) and base >= 1):
            raise InputError(f"model base={base!r}: expected a positive integer")
        if not (isinstance(depth, int) and 1 <= depth <= 7):
            raise InputError(f"model depth={depth!r}: expected an integer in 1..7")
        if init not in INITS:
            raise InputError(f"model init={init!r}: expected one of {', '.join(INITS)}")
        if not 0.0 <= float(dropout) < 1.0:
            raise InputError(f"model dropout={dropout!r}: expected a value in [0, 1)")
        if decoder_convs not in (1, 2) or isinstance(decoder_convs, bool):
            raise InputError(f"model decoder_convs={decoder_convs!r}: expected 1 or 2")
        self.depth = depth
        self.attention = attention
        self.decoder_convs = decoder_convs
        widths = [base * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        prev = in_channels
        for i, w in enumerate(widths):
            self.encoders.append(ConvBlock(prev, w, norm, dropout if i == depth else 0.0))
            prev = w
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(depth)):
            w = widths[i]
            self.ups.append(nn.ConvTranspose2d(widths[i + 1], w, 2, stride=2))
            self.gates.append(AttentionGate(w, w, max(w // 2, 1), norm) if attention else nn.Identity())
            self.decoders.append(ConvBlock(2 * w, w, norm, dropout, decoder_convs))
        self.head = Pointwise(widths[0], num_classes)
        if init != "torch":
            _he_init(self, zero_head=init == "he_zero_head")

    @property
    def size_divisor(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.size_divisor
        if x.shape[-1] % d or x.shape[-2] % d:
            raise InputError(
                f"input size {tuple(x.shape[-2:])}: expected multiples of {d} for depth {self.depth}"
            )
        x, skips = self._encode(x)
        for up, gate, dec, skip in zip(self.ups, self.gates, self.decoders, reversed(skips), strict=True):
            g = up(x)
            x = dec(gate(skip, g) if self.attention else torch.cat([skip, g], dim=1))
        return self.head(x)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the encoder: the bottleneck features and the skip tensors, finest first."""
        skips = []
        for enc in self.encoders[:-1]:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        return self.encoders[-1](x), skips

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Gate coefficients per decoder level, coarsest first, each (N, 1, H_i, W_i). Needs gates on."""
        if not self.attention:
            raise InputError("attention_maps: this model was built with attention=False")
        x, skips = self._encode(x)
        maps = []
        for up, gate, dec, skip in zip(self.ups, self.gates, self.decoders, reversed(skips), strict=True):
            g = up(x)
            maps.append(gate.attention(torch.cat([skip, g], dim=1)))
            x = dec(gate(skip, g))
        return maps
