"""Modalities: the only place where raw examples become model inputs and where the Auto class is chosen.

Everything after a modality (strategies, training, evaluation, export) is shared by all of them.
"""

from hftl.modalities.audio import AudioModality
from hftl.modalities.base import Modality
from hftl.modalities.image import ImageModality
from hftl.modalities.text import TextModality

__all__ = ["AudioModality", "ImageModality", "Modality", "TextModality"]
