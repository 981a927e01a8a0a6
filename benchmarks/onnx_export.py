#!/usr/bin/env python
"""ONNX export of the three packaged models: file size, CPU latency per example and agreement with PyTorch.

Each model is saved as a classifier folder, then exported by `hftl.export.export_classifier` (what `hftl export
MODEL_DIR --quantize int8 --samples ...` runs) with real inputs from the built-in data:
- text: the packaged all-MiniLM-L6-v2 with a fresh 2-class head, on Rotten Tomatoes critics' snippets (test split);
- image: the packaged EfficientNet-Lite0 with its 1,000-class ImageNet head, on Fashion-MNIST test images (224 x 224);
- speech: the packaged Whisper-base encoder (hftl's cropped Whisper classifier) with a fresh 5-language head, on
  the real spoken-language clips (Asterisk prompts, test split).

The new heads are fitted (a logistic regression on the frozen model's features of `--train_examples` training
inputs, written into the classification layer): parity would hold with random heads too, but the int8 argmax
agreement would not mean much, as a random head's logits of different classes lie within 0.01 of each other. Prints one
table: sizes (PyTorch safetensors, ONNX float, ONNX int8, MB), latency per example at batch 1 (median over
`--runs` examples, each timed once after a warm-up; PyTorch and onnxruntime on the same `--threads`), the max
|logit difference| from PyTorch and the argmax agreement with PyTorch on `--examples` inputs.

    HF_HUB_OFFLINE=1 nice python benchmarks/onnx_export.py --examples 100 --runs 30 --threads 1
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers

from hftl.assets import packaged_image_model, packaged_speech_model, packaged_text_model
from hftl.data import load_builtin
from hftl.export import export_classifier
from hftl.export.parity import onnx_feed, session
from hftl.export.samples import model_inputs, read_examples
from hftl.export.source import load_classifier


def text_classifier(folder: str) -> str:
    """all-MiniLM-L6-v2 with a fresh fresh / rotten head, saved with its tokenizer in `folder`."""
    source = packaged_text_model()
    labels = ["fresh", "rotten"]
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    model.save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


def speech_classifier(folder: str) -> str:
    """Whisper-base as hftl's speech recipe builds it (cropped input, frame mask), fresh 5-language head."""
    from hftl.arguments import AudioArguments
    from hftl.modalities import AudioModality

    source = packaged_speech_model()
    languages = ["en", "es", "fr", "it", "ru"]
    model = transformers.AutoModelForAudioClassification.from_pretrained(
        source, num_labels=5, id2label=dict(enumerate(languages)), label2id={n: i for i, n in enumerate(languages)}
    )
    extractor = transformers.AutoFeatureExtractor.from_pretrained(source)
    model = AudioModality().prepare_model(model, AudioArguments(), extractor)
    model.save_pretrained(folder)
    extractor.save_pretrained(folder)
    return folder


def fit_head(model_dir: str, dataset: str, column: str, count: int) -> None:
    """Fit the classification layer of the classifier saved in `model_dir` on the first `count` training examples
    of the built-in `dataset` (logistic regression on the layer's inputs, all else frozen), and save it back."""
    from sklearn.linear_model import LogisticRegression

    from hftl.features import capture_inputs, feature_layer

    classifier = load_classifier(model_dir)
    train = load_builtin(dataset)["train"].select(range(count))
    paths = train[column]
    if classifier.modality == "audio":
        paths = [cell if isinstance(cell, str) else cell["path"] for cell in paths]
    rate = getattr(classifier.processor, "sampling_rate", None)
    examples = paths if classifier.modality == "text" else read_examples(classifier.modality, paths, count, rate)
    accepted = set(inspect.signature(classifier.model.forward).parameters)
    _, layer = feature_layer(classifier.model, classifier.model.config.num_labels)
    with torch.no_grad(), capture_inputs(layer) as captured:
        for start in range(0, count, 16):
            chunk = examples[start : start + 16]
            classifier.model(**model_inputs(classifier.modality, classifier.processor, chunk, accepted))
    fitted = LogisticRegression(max_iter=2000).fit(torch.cat(captured).numpy(), train["label"])
    weight, bias = torch.zeros_like(layer.weight), torch.zeros_like(layer.bias)
    rows = list(fitted.classes_) if len(fitted.classes_) > 2 else [fitted.classes_[1]]  # binary: one row of coef
    weight[rows], bias[rows] = torch.tensor(fitted.coef_, dtype=weight.dtype), torch.tensor(fitted.intercept_)
    layer.weight.data, layer.bias.data = weight, bias
    classifier.model.save_pretrained(model_dir)


