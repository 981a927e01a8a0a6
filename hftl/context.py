"""What the steps before training produced, handed on as one frozen object to training, evaluation, the reports and
saving (which read it and never change it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hftl.config import RunConfig
from hftl.data.domains import RunData
from hftl.inputs import Inputs
from hftl.modeling import LoadedModel


@dataclass(frozen=True)
class FeatureLayer:
    """The plain model's feature layer (`hftl.features.feature_layer`): its name and input width F."""

    name: str
    size: int

    @classmethod
    def of(cls, model, num_labels: int) -> FeatureLayer | None:
        """The feature layer of `model`, or None when it has none (only adaptation, reports and cached heads need
        one; they raise where they do)."""
        from hftl.features import feature_layer

        try:
            name, layer = feature_layer(model, num_labels)
        except ValueError:
            return None
        return cls(name, layer.in_features)


@dataclass(frozen=True)
class RunContext:
    """Attributes:
    modality: how raw examples become inputs (`hftl.modalities`).
    config: the resolved flags.
    data: the checked source and target data, the classes.
    loaded: the pretrained model as loaded (its processor and path).
    inputs: model inputs of both domains, the collator.
    shift: the `DomainShift` measured before training (None when the run neither adapts nor reports the gap).
    layer: the feature layer of the plain model (None if it has no classification layer).
    selection: `--adaptation auto`'s record of the candidates and its choice (adaptation_selection.json), else None.
    """

    modality: Any
    config: RunConfig
    data: RunData
    loaded: LoadedModel
    inputs: Inputs
    shift: Any
    layer: FeatureLayer | None
    selection: dict | None = None

    @property
    def num_labels(self) -> int:
        return len(self.data.labels.names)

    @property
    def processor(self):
        return self.loaded.processor

    @property
    def adapts_in_training(self) -> bool:
        """The final stage trains a training task (alignment and / or importance weights) rather than the classifier."""
        return self.shift is not None and self.config.adaptation.adapts and self.config.training.do_train
