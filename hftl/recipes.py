"""Entry point shared by the scripts in `recipes/`: clean exit on bad input."""

from __future__ import annotations

import sys
from typing import Any

from hftl.errors import ExportError, InputError, PushError
from hftl.modalities.base import Modality
from hftl.pipeline import run_classification


def main(modality: Modality, defaults: dict[str, Any], args: list[str] | None = None) -> int:
    """Run a recipe; bad input prints `error: ...` (no traceback) and returns 2, a failed Hub push or ONNX parity
    check returns 1."""
    try:
        run_classification(modality, defaults, args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (PushError, ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
