"""Export for serving: a saved classifier as an ONNX graph (PyTorch's `torch.onnx.export`, dynamo exporter), checked
against PyTorch on real inputs, optionally quantised to int8 with onnxruntime. One job per file:

    source.py    which folder: a saved classifier and its processor (`load_classifier`)
    samples.py   the inputs the check runs, built by the saved processor
    graph.py     the ONNX graph (`export_onnx`), dynamic batch and length axes
    parity.py    PyTorch vs onnxruntime logits (`compare`)
    quantize.py  dynamic int8 quantisation (`quantize_int8`)
    run.py       the steps in order, `export_report.json` (`export_classifier`)
    command.py   the `hftl export` flags
    arguments.py the recipes' `--export_onnx` / `--export_quantize` flags; step.py: the recipes' export step
"""

__all__ = ["ParityError", "export_classifier"]


def __getattr__(name: str):
    """`export_classifier` and `ParityError`, imported on first use (so that `hftl --help` stays quick)."""
    if name in __all__:
        from hftl.export import run

        return getattr(run, name)
    raise AttributeError(f"module 'hftl.export' has no attribute {name!r}")
