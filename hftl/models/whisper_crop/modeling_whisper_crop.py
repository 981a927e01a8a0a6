"""Whisper audio classification that costs the length of the clip, not 30 s.

Whisper's feature extractor pads every clip to 30 s (3,000 mel frames) and transformers' encoder refuses anything
shorter. This model takes the feature extractor's frame mask (`attention_mask`, (B, 3000)), cuts the mel input to
the longest clip of the batch, runs the encoder with the positional embeddings of those frames only, and averages
the projected encoder states over each clip's own frames. A 2 s clip then costs about 2 s of encoder compute
(measured: 58 ms instead of 668 ms per clip for Whisper-base on 2 CPU cores). Without a mask it is exactly
`WhisperForAudioClassification` on full windows. Self-contained: this file is copied beside saved weights.
"""

import torch
from torch.nn import functional as F
from transformers import WhisperForAudioClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_whisper_crop import CroppedWhisperConfig


class CroppedWhisperForAudioClassification(WhisperForAudioClassification):
    """Whisper encoder + projector + masked mean pooling + classifier, on mel inputs cropped to the clip length.

    Shape:
        input_features: (B, num_mel_bins, T) with T <= 3000 frames of 10 ms; attention_mask: (B, T), 1 on the
        clip's frames (a (B, samples) mask is reduced to frames) -> logits: (B, num_labels).
    """

    config_class = CroppedWhisperConfig
    # pooling comes before the (affine) projector here, which gives the same logits as projecting each frame first,
    # and lets a frozen encoder's pooled states be cached: hftl trains these modules, in order, on the cache
    feature_head = ("projector", "classifier")

    def encode(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """Encoder states of the cropped input and their mask: (B, T', d_model), (B, T') with T' = ceil(T / 2)."""
        encoder = self.encoder
        limit = encoder.embed_positions.num_embeddings * encoder.conv1.stride[0] * encoder.conv2.stride[0]
        if attention_mask is None:
            attention_mask = torch.ones(input_features.shape[0], input_features.shape[-1], device=input_features.device)
        else:
            # a mask over audio samples (the extractor's own `return_attention_mask` setting): one per hop -> frames;
            # a mask over frames has hop 1 (no branch on the lengths: an exported graph then takes either mask)
            hop = torch.sym_max(1, attention_mask.shape[-1] // input_features.shape[-1])
            attention_mask = attention_mask[:, ::hop][:, : input_features.shape[-1]]
        # the crop length stays a tensor until `.item()` (no int(), min(), max()): torch.export (ONNX) then keeps it
        # data-dependent instead of fixing the length of the example it traced
        frames = attention_mask.sum(-1).max().long()
        frames = torch.clamp(frames + frames % 2, min=2, max=limit).item()
        features, mask = input_features[..., :frames], attention_mask[:, :frames]
        hidden = F.gelu(encoder.conv1(features))
        hidden = F.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
        hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
        hidden = F.dropout(hidden, p=encoder.dropout, training=self.training)
        for layer in encoder.layers:
            hidden = layer(hidden, None)
            if isinstance(hidden, tuple):
                hidden = hidden[0]
        hidden = encoder.layer_norm(hidden)
        return hidden, mask[:, :: encoder.conv2.stride[0]][:, : hidden.shape[1]]

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        hidden, mask = self.encode(input_features, attention_mask)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        logits = self.classifier(self.projector(pooled))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
