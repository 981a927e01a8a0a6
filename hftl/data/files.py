"""Read one local data file (CSV / TSV, JSON / JSON Lines, parquet) into a `Dataset`, saying what was detected.

What a file holds is found before `datasets` parses it, so that a problem is reported by file, line and fix instead
of by a parser's exception: the text encoding (a byte-order mark is honoured; other bytes that do not decode are
reported by line), the CSV delimiter (among `, ; tab |`, unless `--delimiter` is given), a CSV header that repeats a
column, and a JSON file that is one object (records under a key, or an object of columns) instead of a list of
records. Nested JSON / parquet fields are flattened to `parent.child` columns.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import os
from collections import Counter

from datasets import Dataset, load_dataset

from hftl.errors import InputError

logger = logging.getLogger(__name__)

# file extension -> `datasets` builder name
FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
DELIMITERS = (",", ";", "\t", "|")  # the candidates of delimiter detection, in order of preference
BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"))
BOMS += ((codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_BE, "utf-16"))
SAMPLE_CHARS = 1 << 16  # characters read to detect the delimiter and the header


def file_encoding(flag: str, path: str, encoding: str | None) -> str:
    """The encoding to read `path` with: the one its byte-order mark names, else `encoding` (default UTF-8).

    Raises:
        InputError: a byte of the file does not decode (named with its line, and the `--encoding` fix).
    """
    with open(path, "rb") as handle:
        head = handle.read(4)
    marked = next((name for bom, name in BOMS if head.startswith(bom)), None)
    if marked and (encoding is None or _family(encoding) == _family(marked)):
        encoding = marked  # utf-8 with a BOM reads as utf-8-sig; utf-16 / utf-32 need their BOM to know the order
    encoding = encoding or "utf-8"
    decoder, newlines = codecs.getincrementaldecoder(encoding)(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                _raise_undecodable(flag, path, encoding, error, newlines + chunk[: max(error.start, 0)].count(b"\n"))
            newlines += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        _raise_undecodable(flag, path, encoding, error, newlines)
    return encoding


def _family(encoding: str) -> str:
    """'utf-8', 'utf-16', 'utf-32' or another codec's name (`utf-8-sig`, `utf_16_le` ... map to their family)."""
    name = codecs.lookup(encoding).name
    return name[:6] if name.startswith(("utf-16", "utf-32")) else name.removesuffix("-sig")


def _raise_undecodable(flag: str, path: str, encoding: str, error: UnicodeDecodeError, newlines: int) -> None:
    byte = error.object[error.start : error.start + 1].hex() or "end of file"
    raise InputError(
        f"{flag} {path} is not valid {encoding} text: byte 0x{byte} on line {newlines + 1} does not decode. If the "
        f"file has another encoding (spreadsheet exports are often latin-1 or cp1252), name it with --encoding "
        f"(e.g. --encoding latin-1); or re-save the file as UTF-8."
    )


def detect_delimiter(sample: str, preferred: str) -> str:
    """The delimiter that splits the header of `sample` (a file's first lines) into 2+ fields and every other line
    into as many; `preferred` first. Without such a delimiter, the one that splits most lines like the header."""
    lines = sample.splitlines(keepends=True)
    if len(sample) >= SAMPLE_CHARS and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    text = "".join(lines)
    best, best_score = preferred, 0.0
    for delimiter in (preferred, *(d for d in DELIMITERS if d != preferred)):
        try:
            records = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r]
        except csv.Error:
            continue
        if not records or len(records[0]) < 2:
            continue
        width = len(records[0])
        matching = sum(len(r) == width for r in records[1:])
        if matching == len(records) - 1:
            return delimiter
        if matching / len(records) > best_score:
            best, best_score = delimiter, matching / len(records)
    return best


