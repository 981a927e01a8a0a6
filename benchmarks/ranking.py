#!/usr/bin/env python
"""Do the transferability scores predict what a linear head reaches, layer by layer? And does `--feature_layer auto`
(LogME on the source training data) pick a layer that serves the target?

Table 1: for each packaged model (MiniLM, EfficientNet-Lite0 stages, Whisper-base encoder layers) on each dataset,
the Kendall tau, across the model's candidate layers, between each score (LogME, H-score, TransRate, on the training
slice) and the test accuracy of a logistic regression trained on the same frozen features.
Table 2: the three adaptation pairs: the layer LogME picks on the source (target labels unseen), the target test
accuracy of a logistic regression trained on the source at that layer, and at the best layer (found with the target
labels, for this report only). EfficientNet-Lite cannot be cropped (`--feature_layer auto` refuses it): its row is
what `hftl rank` would recommend among its stages.

    HF_HUB_OFFLINE=1 nice -n 10 python benchmarks/ranking.py --train_examples 300 --test_examples 200 \\
        --feature_cache_dir benchmarks/runs/ranking_cache
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hftl.config import resolve_config  # noqa: E402
from hftl.data.domains import load_data  # noqa: E402
from hftl.features import head_modules  # noqa: E402
from hftl.inputs import build_inputs  # noqa: E402
from hftl.modalities import AudioModality, ImageModality, TextModality  # noqa: E402
from hftl.modeling import load_model  # noqa: E402
from hftl.ranking.candidates import layer_features_of  # noqa: E402
from hftl.ranking.table import SCORES  # noqa: E402

MODALITIES = {"text": TextModality, "image": ImageModality, "audio": AudioModality}
MODEL_NAMES = {"text": "all-MiniLM-L6-v2", "image": "EfficientNet-Lite0", "audio": "Whisper-base"}
DATASETS = {
    "text": ("rotten_tomatoes_critics", "spam_assassin_easy", "spam_assassin_hard"),
    "image": ("mnist", "optdigits", "fashion_mnist"),
    "audio": ("spoken_language_id_synthetic", "spoken_language_id_real"),
}
PAIRS = (
    ("text", "spam_assassin_easy", "spam_assassin_hard"),
    ("image", "mnist", "optdigits"),
    ("audio", "spoken_language_id_synthetic", "spoken_language_id_real"),
)


def split_features(modality_name: str, dataset: str, args) -> dict:
    """Every candidate layer's features of the (first examples of the) train and test splits of a built-in dataset,
    through the packaged model, as the recipe preprocesses them."""
    modality = MODALITIES[modality_name]()
    flags = ["--dataset_name", dataset, "--max_train_samples", str(args.train_examples)]
    flags += ["--max_predict_samples", str(args.test_examples), "--max_eval_samples", "8"]
    flags += ["--output_dir", os.path.join(args.work_dir, "unused"), "--per_device_eval_batch_size", "32"]
    flags += ["--ignore_mismatched_sizes", "true"]  # the packaged EfficientNet-Lite0 has an ImageNet head
    flags += ["--feature_cache_dir", args.feature_cache_dir] if args.feature_cache_dir else []
    config = resolve_config(modality, {}, flags)
    data = load_data(modality, config)
    loaded = load_model(modality, config, data.labels)
    inputs = build_inputs(modality, config, data, loaded.processor)
    head = head_modules(loaded.model, len(data.labels.names))[0][1]
    found = {"names": data.labels.names}
    for split in ("train", "test"):
        dataset_split, lengths = inputs.source.plain[split], inputs.source.lengths(split)
        layers = layer_features_of(
            loaded.model, head, dataset_split, lengths, inputs.collator, loaded.processor, config
        )
        found[split] = (layers, np.asarray(data.source.splits[split]["labels"]))
    return found


def probe_accuracy(f_train, y_train, f_test, y_test) -> float:
    """Test accuracy of a logistic regression on standardised frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    probe.fit(f_train, y_train)
    return float((probe.predict(f_test) == y_test).mean())


