"""Model registry: one ``create(name, **kw)``; variants are config entries, not subclasses.

Models register at their definition site with ``@MODELS.register(name, positional=2)`` (the two
positional arguments are ``in_channels`` and ``num_classes``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from robustseg._registry import Registry

MODELS: Registry[Any] = Registry("model", group="robustseg.models", positional=2)
"""Built-in models, plus plugins: ``model.name = "package.module:factory"`` or an entry point of group
``robustseg.models``; a plugin factory is called as ``factory(in_channels, num_classes, **options)``."""


def list_models() -> list[str]:
    """Names accepted by :func:`create` (built-ins and installed entry points; ``module:factory`` too)."""
    return MODELS.names()


def create(name: str, *, in_channels: int = 1, num_classes: int = 4, **kw: Any) -> nn.Module:
    """Build model ``name`` with ``in_channels`` inputs and ``num_classes`` logits.

    Keyword arguments go to the model (``attention_unet``/``unet``: base, depth, norm, dropout;
    ``timm_unet``: encoder, pretrained, decoder_widths, dropout). Unknown names or keywords raise
    :class:`InputError`.
    """
    return MODELS.create(name, in_channels, num_classes, **kw)


def options(name: str) -> list[str] | None:
    """Keyword options model ``name`` accepts (None: any); unknown names raise ``InputError``."""
    return MODELS.options(name)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
