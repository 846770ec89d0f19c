"""Segmentation losses on logits ``(N, C, H, W)`` and integer labels ``(N, H, W)``.

Notation: ``p_ic`` softmax probability of pixel ``i`` for class ``c``, ``y_ic`` one-hot label, ``P`` the
number of pixels in the batch, ``w_c`` class weights. All losses are computed in float32 (also under
autocast) and averaged over the pixels of the whole batch, as in the reference study:

* ``ce``:           ``-(1/P) sum_i log p_{i,y_i}``
* ``weighted_ce``:  ``-(1/P) sum_i w_{y_i} log p_{i,y_i}``  (divided by P, not by ``sum_i w_{y_i}``;
  with weights normalised to mean 1 the scale stays comparable to plain CE)
* ``focal``:        ``-(1/P) sum_i alpha_{y_i} (1 - p_{i,y_i})**gamma log p_{i,y_i}``
* ``dice``:         ``1 - sum_c w_c D_c / sum_c w_c`` with
  ``D_c = (2 sum_i p_ic y_ic + eps) / (sum_i p_ic**2 + sum_i y_ic**2 + eps)`` (pixels pooled over the batch:
  nnU-Net's "batch Dice"; ``batch_dice=False`` computes ``D_c`` per image and averages over the images)
* ``hybrid``:       ``(1 - a - b) * CE + b * Focal + a * Dice``; CE uses the class weights when given,
  focal uses ``alpha`` (default: the class weights), Dice uses the class weights unless
  ``weighted_dice=False`` (every class's Dice counts the same, as in nnU-Net).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustseg._registry import Registry
from robustseg.errors import InputError

LOSSES: Registry[Any] = Registry("loss", group="robustseg.losses")
"""Loss registry; entries register below with ``@LOSSES.register(name)``. Plugins: ``loss.name =
"package.module:factory"`` or an entry point of group ``robustseg.losses``; ``factory(**options)`` returns a
module mapping ``(logits (N, C, H, W), labels (N, H, W))`` to a scalar loss."""

Weights = Sequence[float] | np.ndarray | torch.Tensor | None


def class_weights_from_counts(
    pixel_counts: Sequence[float] | np.ndarray, smoothing: float = 0.0
) -> np.ndarray:
    """Inverse-frequency class weights, normalised to mean 1 (they sum to the number of classes).

    ``f_c = n_c / sum_k n_k``; ``w_c ∝ 1 / (f_c + smoothing)``; then ``w <- C * w / sum(w)``.
    ``smoothing = 0`` is pure inverse frequency; larger values flatten the weights toward uniform.
    A class with zero pixels (only possible with ``smoothing = 0``) gets the largest weight of the
    present classes instead of an infinite one.
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 2:
        raise InputError(f"pixel_counts={counts.tolist()!r}: expected a 1-D sequence of >= 2 class counts")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or counts.sum() <= 0:
        raise InputError(
            f"pixel_counts={counts.tolist()!r}: expected finite non-negative counts with a positive sum"
        )
    if not (np.isfinite(smoothing) and smoothing >= 0):
        raise InputError(f"class_weight_smoothing={smoothing!r}: expected a finite value >= 0")
    freq = counts / counts.sum()
    denom = freq + smoothing
    present = denom > 0
    w = np.zeros_like(freq)
    w[present] = 1.0 / denom[present]
    w[~present] = w[present].max()
    return w * (len(w) / w.sum())


def _weight_tensor(weights: Weights, name: str) -> torch.Tensor | None:
    if weights is None:
        return None
    t = torch.as_tensor(
        np.asarray(weights, dtype=np.float32) if not isinstance(weights, torch.Tensor) else weights
    )
    t = t.detach().float().flatten()
    if t.numel() < 2 or not torch.isfinite(t).all() or (t < 0).any():
        raise InputError(f"loss {name}={t.tolist()!r}: expected one finite non-negative value per class")
    return t