def correlation_row(modality_name: str, dataset: str, found: dict) -> dict:
    from scipy.stats import kendalltau

    (train, y_train), (test, y_test) = found["train"], found["test"]
    accuracy = [probe_accuracy(a, y_train, b, y_test) for a, b in zip(train.features, test.features, strict=True)]
    row = {"model": MODEL_NAMES[modality_name], "dataset": dataset, "layers": len(train.layers)}
    for name, score in SCORES.items():
        values = [score(f, y_train) for f in train.features]
        tau = kendalltau(values, accuracy).statistic
        row[f"tau_{name}"] = None if np.isnan(tau) else round(float(tau), 3)
        if name == "logme":
            row["logme_pick"] = train.names[int(np.argmax(values))]
            row["acc_at_pick"] = round(accuracy[int(np.argmax(values))], 4)
    row["best_layer"], row["best_acc"] = train.names[int(np.argmax(accuracy))], round(max(accuracy), 4)
    row["accuracy_by_layer"] = [round(a, 4) for a in accuracy]
    return row


def pair_row(modality_name: str, source: dict, target: dict, names: tuple[str, str]) -> dict:
    """The layer LogME picks on the source, and the target accuracy of a source-trained probe there and at best."""
    from hftl.ranking.logme import logme

    train, y_train = source["train"]
    test, y_target = target["test"]
    remap = {i: source["names"].index(name) for i, name in enumerate(target["names"])}  # same class names
    y_target = np.asarray([remap[int(y)] for y in y_target])
    values = [logme(f, y_train) for f in train.features]
    pick = int(np.argmax(values))  # ties: the first, i.e. the lower layer (fewer parameters), as the ranking rule
    accuracy = [probe_accuracy(a, y_train, b, y_target) for a, b in zip(train.features, test.features, strict=True)]
    best = int(np.argmax(accuracy))
    return {
        "model": MODEL_NAMES[modality_name],
        "pair": f"{names[0]} -> {names[1]}",
        "auto_pick": train.names[pick],
        "target_acc_at_pick": round(accuracy[pick], 4),
        "best_layer_on_target": train.names[best],
        "best_target_acc": round(accuracy[best], 4),
        "within_2_points": accuracy[best] - accuracy[pick] <= 0.02,
        "croppable": train.croppable,
        "target_acc_by_layer": [round(a, 4) for a in accuracy],
    }


def print_table(rows: list[dict], columns: list[str]) -> None:
    cells = [[str(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_examples", type=int, default=300)
    parser.add_argument("--test_examples", type=int, default=200)
    parser.add_argument("--modalities", nargs="+", default=list(MODALITIES), choices=list(MODALITIES))
    parser.add_argument("--feature_cache_dir", default=None)
    parser.add_argument("--work_dir", default="benchmarks/runs/ranking")
    parser.add_argument("--output_file", default=None, help="Also write both tables as JSON here.")
    args = parser.parse_args()
    logging.getLogger("hftl").setLevel(logging.WARNING)
    found, correlations, pairs = {}, [], []
    for modality_name in args.modalities:
        for dataset in DATASETS[modality_name]:
            found[dataset] = split_features(modality_name, dataset, args)
            correlations.append(correlation_row(modality_name, dataset, found[dataset]))
            print(json.dumps({k: v for k, v in correlations[-1].items()}), flush=True)
    for modality_name, source, target in PAIRS:
        if modality_name in args.modalities:
            pairs.append(pair_row(modality_name, found[source], found[target], (source, target)))
    print(
        "\nKendall tau between each score (training slice) and a logistic-regression probe's test accuracy, over layers"
    )
    columns = ["model", "dataset", "layers", "tau_logme", "tau_h_score", "tau_transrate", "logme_pick", "acc_at_pick"]
    print_table(correlations, [*columns, "best_layer", "best_acc"])
    print(
        "\n--feature_layer auto (LogME on the source) on the adaptation pairs: target test accuracy of a source probe"
    )
    print_table(pairs, ["model", "pair", "auto_pick", "target_acc_at_pick", "best_layer_on_target", "best_target_acc",
                        "within_2_points", "croppable"])  # fmt: skip
    if args.output_file:
        with open(args.output_file, "w", encoding="utf-8") as handle:
            json.dump({"correlations": correlations, "pairs": pairs, "args": vars(args)}, handle, indent=2)


if __name__ == "__main__":
    main()
