"""Data: built-in datasets, loading of Hub / local / built-in splits, and the checks run before training."""

from hftl.data.builtin import BUILTIN_DATASETS, BuiltinDataset, load_builtin
from hftl.data.checks import LabelInfo, check_and_encode, check_and_encode_target
from hftl.data.loading import RawData, load_raw_data

__all__ = [
    "BUILTIN_DATASETS",
    "BuiltinDataset",
    "LabelInfo",
    "RawData",
    "check_and_encode",
    "check_and_encode_target",
    "load_builtin",
    "load_raw_data",
]
