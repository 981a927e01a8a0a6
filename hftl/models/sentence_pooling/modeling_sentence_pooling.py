"""A text classifier on the sentence embedding its backbone was trained to give: the token states pooled as
sentence-transformers pools them (`1_Pooling/config.json`), then a linear classifier.

`AutoModelForSequenceClassification` puts BERT's pooler (first token -> dense -> tanh) under the classifier, a layer
sentence-transformers models never trained through; this model reads the pooled token states instead. Pooling as in
Reimers & Gurevych, "Sentence-BERT", EMNLP 2019 (arXiv:1908.10084), and sentence-transformers'
`models/Pooling.py`. Self-contained: this file is copied beside saved weights.
"""

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_sentence_pooling import SentencePoolingConfig


def pool_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    """One vector per sequence from its token states.

    Args:
        hidden: (B, T, H) token states.
        attention_mask: (B, T), 1 on real tokens and 0 on padding; None: every token is real.
        mode: "mean" (masked mean), "cls" (token 0) or "max" (masked maximum per feature).

    Returns:
        (B, H).

    Example:
        >>> hidden = torch.tensor([[[1.0], [3.0], [9.0]]])
        >>> pool_tokens(hidden, torch.tensor([[1, 1, 0]]), "mean")
        tensor([[2.]])
    """
    if mode == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        attention_mask = torch.ones(hidden.shape[:2], device=hidden.device)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class SentencePoolingForSequenceClassification(PreTrainedModel):
    """Backbone (`AutoModel`, its pooler dropped) + pooling + dropout + linear classifier.

    Shape:
        input_ids, attention_mask (and token_type_ids, if the backbone takes them): (B, T) -> logits: (B, num_labels).
        The classifier's input, (B, hidden_size), is the pooled sentence embedding.
    """

    config_class = SentencePoolingConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: SentencePoolingConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.backbone = self._without_pooler(AutoModel.from_config(config.backbone_config()))
        dropout = getattr(config, "classifier_dropout", None)
        dropout = dropout if dropout is not None else getattr(config, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @staticmethod
    def _without_pooler(backbone: nn.Module) -> nn.Module:
        # BERT-like backbones skip a pooler set to None; an unused one would only cost memory and DDP's unused-
        # parameter check
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None
        return backbone

    @classmethod
    def from_backbone(cls, backbone: PreTrainedModel, pooling: str):
        """This model around the modules of `backbone` (shared, not copied), with a new classifier for the labels
        of `backbone.config`."""
        config = SentencePoolingConfig.from_backbone_config(backbone.config, pooling)
        with torch.device("meta"):
            model = cls(config)
        model.backbone = cls._without_pooler(backbone)
        model.classifier = nn.Linear(config.hidden_size, config.num_labels)
        model._init_weights(model.classifier)
        return model

    def sentence_embedding(self, input_ids=None, attention_mask=None, **kwargs) -> torch.Tensor:
        """The pooled sentence embedding, (B, hidden_size)."""
        inputs = {key: value for key, value in kwargs.items() if value is not None}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **inputs)[0]
        return pool_tokens(hidden, attention_mask, self.config.sentence_pooling)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        # named inputs, not **kwargs alone: the Trainer keeps the dataset columns the signature names (text pairs'
        # token_type_ids), and the ONNX export feeds the inputs it names; those a backbone lacks stay None
        kwargs.pop("return_dict", None)
        kwargs.update(token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds)
        logits = self.classifier(self.dropout(self.sentence_embedding(input_ids, attention_mask, **kwargs)))
        loss = None
        if labels is not None:
            loss = self._loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """As `BertForSequenceClassification`: MSE for one output, else cross-entropy or (multi-label) BCE."""
        problem = self.config.problem_type
        if problem is None:
            single = self.num_labels > 1 and labels.dtype in (torch.long, torch.int)
            problem = "regression" if self.num_labels == 1 else "single_label_classification" if single else None
            problem = problem or "multi_label_classification"
        if problem == "regression":
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        if problem == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
