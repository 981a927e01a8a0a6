#!/usr/bin/env python
"""Label-free scorers on real trained candidates: how well each one tracks the true target accuracy.

For each pair and seed, trains candidates (source only and methods x trade-offs, plain and importance-weighted), each
the recipe run a user types, run in-process; reads each trained model's outputs on the source validation split and
on unlabelled target train examples (`CandidateOutputs`), scores them with every registered scorer, and reads its
true target test accuracy (for this table only: no scorer reads target labels). Prints, per pair and seed, every
candidate's scores and accuracy, each scorer's Spearman correlation with the true accuracy over the candidates, the
target accuracy of the candidate each scorer alone would pick, and what `select_candidate` keeps (and why).

    HF_HUB_OFFLINE=1 python benchmarks/scorers.py [--pairs text] [--seeds 0 1 2] [--max_train_samples 600]

`--from_auto_runs DIR` trains nothing: it reads the `adaptation_selection.json` of every `--adaptation auto` run
that `benchmarks/domain_adaptation.py --output_dir DIR` made (`DIR/<pair>/auto/seed<S>/`: its candidates' scores and
their true target accuracy, recorded there for comparison only) and prints the same tables, with what today's
`select_candidate` keeps given that run's diagnosis (the scores do not depend on the rule, so this is the choice a
rerun would make) and, in the JSON, the choice the run itself recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from types import SimpleNamespace

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from domain_adaptation import COMMON, PAIRS  # noqa: E402

import hftl.pipeline  # noqa: E402
from hftl.adaptation.scorers import CandidateOutputs, score_all, scorer_names  # noqa: E402
from hftl.adaptation.selection import ScoredCandidate, candidate_warnings, select_candidate  # noqa: E402
from hftl.features import extract_features  # noqa: E402
from hftl.metrics import logits_of  # noqa: E402

# (name, method, trade_off, importance_weighting); "none" is source only
CANDIDATES = [("none", "none", 0.0, False)] + [
    (f"{'iw' if iw else ''}{method}@{trade_off:g}", method, trade_off, iw)
    for method in ("mmd", "dann", "coral")
    for trade_off in (0.3, 1.0, 3.0)
    for iw in (False, True)
]
LIMIT = 1000  # target train / source train examples read per candidate


def _modality(recipe: str):
    from hftl.modalities import AudioModality, ImageModality, TextModality

    return {"text_classification": TextModality, "image_classification": ImageModality}.get(recipe, AudioModality)()


def _defaults(recipe: str) -> dict:
    import importlib.util

    spec = importlib.util.spec_from_file_location(recipe, os.path.join(ROOT, "recipes", f"{recipe}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DEFAULTS


def _sample(dataset, limit: int, seed: int):
    if "labels" in dataset.column_names:
        dataset = dataset.remove_columns("labels")
    if len(dataset) <= limit:
        return dataset
    return dataset.select(np.sort(np.random.default_rng(seed).choice(len(dataset), limit, replace=False)))


def _outputs(trained, seed: int) -> tuple[CandidateOutputs, float]:
    """The candidate's label-free inputs, and its true target test accuracy (for the table only)."""

    def logits(dataset):
        output = trained.trainer.predict(dataset, metric_key_prefix="candidate")
        return np.asarray(logits_of(output.predictions), dtype=np.float32), output.label_ids

    def features(dataset):
        return extract_features(trained.report_model, dataset, trained.report_collator, 128, trained.report_layer)

    validation, target = trained.evaluation["eval"], _sample(trained.report_data["target_train"], LIMIT, seed)
    source_train = _sample(trained.report_data["train"], LIMIT, seed + 1)
    (source_logits, source_labels), (target_logits, _) = logits(validation), logits(target)
    test_logits, test_labels = logits(trained.evaluation["target"])
    outputs = CandidateOutputs(
        source_logits,
        np.asarray(source_labels),
        features(validation).numpy(),
        target_logits,
        features(target).numpy(),
        features(source_train).numpy(),
        seed,
    )
    return outputs, float(np.mean(test_logits.argmax(-1) == np.asarray(test_labels)))


