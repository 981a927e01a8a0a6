"""EfficientNet-Lite as a transformers `PreTrainedModel`. Self-contained: this file is copied beside saved weights.

Source: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019
(arXiv:1905.11946); the Lite variants (no squeeze-and-excitation, ReLU6, fixed stem and head) are from the
TensorFlow TPU repository (models/official/efficientnet/lite). Convolutions use TensorFlow's "SAME" padding,
computed for each input size, so the ImageNet weights give the original outputs.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
)

from .configuration_efficientnet_lite import EfficientNetLiteConfig


class Conv2dSame(nn.Conv2d):
    """`nn.Conv2d` with TensorFlow "SAME" padding: output size = ceil(input size / stride)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(x.shape[-2:], self.kernel_size, self.stride, strict=True):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _parse_stage(text: str) -> dict:
    fields = dict((part[0], part[1:]) for part in text.split("_"))
    return {
        "repeats": int(fields["r"]),
        "kernel": int(fields["k"]),
        "stride": int(fields["s"][0]),
        "expansion": int(fields["e"]),
        "in_channels": int(fields["i"]),
        "out_channels": int(fields["o"]),
    }


class EfficientNetLiteBlock(nn.Module):
    """Mobile inverted bottleneck (MBConv) without squeeze-and-excitation, ReLU6 activations."""

    def __init__(self, config, in_channels, out_channels, kernel, stride, expansion, drop_connect_rate):
        super().__init__()
        hidden = in_channels * expansion
        eps, momentum = config.batch_norm_eps, config.batch_norm_momentum
        self.expand = expansion != 1
        if self.expand:
            self.expand_conv = Conv2dSame(in_channels, hidden, 1, bias=False)
            self.expand_bn = nn.BatchNorm2d(hidden, eps=eps, momentum=momentum)
        self.depthwise_conv = Conv2dSame(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(hidden, eps=eps, momentum=momentum)
        self.project_conv = Conv2dSame(hidden, out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum)
        self.residual = stride == 1 and in_channels == out_channels
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = x
        if self.expand:
            hidden = F.relu6(self.expand_bn(self.expand_conv(hidden)))
        hidden = F.relu6(self.depthwise_bn(self.depthwise_conv(hidden)))
        hidden = self.project_bn(self.project_conv(hidden))
        if not self.residual:
            return hidden
        if self.training and self.drop_connect_rate > 0:  # stochastic depth, per example
            keep = 1 - self.drop_connect_rate
            mask = torch.rand(hidden.shape[0], 1, 1, 1, device=hidden.device, dtype=hidden.dtype) < keep
            hidden = hidden * mask / keep
        return hidden + x


class EfficientNetLitePreTrainedModel(PreTrainedModel):
    config_class = EfficientNetLiteConfig
    base_model_prefix = "efficientnet"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            bound = 1 / math.sqrt(module.weight.shape[1])
            nn.init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class EfficientNetLiteModel(EfficientNetLitePreTrainedModel):
    """The backbone: stem, MBConv blocks, 1x1 head convolution, global average pooling.

    Shape:
        pixel_values: (B, C, H, W) -> last_hidden_state: (B, head_channels, H/32, W/32),
        pooler_output: (B, head_channels).
    """

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__(config)
        eps, momentum = config.batch_norm_eps, config.batch_norm_momentum
        self.stem_conv = Conv2dSame(config.num_channels, config.stem_channels, 3, stride=2, bias=False)
        self.stem_bn = nn.BatchNorm2d(config.stem_channels, eps=eps, momentum=momentum)
        stages = [_parse_stage(s) for s in config.stages]
        total = sum(s["repeats"] for s in stages)
        blocks = []
        for stage in stages:
            for repeat in range(stage["repeats"]):
                blocks.append(
                    EfficientNetLiteBlock(
                        config,
                        stage["in_channels"] if repeat == 0 else stage["out_channels"],
                        stage["out_channels"],
                        stage["kernel"],
                        stage["stride"] if repeat == 0 else 1,
                        stage["expansion"],
                        config.drop_connect_rate * len(blocks) / total,
                    )
                )
        self.blocks = nn.ModuleList(blocks)
        self.head_conv = Conv2dSame(stages[-1]["out_channels"], config.head_channels, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(config.head_channels, eps=eps, momentum=momentum)
        self.post_init()

    def forward(
        self, pixel_values: torch.Tensor, output_hidden_states: bool = False, return_dict: bool = True, **kwargs
    ):
        hidden = F.relu6(self.stem_bn(self.stem_conv(pixel_values)))
        states = [hidden] if output_hidden_states else None
        for block in self.blocks:
            hidden = block(hidden)
            if output_hidden_states:
                states.append(hidden)
        hidden = F.relu6(self.head_bn(self.head_conv(hidden)))
        pooled = hidden.mean(dim=(2, 3))
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=hidden, pooler_output=pooled, hidden_states=tuple(states) if states else None
        )


class EfficientNetLiteForImageClassification(EfficientNetLitePreTrainedModel):
    """EfficientNet-Lite backbone, dropout and a linear classifier on the pooled features.

    Shape:
        pixel_values: (B, C, H, W); labels: (B,) class ids -> logits: (B, num_labels).
    """

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.efficientnet = EfficientNetLiteModel(config)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.classifier = nn.Linear(config.head_channels, config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        **kwargs,
    ):
        outputs = self.efficientnet(pixel_values, output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.float())
            elif labels.dtype in (torch.long, torch.int):
                loss = F.cross_entropy(logits, labels)
            else:
                loss = F.binary_cross_entropy_with_logits(logits, labels.float())
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
