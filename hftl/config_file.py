"""`--config FILE`: a YAML or JSON mapping of flag names to values, read safely and checked like the command line.

A file is refused with one `InputError` naming it when it is missing, does not parse (with the line), is not a
mapping, names an unknown flag (with the closest names), gives a value of the wrong type, or uses YAML anchors /
aliases (`&a` / `*a`): a few hundred bytes of nested aliases expand to billions of values ("billion laughs"), and a
flag file has no use for them. Values are converted with the flag's own argparse type, as the command line's are.
"""

from __future__ import annotations

import json
import os
from argparse import Action
from typing import Any

import yaml

from hftl.errors import InputError
from hftl.validation import suggestion, type_words


class _AliasError(yaml.YAMLError):
    """A YAML alias, refused."""


class _NoAliasLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses aliases (`*name`) before composing them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasError(
                f"line {event.start_mark.line + 1}: YAML alias *{event.anchor} refused (anchors and aliases can "
                f"expand a small file into billions of values); write the values out"
            )
        return super().compose_node(parent, index)


def read_file(path: str, flag: str = "--config") -> Any:
    """The parsed YAML (without aliases) or `.json` file that `flag` names; None when empty.

    Raises:
        InputError: naming `flag` and `path`, for a missing file or a syntax error (with its line).
    """
    if not os.path.exists(path):
        raise InputError(f"{flag} {path}: no such file.")
    if not os.path.isfile(path):
        raise InputError(f"{flag} {path}: not a file (a folder?). Give a YAML or JSON file of flag values.")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if path.endswith(".json"):
        try:
            return json.loads(text) if text.strip() else None
        except json.JSONDecodeError as error:
            raise InputError(f"{flag} {path}: line {error.lineno} column {error.colno}: {error.msg}.") from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader)
    except _AliasError as error:
        raise InputError(f"{flag} {path}: {error}.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or " ".join(str(error).split())
        raise InputError(f"{flag} {path}: {where}{problem} (not valid YAML).") from None


def _one_value(action: Action, value: Any) -> Any:
    """`value` (a YAML / JSON scalar) converted by the flag's argparse type and checked against its choices."""
    if isinstance(value, (list, dict)):
        raise ValueError("expects one value per item, got a nested list or mapping")
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    try:
        converted = action.type(text) if action.type is not None else text
    except Exception:
        raise ValueError(f"{value!r} is not {type_words(action)}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(str(c) for c in action.choices)
        raise ValueError(f"{value!r} is not one of {choices}")
    return converted


def _convert(action: Action, value: Any) -> Any:
    """A config file's value for `action`'s flag, as the command line would have given it.

    Raises:
        ValueError: the value does not fit the flag (says why).
    """
    many = action.nargs in ("+", "*")
    if value is None:
        if action.default is None:
            return None
        raise ValueError(f"null is not allowed (the default is {action.default!r}); leave the key out instead")
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value) and action.type in (None, str):
        return json.dumps(value)  # a list of mappings (--tasks) is handed over as JSON, as a mapping is
    if isinstance(value, list):
        if not many:
            raise ValueError(f"expects one value, got a list {value!r}")
        return [_one_value(action, item) for item in value]
    if isinstance(value, dict):
        if action.type in (None, str):
            return json.dumps(value)  # dict-valued TrainingArguments flags (e.g. --accelerator_config) take JSON
        raise ValueError(f"expects one value, got a mapping {value!r}")
    converted = _one_value(action, value)
    return [converted] if many else converted


def load_config_file(path: str, actions: dict[str, Action]) -> dict[str, Any]:
    """The flag values of the `--config` file at `path`, converted by the flags' own types.

    Args:
        path: a `.json` file (JSON) or any other file (YAML, without anchors / aliases).
        actions: the parser's actions by flag name (`dest`).

    Raises:
        InputError: the file is missing, does not parse, is not a mapping, names an unknown flag or gives a value that
            does not fit its flag.
    """
    values = read_file(path)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InputError(f"--config {path} must hold a mapping of flag names to values, got a {type(values).__name__}.")
    unknown = [str(key) for key in values if key not in actions]
    if unknown:
        described = "; ".join(f"{key}{suggestion(key, actions, prefix='')}" for key in unknown)
        raise InputError(f"--config {path}: unknown flag(s) {described}. `--help` lists every flag.")
    converted = {}
    for key, value in values.items():
        try:
            converted[key] = _convert(actions[key], value)
        except ValueError as error:
            raise InputError(f"--config {path}: {key}: {error}.") from None
    return converted


class _NoAliasDumper(yaml.SafeDumper):
    """`yaml.SafeDumper` that writes a value met twice in full both times (`load_config_file` refuses aliases)."""

    def ignore_aliases(self, data) -> bool:
        return True


def dump_config(values: dict[str, Any], handle) -> None:
    """Write `values` (flag name -> value) as YAML that `load_config_file` reads back: no anchors, no aliases."""
    yaml.dump(values, handle, Dumper=_NoAliasDumper, sort_keys=False)
