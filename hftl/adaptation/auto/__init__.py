"""`--adaptation auto`: train candidates (source only, methods x trade-offs), score them without target labels, keep
one. One job per file: `arguments` (flags, refused combinations), `candidates` (which, with which flags), `outputs`
(what a trained candidate outputs for the scorers), `records` (finished candidates on disk, for resuming), `report`
(adaptation_selection.json, the card's table), `run` (the orchestration, `train_auto`)."""

from hftl.adaptation.auto.arguments import AUTO, AutoAdaptationArguments, check_auto_flags

__all__ = ["AUTO", "AutoAdaptationArguments", "check_auto_flags"]
