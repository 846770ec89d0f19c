"""Segmentation models behind one registry (:func:`create`, :func:`list_models`)."""

from robustseg.models.attention_unet import AttentionUNet
from robustseg.models.registry import count_parameters, create, list_models, options
from robustseg.models.timm_unet import TimmUNet

__all__ = ["AttentionUNet", "TimmUNet", "count_parameters", "create", "list_models", "options"]
