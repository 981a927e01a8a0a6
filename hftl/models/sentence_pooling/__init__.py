"""Text classification on the backbone's pooled sentence embedding (see `modeling_sentence_pooling`)."""

from transformers import AutoConfig, AutoModelForSequenceClassification

from hftl.models.sentence_pooling.configuration_sentence_pooling import POOLING_MODES, SentencePoolingConfig
from hftl.models.sentence_pooling.modeling_sentence_pooling import SentencePoolingForSequenceClassification, pool_tokens

AutoConfig.register(SentencePoolingConfig.model_type, SentencePoolingConfig, exist_ok=True)
AutoModelForSequenceClassification.register(
    SentencePoolingConfig, SentencePoolingForSequenceClassification, exist_ok=True
)
# saved folders carry this code and an `auto_map`, for processes that have not imported hftl
SentencePoolingConfig.register_for_auto_class()
SentencePoolingForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = ["POOLING_MODES", "SentencePoolingConfig", "SentencePoolingForSequenceClassification", "pool_tokens"]
