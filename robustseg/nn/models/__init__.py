"""Segmentation models behind one registry (:func:`create`, :func:`list_models`)."""

from robustseg.nn.models.attention_unet import AttentionUNet
from robustseg.nn.models.registry import count_parameters, create, list_models, options
from robustseg.nn.models.timm_unet import TimmUNet

__all__ = ["AttentionUNet", "TimmUNet", "count_parameters", "create", "list_models", "options"]