def _flag(name: str, value: Any) -> bool:
    """A loss's on/off option: exactly ``True`` or ``False`` (a string such as ``"no"`` would read as true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"loss {name}={value!r}: expected true or false")
    return bool(value)


def _check_classes(logits: torch.Tensor, w: torch.Tensor | None, name: str) -> None:
    if w is not None and w.numel() != logits.shape[1]:
        raise InputError(f"loss {name}: {w.numel()} values given for {logits.shape[1]} classes")


@LOSSES.register("ce")
class CrossEntropy(nn.Module):
    """(Class-weighted) cross-entropy averaged over all pixels (see module docstring)."""

    def __init__(self, class_weights: Weights = None) -> None:
        super().__init__()
        self.register_buffer("weight", _weight_tensor(class_weights, "class_weights"), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_classes(logits, self.weight, "class_weights")
        nll = F.cross_entropy(logits.float(), target.long(), weight=self.weight, reduction="sum")
        return nll / target.numel()


@LOSSES.register("focal")
class FocalLoss(nn.Module):
    """Softmax focal loss with focusing ``gamma`` and per-class ``alpha`` (None: all ones)."""

    def __init__(self, gamma: float = 2.0, alpha: Weights = None) -> None:
        super().__init__()
        if not (np.isfinite(gamma) and gamma >= 0):
            raise InputError(f"loss gamma={gamma!r}: expected a finite value >= 0")
        self.gamma = float(gamma)
        self.register_buffer("alpha", _weight_tensor(alpha, "alpha"), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_classes(logits, self.alpha, "alpha")
        t = target.long().unsqueeze(1)
        logp = F.log_softmax(logits.float(), dim=1).gather(1, t).squeeze(1)
        loss = -((1.0 - logp.exp()).clamp_min(0.0) ** self.gamma) * logp
        if self.alpha is not None:
            loss = loss * self.alpha[target.long()]
        return loss.mean()


@LOSSES.register("dice")
class SoftDiceLoss(nn.Module):
    """Weighted soft Dice with squared denominators, pixels pooled over the batch."""

    def __init__(self, class_weights: Weights = None, eps: float = 1e-6, batch_dice: bool = True) -> None:
        super().__init__()
        self.eps = float(eps)
        self.batch_dice = _flag("batch_dice", batch_dice)
        self.register_buffer("weight", _weight_tensor(class_weights, "class_weights"), persistent=False)

    def per_class(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Soft Dice coefficient per class, shape (C,) (per image, then averaged, without batch Dice)."""
        p = torch.softmax(logits.float(), dim=1)
        y = F.one_hot(target.long(), p.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
        dims = (0, 2, 3) if self.batch_dice else (2, 3)
        inter = (p * y).sum(dims)
        denom = (p * p).sum(dims) + y.sum(dims)  # y is 0/1, so y**2 == y
        d = (2 * inter + self.eps) / (denom + self.eps)
        return d if self.batch_dice else d.mean(0)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_classes(logits, self.weight, "class_weights")
        d = self.per_class(logits, target)
        if self.weight is None:
            return 1.0 - d.mean()
        return 1.0 - (self.weight * d).sum() / self.weight.sum()


@LOSSES.register("hybrid")
class HybridLoss(nn.Module):
    """``(1 - a - b) * CE + b * Focal + a * Dice`` (a: Dice share, b: focal share)."""

    def __init__(
        self,
        a: float = 0.4,
        b: float = 0.2,
        gamma: float = 2.0,
        class_weights: Weights = None,
        alpha: Weights = None,
        eps: float = 1e-6,
        batch_dice: bool = True,
        weighted_dice: bool = True,
    ) -> None:
        super().__init__()
        if not (np.isfinite(a) and np.isfinite(b) and a >= 0 and b >= 0 and a + b <= 1 + 1e-12):
            raise InputError(f"hybrid loss a={a!r}, b={b!r}: expected a >= 0, b >= 0 and a + b <= 1")
        self.a, self.b = float(a), float(b)
        self.ce = CrossEntropy(class_weights)
        self.focal = FocalLoss(gamma, class_weights if alpha is None else alpha)
        self.dice = SoftDiceLoss(class_weights if _flag("weighted_dice", weighted_dice) else None, eps, batch_dice)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = (1.0 - self.a - self.b) * self.ce(logits, target)
        if self.b > 0:
            total = total + self.b * self.focal(logits, target)
        if self.a > 0:
            total = total + self.a * self.dice(logits, target)
        return total


@LOSSES.register("weighted_ce")
def _weighted_ce(class_weights: Weights = None) -> nn.Module:
    if class_weights is None:
        raise InputError("loss 'weighted_ce': needs class_weights (computed from the training split)")
    return CrossEntropy(class_weights)


USES_CLASS_WEIGHTS: frozenset[str] = frozenset({"weighted_ce", "dice", "hybrid"})
"""Built-in losses that receive ``class_weights`` from the training split when training builds them."""


def uses_class_weights(name: str) -> bool:
    """Whether training passes loss ``name`` the training split's ``class_weights``: the built-ins of
    :data:`USES_CLASS_WEIGHTS`, and a plugin whose factory takes a ``class_weights`` keyword."""
    if name in USES_CLASS_WEIGHTS:
        return True
    return LOSSES.plugin(name) is not None and "class_weights" in (LOSSES.options(name) or [])


def list_losses() -> list[str]:
    """Names accepted by :func:`create`."""
    return LOSSES.names()


def options(name: str) -> list[str] | None:
    """Keyword options loss ``name`` accepts (None: any); unknown names raise ``InputError``."""
    return LOSSES.options(name)


def create(name: str, **kw: Any) -> nn.Module:
    """Build loss ``name``; keywords per loss (see module docstring). Unknown names/keys: InputError."""
    return LOSSES.create(name, **kw)
