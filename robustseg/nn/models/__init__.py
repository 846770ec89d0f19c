"""Segmentation models behind one registry (:func:`create`, :func:`list_models`).

Importing this package imports every model module, which registers its models in :data:`MODELS`.
"""

from robustseg.nn.models.attention_unet import AttentionUNet
from robustseg.nn.models.registry import MODELS, count_parameters, create, list_models, options
from robustseg.nn.models.timm_unet import TimmUNet

__all__ = ["MODELS", "AttentionUNet", "TimmUNet", "count_parameters", "create", "list_models", "options"]
