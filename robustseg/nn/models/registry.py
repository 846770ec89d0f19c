"""Model registry: one ``create(name, **kw)``; variants are config entries, not subclasses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from robustseg._registry import accepted_options, build
from robustseg.errors import InputError
from robustseg.nn.models.attention_unet import AttentionUNet
from robustseg.nn.models.timm_unet import TimmUNet

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    "attention_unet": (AttentionUNet, {"attention": True}),
    "unet": (AttentionUNet, {"attention": False}),
    "timm_unet": (TimmUNet, {}),
}


def list_models() -> list[str]:
    """Names accepted by :func:`create`."""
    return sorted(_REGISTRY)


def create(name: str, *, in_channels: int = 1, num_classes: int = 4, **kw: Any) -> nn.Module:
    """Build model ``name`` with ``in_channels`` inputs and ``num_classes`` logits.

    Keyword arguments go to the model (``attention_unet``/``unet``: base, depth, norm, dropout;
    ``timm_unet``: encoder, pretrained, decoder_widths, dropout). Unknown names or keywords raise
    :class:`InputError`.
    """
    if name not in _REGISTRY:
        raise InputError(f"model {name!r}: unknown; valid names: {', '.join(list_models())}")
    factory, fixed = _REGISTRY[name]
    clash = sorted(set(kw) & set(fixed))
    if clash:
        raise InputError(f"model {name!r}: option(s) {', '.join(clash)} are fixed by this registry entry")
    return build("model", name, factory, (in_channels, num_classes), {**fixed, **kw})


def options(name: str) -> list[str] | None:
    """Keyword options model ``name`` accepts (None: any); unknown names raise ``InputError``."""
    if name not in _REGISTRY:
        raise InputError(f"model {name!r}: unknown; valid names: {', '.join(list_models())}")
    factory, fixed = _REGISTRY[name]
    valid = accepted_options(factory, skip=2)
    return None if valid is None else [v for v in valid if v not in fixed]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
