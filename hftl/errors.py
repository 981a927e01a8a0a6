"""Errors that hftl raises for bad input, before any model is loaded or any step is trained."""


class PushError(RuntimeError):
    """The upload to the Hub failed; the local output is complete. Recipes print it and exit with status 1."""


class ExportError(RuntimeError):
    """The exported ONNX graph does not reproduce the saved model (`--export_onnx`); the model, its card and the
    export report are written. Recipes print it and exit with status 1."""


class InputError(ValueError):
    """A user input (flag, file, column, row or label) that hftl refuses, with what would fix it.

    Recipes print the message without a traceback and exit with status 2.
    """
