"""Shared fixtures: tiny models built from configs and small data files, all offline."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
from helpers import (  # noqa: F401  (fixtures below use them; tests import them from helpers)
    FILLER,
    IMAGE_MODES,
    SPECIAL,
    WORDS_BY_LABEL,
    make_image,
    make_texts,
    make_tone,
    seed_of,
    write_csv,
)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    """A randomly initialised 2-layer BertModel (no head) and its WordPiece tokenizer, saved like a Hub model."""
    from transformers import BertConfig, BertModel, BertTokenizer

    path = tmp_path_factory.mktemp("tiny_bert")
    vocab = (
        SPECIAL
        + sorted({w for ws in WORDS_BY_LABEL.values() for w in ws} | set(FILLER))
        + list("abcdefghijklmnopqrstuvwxyz")
    )
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    tokenizer.model_max_length = 64
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def text_files(tmp_path) -> dict[str, str]:
    """train / validation / test CSV files of `make_texts` rows (64 / 16 / 16)."""
    return {
        "train_file": write_csv(tmp_path / "train.csv", make_texts(64, seed=1)),
        "validation_file": write_csv(tmp_path / "validation.csv", make_texts(16, seed=2)),
        "test_file": write_csv(tmp_path / "test.csv", make_texts(16, seed=3)),
    }


# ---- images ---------------------------------------------------------------------------------------------------


@pytest.fixture
def image_folders(tmp_path) -> dict[str, str]:
    """train / validation / test image folders (class sub-folders), PNGs in every mode of IMAGE_MODES, odd sizes."""
    folders = {}
    for split, count in (("train", 24), ("validation", 8), ("test", 8)):
        for i in range(count):
            label = ("stripes", "dots")[i % 2]
            folder = tmp_path / split / label
            folder.mkdir(parents=True, exist_ok=True)
            mode = IMAGE_MODES[i % len(IMAGE_MODES)]
            make_image(label, seed_of(split, i), mode, size=(16 + i % 7, 12 + i % 5)).save(folder / f"{i}.png")
        folders[f"{split}_dir"] = str(tmp_path / split)
    return folders


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory) -> str:
    """A randomly initialised 2-layer ViT (32 x 32 inputs) and its processor ({height, width} size)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    path = tmp_path_factory.mktemp("tiny_vit")
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=5,
    )
    ViTForImageClassification(config).save_pretrained(path)  # a head for 5 other classes, as on the Hub
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_resnet_dir(tmp_path_factory) -> str:
    """A randomly initialised tiny ResNet and a processor whose size is {shortest_edge} with a crop percentage."""
    import torch
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    path = tmp_path_factory.mktemp("tiny_resnet")
    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3)
    ResNetForImageClassification(config).save_pretrained(path)
    ConvNextImageProcessor(size={"shortest_edge": 40}, crop_pct=0.875).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_efficientnet_lite_dir(tmp_path_factory) -> str:
    """A randomly initialised two-stage EfficientNet-Lite, saved with its modeling code."""
    import torch
    from transformers import ViTImageProcessor

    from hftl.models import EfficientNetLiteConfig, EfficientNetLiteForImageClassification

    path = tmp_path_factory.mktemp("tiny_efficientnet_lite")
    torch.manual_seed(0)
    config = EfficientNetLiteConfig(
        stages=["r1_k3_s1_e1_i8_o8", "r2_k3_s2_e2_i8_o16"],
        stem_channels=8,
        head_channels=32,
        image_size=32,
        num_labels=4,
    )
    EfficientNetLiteForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(path)
    return str(path)


# ---- audio ----------------------------------------------------------------------------------------------------


@pytest.fixture
def audio_folders(tmp_path) -> dict[str, str]:
    """train / validation / test audio folders: WAV and FLAC, 8 / 16 / 22.05 kHz, mono and stereo, 0.5-2.5 s."""
    import soundfile

    rates = (8_000, 16_000, 22_050)
    folders = {}
    for split, count in (("train", 24), ("validation", 8), ("test", 8)):
        for i in range(count):
            label = ("low", "high")[i % 2]
            folder = tmp_path / "audio" / split / label
            folder.mkdir(parents=True, exist_ok=True)
            rate = rates[i % 3]
            clip = make_tone(label, seed_of(split, i), rate, 0.5 + (i % 5) * 0.5, stereo=i % 4 == 3)
            soundfile.write(folder / f"{i}.{'flac' if i % 5 == 4 else 'wav'}", clip, rate)
        folders[f"{split}_dir"] = str(tmp_path / "audio" / split)
    return folders


@pytest.fixture(scope="session")
def tiny_wav2vec2_dir(tmp_path_factory) -> str:
    """A randomly initialised 2-layer wav2vec2 with a 2-layer CNN feature encoder, and its feature extractor."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    path = tmp_path_factory.mktemp("tiny_wav2vec2")
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=20,
        conv_dim=(8, 8),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_feat_extract_layers=2,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=8,
        vocab_size=8,
    )
    Wav2Vec2ForSequenceClassification(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=16_000, return_attention_mask=True).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory) -> str:
    """A randomly initialised tiny Whisper (2 encoder layers, d_model 16) and the standard feature extractor."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    path = tmp_path_factory.mktemp("tiny_whisper")
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=64,
        num_mel_bins=80,
        d_model=16,
        encoder_layers=2,
        encoder_attention_heads=2,
        decoder_layers=1,
        decoder_attention_heads=2,
        encoder_ffn_dim=24,
        decoder_ffn_dim=24,
        max_source_positions=1500,
        max_target_positions=32,
        classifier_proj_size=8,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
        decoder_start_token_id=2,
    )
    WhisperForConditionalGeneration(config).save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80, sampling_rate=16_000).save_pretrained(path)
    return str(path)
