"""Step 5 of a run: model inputs of every split of both domains (tokenizer, image processor or feature extractor,
applied lazily where the modality allows), and the collator that batches them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from datasets import DatasetDict

from hftl.config import RunConfig
from hftl.data.domains import DomainData, RunData


@dataclass(frozen=True)
class DomainInputs:
    """One domain's model-ready splits.

    Attributes:
        training: splits with training augmentation on the "train" split.
        plain: the same splits without augmentation (evaluation, feature extraction).
        lengths: split -> each example's size (tokens, seconds ...) or None, computed when asked.
    """

    training: DatasetDict
    plain: DatasetDict
    lengths: Callable[[str], list[float] | None]


@dataclass(frozen=True)
class Inputs:
    """Model inputs of the source domain, of the target domain (or None) and their collator."""

    source: DomainInputs
    target: DomainInputs | None
    collator: Callable | None


def _domain_inputs(modality, config: RunConfig, domain: DomainData, processor, columns) -> DomainInputs:
    def preprocess(augment: bool) -> DatasetDict:
        return modality.preprocess(domain.splits, processor, columns, config.inputs, config.training, augment=augment)

    training = preprocess(True)
    plain = preprocess(False) if modality.augments else training

    def lengths(split: str):
        return modality.example_lengths(domain.splits[split], columns)

    return DomainInputs(training, plain, lengths)


def build_inputs(modality, config: RunConfig, data: RunData, processor) -> Inputs:
    """Model-ready splits of the source and target domains, through the same preprocessing."""
    source = _domain_inputs(modality, config, data.source, processor, data.columns)
    target = _domain_inputs(modality, config, data.target, processor, data.columns) if data.target else None
    return Inputs(source, target, modality.data_collator(processor, config.inputs))