def _csv_options(flag: str, path: str, encoding: str, delimiter: str | None) -> tuple[dict, str]:
    """The `datasets` csv builder's options for `path` and a note for the log.

    Raises:
        InputError: the header names a column twice.
    """
    preferred = "\t" if path.lower().endswith(".tsv") else ","
    with open(path, encoding=encoding, newline="") as handle:
        sample = handle.read(SAMPLE_CHARS)
    detected = delimiter is None
    delimiter = detect_delimiter(sample, preferred) if detected else delimiter
    header = next(csv.reader(io.StringIO(sample), delimiter=delimiter), [])
    header = [name.strip() for name in header]  # read with surrounding spaces, renamed without (see `read_file`)
    repeated = [name for name, count in Counter(header).items() if count > 1]
    if repeated:
        places = {name: [i + 1 for i, n in enumerate(header) if n == name] for name in repeated}
        raise InputError(
            f"{flag} {path}: its header names "
            + ", ".join(f"column '{name}' more than once (columns {places[name]})" for name in repeated)
            + f"; only one could be read (the other would be renamed '{repeated[0]}.1'). Rename or remove the "
            f"duplicate in the file's first line."
        )
    note = f"delimiter {delimiter!r} ({'detected' if detected else '--delimiter'}), encoding {encoding}"
    # Only empty cells are missing: words such as "NA", "None" or "null" are texts and class names, not gaps.
    return {"delimiter": delimiter, "encoding": encoding, "keep_default_na": False, "na_values": [""]}, note


def _json_object(flag: str, path: str, encoding: str) -> tuple[Dataset | None, dict, str]:
    """A `.json` file that is one object: (its rows read here, or None; options for the json builder; a note).

    An object of columns (`{"text": [...], "label": [...]}`) is read here; records under one key
    (`{"data": [{...}, ...]}`) are read by the builder with `field`. Anything else is left to the builder.

    Raises:
        InputError: records under several keys (which one is meant is not known).
    """
    with open(path, encoding=encoding) as handle:
        start = handle.read(SAMPLE_CHARS).lstrip()
        if not start.startswith("{"):
            return None, {}, ""
        handle.seek(0)
        try:
            document = json.load(handle)
        except json.JSONDecodeError:
            return None, {}, ""  # JSON Lines (one object per line), or broken: the builder says which
    if not isinstance(document, dict):
        return None, {}, ""
    lists = {key: value for key, value in document.items() if isinstance(value, list)}
    record_keys = [key for key, value in lists.items() if value and all(isinstance(v, dict) for v in value)]
    if len(record_keys) == 1:
        return None, {"field": record_keys[0]}, f"records under key '{record_keys[0]}'"
    if len(record_keys) > 1:
        raise InputError(
            f"{flag} {path} is one JSON object with lists of records under several keys ({record_keys}); hftl reads "
            f"one list of records per file: write each split to its own file as [{{...}}, ...] or JSON Lines."
        )
    if lists and len(lists) == len(document) and len({len(v) for v in lists.values()}) == 1:
        return Dataset.from_dict(document), {}, "an object of columns"
    return None, {}, ""


def _flatten(dataset: Dataset) -> tuple[Dataset, list[str]]:
    """Nested fields (JSON objects, parquet structs) as `parent.child` columns; the new column names."""
    before = set(dataset.column_names)
    if not any(isinstance(feature, dict) for feature in dataset.features.values()):
        return dataset, []
    flat = dataset.flatten()
    return flat, [c for c in flat.column_names if c not in before]


