"""EfficientNet-Lite (Tan & Le, ICML 2019; Lite variants of the TensorFlow TPU repository) as a transformers model."""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from hftl.models.efficientnet_lite.configuration_efficientnet_lite import EfficientNetLiteConfig
from hftl.models.efficientnet_lite.modeling_efficientnet_lite import (
    EfficientNetLiteForImageClassification,
    EfficientNetLiteModel,
)

AutoConfig.register(EfficientNetLiteConfig.model_type, EfficientNetLiteConfig, exist_ok=True)
AutoModel.register(EfficientNetLiteConfig, EfficientNetLiteModel, exist_ok=True)
AutoModelForImageClassification.register(EfficientNetLiteConfig, EfficientNetLiteForImageClassification, exist_ok=True)
# saved folders carry this code and an `auto_map`, for processes that have not imported hftl
EfficientNetLiteConfig.register_for_auto_class()
EfficientNetLiteModel.register_for_auto_class("AutoModel")
EfficientNetLiteForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = ["EfficientNetLiteConfig", "EfficientNetLiteForImageClassification", "EfficientNetLiteModel"]
