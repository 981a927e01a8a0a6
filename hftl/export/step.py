"""The recipes' export step (`--export_onnx`): after evaluation, `export_classifier` on the saved model, its parity
checked on the run's own test inputs, built by the run's own collator (what evaluation ran)."""

from __future__ import annotations

import logging
import os

from hftl.export.run import export_classifier

logger = logging.getLogger("hftl")
EXAMPLES = 8  # inputs of the parity check: the first alone, then batches of 4


def _split_batches(run) -> list[dict] | None:
    """Collated batches of the first EXAMPLES examples of the test split (else validation); None when that split
    has fewer than 2."""
    from transformers import default_data_collator

    splits = run.inputs.source.plain
    name = next((s for s in ("test", "validation") if s in splits and len(splits[s]) >= 2), None)
    if name is None:
        return None
    split, collate = splits[name], run.inputs.collator or default_data_collator
    count = min(EXAMPLES, len(split))
    chunks = [[0]] + [list(range(i, min(i + 4, count))) for i in range(1, count, 4)] if count > 2 else [[0, 1]]
    return [collate([split[i] for i in chunk]) for chunk in chunks]  # labels are dropped by the export


def export_step(run, trained) -> None:
    """With `--export_onnx`: write output_dir/onnx (see `export_classifier`), on the main process only.

    Raises:
        ParityError: the ONNX logits are further than 1e-4 from PyTorch's (the report is written first).
    """
    args, output_dir = run.config.export, run.config.training.output_dir
    if not args.export_onnx or not trained.trainer.is_world_process_zero():
        return
    report = export_classifier(
        output_dir, os.path.join(output_dir, "onnx"), args.export_quantize, batches=_split_batches(run)
    )
    for key in ("onnx", "int8"):
        if key in report:
            check = report[key]
            logger.info(
                "Exported %s (%.1f MB): max |logit diff| vs PyTorch %.2e on %d examples, argmax agreement %.3f",
                os.path.join(output_dir, "onnx", check["file"]),
                check["size_mb"],
                check["max_abs_diff"],
                check["examples"],
                check["argmax_agreement"],
            )
