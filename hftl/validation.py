"""Parsing flags so that every error a user can cause with one is an `InputError` naming the flag, what it accepts
and the fix (one `error:` line, exit 2), never argparse's usage dump or a transformers traceback.

In the order `hftl.config.parse_args` runs them:

1. `FlagParser.parse_flags`: argparse errors (a value that is not a number, a boolean that is not true / false, a
   choice not offered) and unknown flags become `InputError`s, with the closest flag names; abbreviated flags are
   refused (`--learning_rat` would otherwise set `--learning_rate` unnoticed by the explicit-flag tracking).
2. `hftl.flag_checks.check_flag_values`: ranges and combinations, on the parsed values.
3. `build_arguments`: the dataclasses; a `ValueError` from transformers' own checks (`TrainingArguments`'s
   `__post_init__`) becomes an `InputError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from argparse import Namespace

from transformers import HfArgumentParser

from hftl.errors import InputError

# flags that transformers 5 renamed or folded into another: what to write instead
RENAMED_FLAGS = {
    "evaluation_strategy": "--eval_strategy",
    "warmup_ratio": "--warmup_steps, where a value below 1 is a fraction of the training steps",
    "no_cuda": "--use_cpu true",
    "per_gpu_train_batch_size": "--per_device_train_batch_size",
    "per_gpu_eval_batch_size": "--per_device_eval_batch_size",
}
_TYPE_WORDS = {
    "float": "a number, e.g. 5e-5",
    "int": "an integer",
    "string_to_bool": "true or false (also yes / no, 1 / 0)",
}


def close_flags(name: str, flags, prefix: str = "--") -> list[str]:
    """Up to three flag names closest to `name`, written with `prefix`, for 'did you mean'."""
    return [f"{prefix}{n}" for n in difflib.get_close_matches(name, sorted(flags), n=3, cutoff=0.6)]


def suggestion(name: str, flags, prefix: str = "--") -> str:
    """' (did you mean --x?)' for an unknown flag `name` (no dashes), or ''. `prefix`: '' for config file keys."""
    if name in RENAMED_FLAGS:
        return f" (transformers 5 calls it {RENAMED_FLAGS[name]})"
    close = close_flags(name, flags, prefix) or close_flags(name.replace("-", "_"), flags, prefix)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def type_words(action) -> str:
    """What an argparse action's type accepts, in words."""
    return _TYPE_WORDS.get(getattr(action.type, "__name__", ""), "a value")


class FlagParser(HfArgumentParser):
    """`HfArgumentParser` whose errors are `InputError`s (one `error:` line, exit 2) and that refuses abbreviations."""

    def __init__(self, dataclass_types, **kwargs):
        super().__init__(dataclass_types, allow_abbrev=False, **kwargs)

    @property
    def flag_names(self) -> set[str]:
        return {action.dest for action in self._actions if action.dest not in ("help", "config")}

    def error(self, message: str):
        """Reword argparse's message (`argument --x/--y: invalid float value: 'abc'`) and raise it."""
        match = re.match(r"argument (--[\w-]+)[^:]*: (.*)", message, re.DOTALL)
        if match is None:
            raise InputError(f"{message}. `--help` lists every flag.")
        flag, detail = match.groups()
        action = self._option_string_actions.get(flag)
        value = re.search(r"(?:value: |choice: |got )'?([^' ]*)'?", detail)
        given = value.group(1) if value else ""
        if "invalid choice" in detail and action is not None:
            choices = [str(c) for c in action.choices]
            close = difflib.get_close_matches(given, choices, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise InputError(f"{flag} {given}: not one of {', '.join(choices)}{hint}.")
        if ("invalid" in detail or "Truthy" in detail) and action is not None:
            raise InputError(f"{flag} {given}: expected {type_words(action)}.")
        raise InputError(f"{flag}: {detail}.")

    def parse_flags(self, args: list[str] | None) -> Namespace:
        """Parse `args` (the command line); unknown flags and stray values are refused, naming the closest flags."""
        namespace, unknown = self.parse_known_args(args=args)
        if unknown:
            names = [token.split("=", 1)[0] for token in unknown if token.startswith("-")]
            if not names:
                raise InputError(f"unexpected value(s) {unknown}: every value follows its flag (--name value).")
            described = [f"{name}{suggestion(name.lstrip('-'), self.flag_names)}" for name in names]
            raise InputError(f"unknown flag(s) {'; '.join(described)}. `--help` lists every flag.")
        return namespace


def build_arguments(parser: HfArgumentParser, namespace: Namespace) -> tuple:
    """The parser's dataclasses from the parsed values; transformers' `ValueError`s become `InputError`s."""
    values = vars(namespace)
    outputs = []
    for dtype in parser.dataclass_types:
        keys = {f.name for f in dataclasses.fields(dtype) if f.init}
        try:
            outputs.append(dtype(**{k: v for k, v in values.items() if k in keys}))
        except InputError:
            raise
        except ValueError as error:
            message = " ".join(str(error).split())
            raise InputError(f"{message} ({dtype.__name__} refused these flags).") from None
    return tuple(outputs)
