"""`hftl export`, as named steps: check the folders -> load the classifier -> build sample inputs -> export ONNX
-> copy the processor and config -> parity check -> (int8 quantisation and its check) -> `export_report.json`."""

from __future__ import annotations

import inspect
import json
import logging
import os
from typing import Any

from hftl.errors import ExportError, InputError
from hftl.export.arguments import check_export_installed
from hftl.export.graph import export_onnx
from hftl.export.parity import compare, onnx_logits, session, torch_logits
from hftl.export.quantize import quantize_int8
from hftl.export.samples import model_inputs, read_examples, sample_examples
from hftl.export.source import SavedClassifier, classifier_modality, load_classifier
from hftl.output import check_writable

logger = logging.getLogger("hftl")

ONNX_FILE, INT8_FILE, REPORT_FILE = "model.onnx", "model_int8.onnx", "export_report.json"
TOLERANCE = 1e-4  # max |logit difference| the float graph may have from PyTorch


class ParityError(ExportError):
    """The float ONNX graph's logits differ from PyTorch's by more than the tolerance (the report is written)."""


BATCH_SIZE = 4  # examples per batch of the check (after one example alone)


def _batches(classifier: SavedClassifier, samples: list[str] | None, count: int) -> list[dict[str, Any]]:
    """Model inputs of `count` examples (the user's `samples`, else built-in ones): one alone first (batch 1),
    then up to BATCH_SIZE (padded) together; 2 examples make one batch."""
    rate = getattr(classifier.processor, "sampling_rate", None)
    if samples:
        examples = read_examples(classifier.modality, samples, count, rate)
    else:
        examples = sample_examples(classifier.modality, count, rate)
    accepted = set(inspect.signature(classifier.model.forward).parameters)
    if len(examples) < 3:  # no room for a batch of one and a padded batch
        return [model_inputs(classifier.modality, classifier.processor, examples, accepted)]
    chunks = [examples[:1]] + [examples[i : i + BATCH_SIZE] for i in range(1, len(examples), BATCH_SIZE)]
    return [model_inputs(classifier.modality, classifier.processor, chunk, accepted) for chunk in chunks]


def _check(path: str, reference: list, batches: list[dict]) -> dict[str, Any]:
    """The graph at `path` on `batches` against the PyTorch `reference` logits, with its size in MB."""
    graph = session(path)
    result = compare(reference, [onnx_logits(graph, batch) for batch in batches])
    return {"file": os.path.basename(path), "size_mb": round(os.path.getsize(path) / 2**20, 2), **result}


def _size_mb(folder: str, names: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")) -> float:
    """MB of the weight files among `names` in `folder`."""
    paths = [os.path.join(folder, name) for name in names]
    return round(sum(os.path.getsize(path) for path in paths if os.path.isfile(path)) / 2**20, 2)


def export_classifier(
    model_dir: str,
    output_dir: str | None = None,
    quantize: str | None = None,
    samples: list[str] | None = None,
    num_samples: int = 8,
    batches: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Export a saved classifier to ONNX for serving, check it against PyTorch, and write `export_report.json`.

    `output_dir` receives `model.onnx` (float32), `model_int8.onnx` (with `quantize="int8"`), the processor's files
    and `config.json` (`id2label`), so it loads like the model folder in onnxruntime (see the README).

    Args:
        model_dir: a saved classifier folder (a recipe's `--output_dir`).
        output_dir: where to write; default `<model_dir>/onnx`.
        quantize: None, or "int8" for onnxruntime's dynamic int8 quantisation too.
        samples: files (or folders) of inputs for the parity check; default: built-in sample texts / images / clips.
        num_samples: how many examples of `samples` (or built-in ones) the check runs, 2 or more.
        batches: model inputs to check on instead ({name: tensor}, as the model's collator gives them), e.g. a
            run's test batches; the graph is traced on the first batch of 2 or more.

    Returns:
        The report: model, modality, inputs, `pytorch_size_mb`, the `onnx` check ({file, size_mb, examples,
        max_abs_diff, argmax_agreement, tolerance, passed}) and, with int8, the `int8` check.

    Raises:
        InputError: onnx / onnxscript / onnxruntime not installed, not a saved classifier, an output folder that
            cannot be written, a model the exporter cannot trace, unreadable samples.
        ParityError: the float graph's logits are further than 1e-4 from PyTorch's (after the report is written).
    """
    if quantize not in (None, "int8"):
        raise InputError(f"--quantize {quantize}: the one quantisation hftl offers is int8 (dynamic).")
    if num_samples < 2:
        raise InputError(f"--num_samples {num_samples}: 2 or more (the check runs a padded batch).")
    check_export_installed("hftl export")
    output_dir = output_dir or os.path.join(model_dir, "onnx")
    classifier_modality(model_dir)  # a clear error before the output check and before any weights load
    check_writable(output_dir)
    classifier = load_classifier(model_dir)
    batches = batches or _batches(classifier, samples, num_samples)
    os.makedirs(output_dir, exist_ok=True)
    report = _export(classifier, batches, output_dir, quantize)
    with open(os.path.join(output_dir, REPORT_FILE), "w") as handle:
        json.dump(report, handle, indent=2)
    if not report["onnx"]["passed"]:
        raise ParityError(
            f"the ONNX logits differ from PyTorch's by up to {report['onnx']['max_abs_diff']:.3g} (> {TOLERANCE:g}); "
            f"see {os.path.join(output_dir, REPORT_FILE)}"
        )
    return report


def _export(classifier: SavedClassifier, batches: list[dict], output_dir: str, quantize: str | None):
    """Write the graph(s), the processor and config into `output_dir`; the report of their checks."""
    accepted = set(inspect.signature(classifier.model.forward).parameters) - {"labels"}
    batches = [{name: value for name, value in batch.items() if name in accepted} for batch in batches]
    example = next((batch for batch in batches if len(next(iter(batch.values()))) >= 2), None)
    if example is None:
        raise InputError("The parity check needs a batch of 2 or more examples to trace the model with.")
    onnx_path = os.path.join(output_dir, ONNX_FILE)
    export_onnx(classifier.model, classifier.modality, example, onnx_path)
    classifier.processor.save_pretrained(output_dir)
    classifier.model.config.save_pretrained(output_dir)
    reference = [torch_logits(classifier.model, batch) for batch in batches]
    report = {
        "model": os.path.abspath(classifier.path),
        "model_type": classifier.model.config.model_type,
        "modality": classifier.modality,
        "inputs": list(example),
        "pytorch_size_mb": _size_mb(classifier.path),
        "onnx": {**_check(onnx_path, reference, batches), "tolerance": TOLERANCE},
    }
    report["onnx"]["passed"] = report["onnx"]["max_abs_diff"] <= TOLERANCE
    if quantize == "int8":
        int8_path = os.path.join(output_dir, INT8_FILE)
        quantize_int8(onnx_path, int8_path)
        report["int8"] = _check(int8_path, reference, batches)
    return report
