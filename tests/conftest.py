"""Shared fixtures: tiny models built from configs and small data files, all offline."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import random

import pytest

WORDS_BY_LABEL = {
    "positive": ["good", "great", "fine", "nice", "superb", "lovely"],
    "negative": ["bad", "awful", "poor", "dull", "boring", "weak"],
}
FILLER = ["the", "film", "was", "a", "plot", "very", "and", "story", "movie", "it"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_texts(n: int, seed: int = 0) -> list[dict]:
    """`n` rows {text, label}: the label decides which sentiment words a text holds."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.sample(FILLER, 4) + rng.sample(WORDS_BY_LABEL[label], 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    """A randomly initialised 2-layer BertModel (no head) and its WordPiece tokenizer, saved like a Hub model."""
    from transformers import BertConfig, BertModel, BertTokenizer

    path = tmp_path_factory.mktemp("tiny_bert")
    vocab = SPECIAL + sorted({w for ws in WORDS_BY_LABEL.values() for w in ws} | set(FILLER)) + list(
        "abcdefghijklmnopqrstuvwxyz"
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


def write_csv(path, rows: list[dict]) -> str:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


@pytest.fixture
def text_files(tmp_path) -> dict[str, str]:
    """train / validation / test CSV files of `make_texts` rows (64 / 16 / 16)."""
    return {
        "train_file": write_csv(tmp_path / "train.csv", make_texts(64, seed=1)),
        "validation_file": write_csv(tmp_path / "validation.csv", make_texts(16, seed=2)),
        "test_file": write_csv(tmp_path / "test.csv", make_texts(16, seed=3)),
    }