def sample_files(modality: str, folder: str, count: int) -> list[str]:
    """`count` test-split inputs of the built-in data, as files `--samples` reads."""
    if modality == "text":
        path = os.path.join(folder, "texts.txt")
        texts = load_builtin("rotten_tomatoes_critics")["test"]["text"][:count]
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(" ".join(text.split()) for text in texts) + "\n")
        return [path]
    if modality == "image":
        os.makedirs(os.path.join(folder, "images"), exist_ok=True)
        test = load_builtin("fashion_mnist")["test"].select(range(count))
        paths = [os.path.join(folder, "images", f"{i:04d}.png") for i in range(count)]
        for path, image in zip(paths, test["image"], strict=True):
            image.save(path)
        return paths
    return load_builtin("spoken_language_id_real")["test"]["audio"][:count]


def latency_ms(run, batches: list[dict]) -> float:
    """Median milliseconds of `run(batch)` over `batches` (each timed once, after one warm-up call)."""
    run(batches[0])
    times = []
    for batch in batches:
        start = time.perf_counter()
        run(batch)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(model_dir: str, output_dir: str, samples: list[str], args) -> dict:
    """Export with int8, then time PyTorch, ONNX float and ONNX int8 at batch 1 on `args.runs` examples."""
    report = export_classifier(model_dir, output_dir, "int8", samples, num_samples=args.examples)
    classifier = load_classifier(model_dir)
    accepted = set(inspect.signature(classifier.model.forward).parameters)
    rate = getattr(classifier.processor, "sampling_rate", None)
    examples = read_examples(classifier.modality, samples, args.runs, rate)
    singles = [model_inputs(classifier.modality, classifier.processor, [example], accepted) for example in examples]
    float_graph = session(os.path.join(output_dir, "model.onnx"), args.threads)
    int8_graph = session(os.path.join(output_dir, "model_int8.onnx"), args.threads)

    def pytorch(batch):
        with torch.no_grad():
            classifier.model(**batch)

    report["latency_ms"] = {
        "pytorch": latency_ms(pytorch, singles),
        "onnx": latency_ms(lambda batch: float_graph.run(["logits"], onnx_feed(float_graph, batch)), singles),
        "int8": latency_ms(lambda batch: int8_graph.run(["logits"], onnx_feed(int8_graph, batch)), singles),
    }
    return report


def print_table(rows: list[tuple[str, dict]]) -> None:
    print(
        "| model | size MB: PyTorch / ONNX / int8 | ms per example (batch 1): PyTorch / ONNX / int8 | "
        "max abs logit diff: ONNX / int8 | int8 argmax agreement | examples |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, report in rows:
        onnx, int8, ms = report["onnx"], report["int8"], report["latency_ms"]
        print(
            f"| {name} | {report['pytorch_size_mb']:.1f} / {onnx['size_mb']:.1f} / {int8['size_mb']:.1f} | "
            f"{ms['pytorch']:.1f} / {ms['onnx']:.1f} / {ms['int8']:.1f} | {onnx['max_abs_diff']:.1e} / "
            f"{int8['max_abs_diff']:.2f} | {int8['argmax_agreement']:.2f} | {onnx['examples']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--examples", type=int, default=100, help="inputs of the parity check, per model")
    parser.add_argument("--runs", type=int, default=30, help="examples timed at batch 1, per model and runtime")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of PyTorch and onnxruntime")
    parser.add_argument("--train_examples", type=int, default=300, help="examples the new heads are fitted on")
    parser.add_argument("--work_dir", default="benchmarks/runs/onnx_export", help="where the folders are written")
    parser.add_argument("--models", nargs="+", default=["text", "image", "speech"], choices=["text", "image", "speech"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    builders = {  # name, modality, folder builder, built-in data the new head is fitted on (None: ImageNet's head)
        "text": ("MiniLM-L6 (text)", "text", text_classifier, ("rotten_tomatoes_critics", "text")),
        "image": ("EfficientNet-Lite0 (image)", "image", lambda folder: packaged_image_model(), None),
        "speech": (
            "Whisper-base encoder, cropped (speech)",
            "audio",
            speech_classifier,
            ("spoken_language_id_real", "audio"),
        ),
    }
    rows = []
    for key in args.models:
        name, modality, build, head_data = builders[key]
        folder = os.path.join(args.work_dir, key)
        os.makedirs(folder, exist_ok=True)
        model_dir = build(os.path.join(folder, "model"))
        if head_data:
            fit_head(model_dir, *head_data, args.train_examples)
        report = measure(model_dir, os.path.join(folder, "onnx"), sample_files(modality, folder, args.examples), args)
        rows.append((name, report))
        print(f"{name}: {report}", flush=True)
    print_table(rows)


if __name__ == "__main__":
    main()