def _train(pair: dict, candidate: tuple, seed: int, output_dir: str, extra: list[str]):
    """One recipe run in-process; returns its `Trained` (captured from the pipeline's train step)."""
    name, method, trade_off, iw = candidate
    captured = {}
    original = hftl.pipeline.train_stages

    def capture(*args, **kwargs):
        captured["trained"] = original(*args, **kwargs)
        return captured["trained"]

    args = ["--dataset_name", pair["source"], "--target_dataset_name", pair["target"], "--adaptation", method]
    args += ["--trade_off", str(trade_off)] if method != "none" else []
    args += ["--importance_weighting"] if iw else []
    args += [*pair["flags"], *COMMON, "--seed", str(seed), "--output_dir", os.path.join(output_dir, name)]
    args += ["--feature_cache_dir", os.path.join(output_dir, "..", "feature_cache"), "--log_level", "error", *extra]
    hftl.pipeline.train_stages = capture
    try:
        hftl.pipeline.run_classification(_modality(pair["recipe"]), _defaults(pair["recipe"]), args)
    finally:
        hftl.pipeline.train_stages = original
    return captured["trained"]


def _finished(path: str) -> dict[str, dict]:
    """Candidates already trained and scored by an earlier invocation (one JSON row each), by name."""
    if not os.path.isfile(path):
        return {}
    with open(path) as handle:
        return {row["name"]: row for row in map(json.loads, handle)}


def _spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    value = spearmanr(x, y).statistic
    return float(value) if np.isfinite(value) else float("nan")


def _report(rows: list[dict], diagnosis=None) -> dict:
    """Per scorer: Spearman correlation with the true accuracy, and the accuracy of the candidate it alone picks;
    and `select_candidate`'s pick."""
    accuracy = [row["target_accuracy"] for row in rows]
    summary = {}
    for name in scorer_names():
        values = [row["scores"][name] for row in rows]
        summary[name] = {"spearman": _spearman(values, accuracy), "pick_accuracy": accuracy[int(np.nanargmax(values))]}
    scored = [ScoredCandidate(r["name"], r["method"], r["trade_off"], r["iw"], r["scores"]) for r in rows]
    selection = select_candidate(scored, diagnosis)
    summary["select_candidate"] = {"pick": rows[selection.index]["name"], "reason": selection.reason}
    summary["select_candidate"]["pick_accuracy"] = accuracy[selection.index]
    summary["source_only_accuracy"], summary["best_accuracy"] = accuracy[0], max(accuracy)
    summary["warnings"] = {row["name"]: w for row, w in zip(rows, candidate_warnings(scored), strict=True) if w}
    return summary


