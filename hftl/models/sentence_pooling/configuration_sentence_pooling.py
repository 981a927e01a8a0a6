"""Configuration of a text classifier on a pooled sentence embedding. Self-contained: this file is copied beside
saved weights."""

from transformers import AutoConfig, PretrainedConfig

POOLING_MODES = ("mean", "cls", "max")


class SentencePoolingConfig(PretrainedConfig):
    """The backbone's own config fields, flat (`hidden_size`, `num_hidden_layers` ...), plus how its token states
    become one sentence vector.

    Args:
        backbone_model_type: `model_type` of the backbone (`bert`, `mpnet`, `xlm-roberta` ...), built with `AutoModel`.
        sentence_pooling: "mean" (over non-padding tokens), "cls" (the first token's state) or "max" (over
            non-padding tokens), as sentence-transformers' `Pooling` module (`pooling_mode_*_tokens`).
        **kwargs: the backbone config's fields and `PretrainedConfig`'s (labels, problem type ...).
    """

    model_type = "hftl_sentence_pooling"

    def __init__(
        self,
        backbone_model_type: str = "bert",
        sentence_pooling: str = "mean",
        **kwargs,
    ):
        if sentence_pooling not in POOLING_MODES:
            raise ValueError(f"sentence_pooling must be one of {POOLING_MODES}, got {sentence_pooling!r}")
        self.backbone_model_type = backbone_model_type
        self.sentence_pooling = sentence_pooling
        kwargs.pop("model_type", None)  # a backbone config's dict carries its own
        super().__init__(**kwargs)

    @classmethod
    def from_backbone_config(cls, backbone_config: PretrainedConfig, pooling: str):
        """This config for a backbone of config `backbone_config` (its fields copied, labels included)."""
        fields = backbone_config.to_dict()
        fields.pop("architectures", None)
        return cls(backbone_config.model_type, pooling, **fields)

    def backbone_config(self) -> PretrainedConfig:
        """The backbone's own config class, built from the fields this config carries."""
        fields = self.to_dict()
        for key in ("backbone_model_type", "sentence_pooling", "auto_map", "architectures"):
            fields.pop(key, None)
        fields.pop("model_type", None)
        return AutoConfig.for_model(self.backbone_model_type, **fields)
