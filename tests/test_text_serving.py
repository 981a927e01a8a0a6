"""What is served sees what training saw: the saved text model's `pipeline(...)` (the README's call) gives the
probabilities of the training-time evaluation on the same texts, long ones included."""

import numpy as np
import torch
from battery import QUICK, text_rows
from helpers import FILLER, recipe_defaults, write_csv
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from hftl.arguments import TextArguments
from hftl.modalities import TextModality
from hftl.pipeline import run_classification


def _training_probabilities(output_dir, texts: list[str], max_seq_length: int) -> np.ndarray:
    """Probabilities as evaluation computes them: hftl's preprocessing (the tokenizer as loaded for training,
    truncated to --max_seq_length) and the saved model's forward."""
    from datasets import Dataset, DatasetDict
    from transformers import TrainingArguments

    args = TextArguments(max_seq_length=max_seq_length)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    splits = DatasetDict({"test": Dataset.from_dict({"text": texts})})
    encoded = TextModality().preprocess(splits, tokenizer, ["text"], args, TrainingArguments("unused"), False)
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    with torch.no_grad():
        rows = [model(**{k: torch.tensor([v]) for k, v in example.items()}).logits for example in encoded["test"]]
    return torch.cat(rows).softmax(-1).numpy()


def test_pipeline_scores_long_texts_as_training_did(tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    args = ["--model_name_or_path", tiny_bert_dir, "--output_dir", str(out), *QUICK, "--max_seq_length", "12"]
    args += ["--train_file", write_csv(tmp_path / "train.csv", text_rows(48, 1)), "--do_eval", "false"]
    args += ["--learning_rate", "5e-3", "--num_train_epochs", "4"]  # a model whose scores depend on the words
    run_classification(TextModality(), recipe_defaults("text_classification"), args)
    texts = [row["text"] for row in text_rows(6, 9)] + [" ".join(FILLER * 4) + " good", "bad " + " ".join(FILLER * 5)]
    expected = _training_probabilities(str(out), texts, 12)
    classifier = pipeline("text-classification", model=str(out))
    scored = classifier(texts, truncation=True, top_k=None)  # the README's call
    names = classifier.model.config.id2label
    served = np.array([[next(s["score"] for s in row if s["label"] == names[i]) for i in range(2)] for row in scored])
    np.testing.assert_allclose(served, expected, atol=1e-5)