def _print(pair: str, seed: int, rows: list[dict], summary: dict) -> None:
    names = scorer_names()
    print(f"\n## {pair}, seed {seed}\n\n| candidate | target acc. | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for row in rows:
        cells = " | ".join(f"{row['scores'][n]:.3f}" for n in names)
        print(f"| {row['name']} | {row['target_accuracy']:.3f} | {cells} |")
    print("| Spearman with target acc. | | " + " | ".join(f"{summary[n]['spearman']:.2f}" for n in names) + " |")
    print("| target acc. of its pick | | " + " | ".join(f"{summary[n]['pick_accuracy']:.3f}" for n in names) + " |")
    pick = summary["select_candidate"]
    print(
        f"\nselect_candidate: {pick['pick']} (target acc. {pick['pick_accuracy']:.3f}; source only "
        f"{summary['source_only_accuracy']:.3f}, best in hindsight {summary['best_accuracy']:.3f}): {pick['reason']}"
    )


def _auto_runs(directory: str) -> list[dict]:
    """Every auto run of a domain-adaptation benchmark folder: its candidates as rows, and its own choice."""
    results = []
    for pair in sorted(os.listdir(directory)):
        auto_dir = os.path.join(directory, pair, "auto")
        for seed_dir in sorted(os.listdir(auto_dir)) if os.path.isdir(auto_dir) else []:
            path = os.path.join(auto_dir, seed_dir, "adaptation_selection.json")
            if not os.path.isfile(path):
                continue
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
            rows = [
                dict(name=c["name"], method=c["method"], trade_off=c["trade_off"], iw=c["importance_weighting"],
                     target_accuracy=c["target_test_never_used_for_choice"]["accuracy"], scores=c["scores"])
                for c in record["candidates"]
            ]  # fmt: skip
            summary = _report(rows, SimpleNamespace(**record["diagnosis"]) if record.get("diagnosis") else None)
            summary["recorded_choice"] = {"pick": record["chosen"]["name"], "reason": record["reason"]}
            summary["recorded_choice"]["pick_accuracy"] = rows[record["chosen_index"]]["target_accuracy"]
            seed = int(seed_dir.removeprefix("seed"))
            _print(pair, seed, rows, summary)
            results.append({"pair": pair, "seed": seed, "candidates": rows, "summary": summary})
    return results


def _mean_table(results: list[dict]) -> None:
    """Per pair, the mean over seeds of each scorer's Spearman correlation and of its pick's target accuracy."""
    names = scorer_names()
    print("\n| pair (seeds) | " + " | ".join(names) + " | select_candidate | best in hindsight | source only |")
    print("|---|" + "---|" * (len(names) + 3))
    for pair in sorted({r["pair"] for r in results}):
        runs = [r["summary"] for r in results if r["pair"] == pair]
        cells = [
            f"{np.nanmean([s[n]['spearman'] for s in runs]):.2f} / {np.mean([s[n]['pick_accuracy'] for s in runs]):.3f}"
            for n in names
        ]
        tail = [np.mean([s[k] for s in runs]) for k in ("best_accuracy", "source_only_accuracy")]
        chosen = np.mean([s["select_candidate"]["pick_accuracy"] for s in runs])
        print(f"| {pair} ({len(runs)}) | " + " | ".join(cells) + f" | {chosen:.3f} | {tail[0]:.3f} | {tail[1]:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=["text"], choices=list(PAIRS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--candidates", nargs="+", default=[c[0] for c in CANDIDATES])
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "benchmarks", "runs", "scorers"))
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="More recipe flags for every run.")
    parser.add_argument("--from_auto_runs", default=None, help="Score the auto runs of this benchmark folder instead.")
    options = parser.parse_args()
    if options.from_auto_runs:
        results = _auto_runs(options.from_auto_runs)
        _mean_table(results)
        return
    results = []
    for pair in options.pairs:
        for seed in options.seeds:
            done_path = os.path.join(options.output_dir, pair, f"seed{seed}", "candidates.jsonl")
            done = _finished(done_path)
            rows = []
            for candidate in (c for c in CANDIDATES if c[0] in options.candidates):
                if candidate[0] not in done:
                    run_dir = os.path.join(options.output_dir, pair, f"seed{seed}")
                    outputs, accuracy = _outputs(_train(PAIRS[pair], candidate, seed, run_dir, options.extra), seed)
                    name, method, trade_off, iw = candidate
                    row = dict(name=name, method=method, trade_off=trade_off, iw=iw, target_accuracy=accuracy)
                    done[name] = row | {"scores": score_all(outputs)}
                    with open(done_path, "a") as handle:  # a rerun reuses finished candidates
                        handle.write(json.dumps(done[name]) + "\n")
                rows.append(done[candidate[0]])
                print(f"{pair} seed {seed} {candidate[0]}: target acc. {rows[-1]['target_accuracy']:.3f}", flush=True)
            summary = _report(rows)
            _print(pair, seed, rows, summary)
            results.append({"pair": pair, "seed": seed, "candidates": rows, "summary": summary})
    os.makedirs(options.output_dir, exist_ok=True)
    with open(os.path.join(options.output_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
