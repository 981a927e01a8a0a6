"""Dynamic int8 quantisation of an exported graph, with onnxruntime's own quantiser (`quantize_dynamic`).

Dynamic quantisation (weights stored as int8 once, activations quantised per batch at run time, no calibration
data) is onnxruntime's method for transformer models on CPU ("Quantize ONNX models" in its documentation). Quantised:
matrix multiplications (`MatMul`: nearly all of a transformer's weights) and embedding look-ups (`Gather`: the
token embeddings, half of MiniLM's weights). Convolutions stay float: on the packaged EfficientNet-Lite0 dynamic
`ConvInteger` agreed with PyTorch's top class on 3 images in 12 and ran slower than float (measured with
`benchmarks/onnx_export.py`'s inputs), a known weakness of per-tensor int8 on depthwise convolutions.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("hftl")
QUANTIZED_OPS = ("MatMul", "Gather")


class _NoPreprocessingHint(logging.Filter):
    """Drops onnxruntime's "consider pre-processing" hint: its pre-processing (symbolic shape inference) cannot
    read the dynamo exporter's graphs, and the session's own graph optimisations do its fusions at load time."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def quantize_int8(source: str, target: str) -> None:
    """Write the dynamic int8 quantisation of the float graph `source` to `target` (int8 weights, per tensor).

    Raises:
        onnxruntime's errors for a graph it cannot quantise (not expected for graphs `export_onnx` wrote).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    hint = _NoPreprocessingHint()
    logging.getLogger().addFilter(hint)
    try:
        quantize_dynamic(source, target, op_types_to_quantize=list(QUANTIZED_OPS), weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().removeFilter(hint)
    logger.info("Wrote %s (%.1f MB, int8 weights)", target, os.path.getsize(target) / 2**20)
