"""The recipes' export flags: `--export_onnx` runs `hftl export` on the saved model at the end of the run."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from hftl.errors import InputError


@dataclass
class ExportArguments:
    """Export the trained model for serving (see `hftl.export`)."""

    export_onnx: bool = field(
        default=False,
        metadata={
            "help": "After training, export the saved model to ONNX in output_dir/onnx (model.onnx, the processor, "
            "config.json, export_report.json), its logits checked against PyTorch on the test split (as `hftl export`)."
        },
    )
    export_quantize: str | None = field(
        default=None,
        metadata={"help": "With --export_onnx: 'int8' also writes model_int8.onnx (onnxruntime dynamic int8)."},
    )

    def __post_init__(self):
        if self.export_quantize not in (None, "int8"):
            raise InputError(f"--export_quantize {self.export_quantize}: the one quantisation offered is int8.")
        if self.export_quantize and not self.export_onnx:
            raise InputError(f"--export_quantize {self.export_quantize} needs --export_onnx true (or drop it).")


EXPORT_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # `pip install hftl[export]`


def check_export_installed(flag: str) -> None:
    """Raises: InputError naming `flag` when onnx, onnxscript or onnxruntime is not installed."""
    missing = [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(
            f"{flag} needs {', '.join(missing)}: install them with `pip install 'hftl[export]'` (onnx, onnxscript, "
            f"onnxruntime)."
        )


def check_export_flags(values: dict[str, Any]) -> None:
    """Flag combinations an export cannot follow (`values`: parsed flag name -> value).

    Raises:
        InputError: --export_onnx without the export packages, or with a LoRA run that saves the adapter alone
            (`--merge_adapter false`).
    """
    if values.get("export_onnx"):
        check_export_installed("--export_onnx")
    if values.get("export_onnx") and values.get("strategy") == "lora" and values.get("merge_adapter") is False:
        raise InputError(
            "--export_onnx exports a plain model, but --strategy lora --merge_adapter false saves the adapter alone: "
            "drop --merge_adapter false (the adapter is still saved in output_dir/adapter), or --export_onnx."
        )
