"""The `hftl export` command line: its flags and the printed summary of `export_report.json`."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `hftl export`."""
    parser.add_argument("model_dir", help="A saved classifier folder (a recipe's --output_dir).")
    parser.add_argument("--output_dir", help="Where to write model.onnx and the processor (default: MODEL_DIR/onnx).")
    parser.add_argument(
        "--quantize", choices=["int8"], help="Also write model_int8.onnx, onnxruntime's dynamic int8 quantisation."
    )
    parser.add_argument(
        "--samples",
        nargs="+",
        metavar="PATH",
        help="Inputs for the parity check: text .txt (one per line) / .csv / .json(l) files; image or audio files "
        "or folders (default: built-in sample texts, images or clips).",
    )
    parser.add_argument("--num_samples", type=int, default=8, help="Examples the parity check runs (default 8).")


def _summary(report: dict) -> str:
    lines = [f"{report['model']} ({report['model_type']}, {report['modality']}), inputs {', '.join(report['inputs'])}"]
    for key in ("onnx", "int8"):
        if key in report:
            check = report[key]
            lines.append(
                f"  {check['file']}: {check['size_mb']:.1f} MB, max |logit diff| vs PyTorch {check['max_abs_diff']:.2e}"
                f" on {check['examples']} examples, argmax agreement {check['argmax_agreement']:.3f}"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the export; print the report's summary. Returns 0, 1 (parity check failed) or 2 (bad input)."""
    import os

    from hftl.errors import InputError
    from hftl.export.run import REPORT_FILE, ParityError, export_classifier

    output_dir = args.output_dir or os.path.join(args.model_dir, "onnx")
    try:
        report = export_classifier(args.model_dir, output_dir, args.quantize, args.samples, args.num_samples)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ParityError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(_summary(report))
    print(f"Wrote {os.path.join(output_dir, REPORT_FILE)}")
    return 0