def read_file(flag: str, path: str, delimiter: str | None = None, encoding: str | None = None) -> Dataset:
    """The rows of one data file, its format chosen by its extension (see `FILE_BUILDERS`).

    Args:
        flag: the flag that named the file ("--train_file"), for messages.
        path: a `.csv`, `.tsv`, `.json`, `.jsonl` or `.parquet` file.
        delimiter: the CSV / TSV delimiter (None: detected among `DELIMITERS`).
        encoding: the text encoding of CSV / TSV / JSON files (None: UTF-8, or what a byte-order mark names).

    Raises:
        InputError: no such file (or a folder), an unsupported extension, an undecodable byte, a repeated CSV column,
            an empty file, a file that does not parse.
    """
    if os.path.isdir(path):
        raise InputError(
            f"{flag} {path} is a folder; it takes one file. (Image and audio folders, one sub-folder per class, are "
            f"given with --train_dir / --validation_dir / --test_dir.)"
        )
    if not os.path.isfile(path):
        raise InputError(f"{flag} {path}: no such file.")
    extension = os.path.splitext(path)[1].lower()
    if extension not in FILE_BUILDERS:
        raise InputError(
            f"{flag} {path}: unsupported extension '{extension}'. Use one of {sorted(FILE_BUILDERS)} (a delimited "
            f"text file reads as .csv or .tsv: rename it)."
        )
    builder, options, note, dataset = FILE_BUILDERS[extension], {}, "", None
    if builder != "parquet" and os.path.getsize(path) > 0:
        encoding = file_encoding(flag, path, encoding)
        if builder == "csv":
            options, note = _csv_options(flag, path, encoding, delimiter)
        elif extension == ".json":
            dataset, options, note = _json_object(flag, path, encoding)
        if builder == "json" and encoding not in ("utf-8", "utf-8-sig"):
            options["encoding"] = encoding
    if dataset is None:
        dataset = _build(flag, path, builder, options)
    spaced = {name: name.strip() for name in dataset.column_names if name != name.strip() and name.strip()}
    if builder == "csv" and spaced:  # "text, label": the second column is ' label'
        dataset = dataset.rename_columns(spaced)
        note += f", column names stripped of spaces {sorted(spaced)}"
    dataset, flattened = _flatten(dataset)
    if flattened:
        note += f"{', ' if note else ''}nested fields flattened to columns {flattened}"
    logger.info("Read %s %s as %s%s.", flag, path, builder.upper(), f" ({note})" if note else "")
    return dataset


def _build(flag: str, path: str, builder: str, options: dict) -> Dataset:
    """`load_dataset(builder)` on one file, its errors turned into messages naming the file.

    Raises:
        InputError: the file is empty (or holds a header only), or does not parse.
    """
    try:
        dataset = load_dataset(builder, data_files={"train": path}, split="train", **options)
    except Exception as error:  # datasets wraps parser errors in several exception types
        cause = error.__cause__ or error
        if "corresponds to no data" in str(error) or os.path.getsize(path) == 0:
            raise InputError(f"{flag} {path} is empty: it needs at least one example.") from None
        hint = ""
        if builder == "csv" and "Expected" in str(cause) and "fields" in str(cause):
            hint = (
                f" A field that holds the delimiter ({options.get('delimiter')!r}) must be in double quotes; "
                f"--delimiter names another delimiter."
            )
        raise InputError(
            f"{flag} {path} does not parse as {builder.upper()}: {type(cause).__name__}: "
            f"{str(cause).strip()[:500]}.{hint}"
        ) from None
    if len(dataset) == 0:
        raise InputError(f"{flag} {path} is empty: it needs at least one example.")
    return dataset


def header_problem(dataset: Dataset) -> str:
    """Why the column names read from a CSV file's first line look like a row of data ('' if they look like a
    header): a name that is a number, a sentence, or one of its own column's values; or a name holding a delimiter."""
    reasons = []
    sample = dataset.select(range(min(len(dataset), 1000)))[:]  # column -> its first 1,000 cells
    for name in dataset.column_names:
        delimiter = next((d for d in DELIMITERS if d in name), None)
        if delimiter:
            return (
                f"the column name {name!r} holds {delimiter!r}: if that is the file's delimiter, pass --delimiter "
                f"{delimiter!r}"
            )
        if name in {str(value) for value in sample[name]}:
            reasons.append(f"{name!r} is also a value of its column")
        elif _is_number(name):
            reasons.append(f"{name!r} is a number")
        elif len(name.split()) >= 4:
            reasons.append(f"{name!r} reads like a text")
    if not reasons:
        return ""
    return (
        f"its first line looks like data, not a header ({'; '.join(reasons[:3])}): add a header line naming the "
        f"columns, e.g. `text,label`, as the file's first line"
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def file_options(delimiter: str | None, encoding: str | None) -> tuple[str | None, str | None]:
    """`--delimiter` ('\\t' and 'tab' mean a tab) and `--encoding`, checked.

    Raises:
        InputError: a delimiter that is not one character (or is a quote or newline); an unknown encoding.
    """
    delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
    if delimiter is not None and (len(delimiter) != 1 or delimiter in '"\r\n'):
        raise InputError(f"--delimiter must be one character other than a quote or newline, got {delimiter!r}.")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InputError(f"--encoding {encoding}: unknown encoding (e.g. utf-8, latin-1, cp1252).") from None
    return delimiter, encoding
