"""EfficientNet-Lite configuration. Self-contained: this file is copied beside saved weights."""

from transformers import PretrainedConfig

# EfficientNet-Lite0 stages: repeats r, kernel k, stride s, expansion e, input i and output o channels
LITE0_BLOCKS = (
    "r1_k3_s1_e1_i32_o16",
    "r2_k3_s2_e6_i16_o24",
    "r2_k5_s2_e6_i24_o40",
    "r3_k3_s2_e6_i40_o80",
    "r3_k5_s1_e6_i80_o112",
    "r4_k5_s2_e6_i112_o192",
    "r1_k3_s1_e6_i192_o320",
)


class EfficientNetLiteConfig(PretrainedConfig):
    """Configuration of an EfficientNet-Lite image classifier.

    Args:
        num_channels: input image channels.
        image_size: the training resolution (224 for Lite0); other sizes work (padding is computed per input).
        stages: one string per stage, `r<repeats>_k<kernel>_s<stride>_e<expansion>_i<in>_o<out>`.
        stem_channels: channels of the stem convolution.
        head_channels: channels of the final 1x1 convolution, the pooled feature size.
        dropout_rate: dropout before the classifier.
        drop_connect_rate: stochastic-depth rate of the last block (scaled linearly from 0 at the first).
        batch_norm_eps / batch_norm_momentum: BatchNorm settings (PyTorch's momentum convention).
    """

    model_type = "hftl_efficientnet_lite"

    def __init__(
        self,
        num_channels: int = 3,
        image_size: int = 224,
        stages: list[str] | tuple[str, ...] = LITE0_BLOCKS,
        stem_channels: int = 32,
        head_channels: int = 1280,
        dropout_rate: float = 0.2,
        drop_connect_rate: float = 0.2,
        batch_norm_eps: float = 1e-3,
        batch_norm_momentum: float = 0.01,
        **kwargs,
    ):
        self.num_channels = num_channels
        self.image_size = image_size
        self.stages = list(stages)
        self.stem_channels = stem_channels
        self.head_channels = head_channels
        self.dropout_rate = dropout_rate
        self.drop_connect_rate = drop_connect_rate
        self.batch_norm_eps = batch_norm_eps
        self.batch_norm_momentum = batch_norm_momentum
        super().__init__(**kwargs)
