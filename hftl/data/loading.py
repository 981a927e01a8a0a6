"""Load the raw splits of a run from a built-in dataset, local files or the Hugging Face Hub."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from datasets import Dataset, DatasetDict, load_dataset

from hftl.data.builtin import BUILTIN_DATASETS, load_builtin
from hftl.data.files import header_problem, read_file
from hftl.errors import InputError

logger = logging.getLogger("hftl")


@dataclass
class RawData:
    """Raw splits and where each came from.

    Attributes:
        splits: `train`, and any of `validation`, `test`, with the user's columns untouched.
        sources: split name -> a phrase naming its origin for error messages ("file data/train.csv").
        description: one line for the model card.
        hub_dataset: the Hub dataset id, when the data came from the Hub (for the model card metadata).
        csv_splits: splits read from CSV files, whose row i sits on line i + 2 of the file.
        files: split name -> the local file it was read from (relative paths inside resolve against its folder).
        builtin: the built-in dataset's name, if the data is one.
    """

    splits: DatasetDict
    sources: dict[str, str]
    description: str
    hub_dataset: str | None = None
    csv_splits: set[str] = field(default_factory=set)
    files: dict[str, str] = field(default_factory=dict)
    builtin: str | None = None

    def where(self, split: str, rows: list[int] | None = None) -> str:
        """`sources[split]`, plus row numbers (and CSV line numbers) when given."""
        text = self.sources.get(split, f"split '{split}'")
        if rows:
            shown = rows[:20]
            more = f" and {len(rows) - len(shown)} more" if len(rows) > len(shown) else ""
            text += f", rows {shown}{more} (0-based"
            text += ", header not counted; file line = row + 2)" if split in self.csv_splits else ")"
        return text

    def header_hint(self, split: str) -> str:
        """For a split read from a CSV file whose first line looks like data, not a header: a sentence saying so
        and how to fix it (starting with a space); else ''."""
        if split not in self.csv_splits:
            return ""
        problem = header_problem(self.splits[split])
        return f" {self.files.get(split, self.where(split))}: {problem}." if problem else ""


def _load_file(split: str, path: str, delimiter: str | None = None, encoding: str | None = None) -> Dataset:
    """One split read from a local file (see `hftl.data.files.read_file`)."""
    return read_file(f"--{split}_file", path, delimiter, encoding)


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus")


def _scan_audio_folder(folder: str):
    """An `audiofolder` read without `datasets`' builder, which encodes audio through torchcodec (needs FFmpeg):
    one row per audio file, `audio` = its path, `label` = the name of its class sub-folder (sorted ClassLabel)."""
    from datasets import ClassLabel, Dataset, Features, Value

    rows = []
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            if name.lower().endswith(AUDIO_EXTENSIONS):
                label = os.path.relpath(root, folder).split(os.sep)[0]
                rows.append({"audio": os.path.join(root, name), "label": label})
    if not rows:
        raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {folder}")
    names = sorted({row["label"] for row in rows})
    features = Features({"audio": Value("string"), "label": ClassLabel(names=names)})
    return Dataset.from_list(rows, features=features)


FOLDER_METADATA_FILES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")  # `datasets`' folder metadata


COMMON_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".webp", *AUDIO_EXTENSIONS)  # for messages


def _folder_extensions(builder: str) -> tuple[str, ...]:
    if builder == "audiofolder":
        return AUDIO_EXTENSIONS
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    return tuple(ImageFolder.EXTENSIONS)


def _known(extensions: tuple[str, ...]) -> str:
    """The common ones of `extensions`, for messages: ".png, .jpg, ... (61 in all)"."""
    return f"{', '.join(e for e in COMMON_EXTENSIONS if e in extensions)} ... ({len(extensions)} in all)"


@dataclass
class _FolderLayout:
    """What a `--*_dir` holds: media files directly in it, each first-level class folder's media files (nested ones
    included), the nested ones alone, other files per class folder, and whether it has a metadata file."""

    loose: list[str] = field(default_factory=list)
    classes: dict[str, list[str]] = field(default_factory=dict)
    nested: list[str] = field(default_factory=list)
    others: dict[str, list[str]] = field(default_factory=dict)
    metadata: bool = False


def _scan_layout(folder: str, extensions: tuple[str, ...]) -> _FolderLayout:
    """Walk `folder` as `datasets` does: names starting with "." or "__" are skipped."""
    layout = _FolderLayout()
    for root, dirs, files in os.walk(folder):  # links to folders are not followed, as by datasets' glob
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        parts = [] if root == folder else os.path.relpath(root, folder).split(os.sep)
        files = sorted(f for f in files if not f.startswith((".", "__")))
        layout.metadata |= any(f in FOLDER_METADATA_FILES for f in files)
        media = [os.path.join(root, f) for f in files if f.lower().endswith(extensions)]
        if not parts:
            layout.loose += media
            continue
        layout.classes.setdefault(parts[0], []).extend(media)
        layout.others.setdefault(parts[0], []).extend(f for f in files if not f.lower().endswith(extensions))
        if len(parts) > 1:
            layout.nested += media
    return layout


def _check_layout(split: str, folder: str, builder: str) -> bool:
    """Refuse folder layouts the class-per-folder builders would read silently wrong; True when `folder` has a
    metadata file (its classes then come from it, as `datasets` reads it, and the layout is not checked).

    Raises:
        InputError: files beside the class folders, files below a class folder's sub-folders (imagefolder would
            name the classes after the innermost folders: train/<class>/<year>/x.png gives year classes), no files
            at all, or a training class folder without any (its class would silently be left out of the model).
    """
    extensions = _folder_extensions(builder)
    layout, flag, kind = _scan_layout(folder, extensions), f"--{split}_dir {folder}", builder.replace("folder", "")
    if layout.metadata:
        return True
    layout_help = f"hftl reads one sub-folder per class: {os.path.join(folder, '<class>', '<file>')}"
    if layout.loose:
        raise InputError(
            f"{flag}: {len(layout.loose)} {kind} file(s) sit directly in it (e.g. {layout.loose[0]}), outside any "
            f"class folder; {layout_help}. Move them into their class's folder, or list files and labels in a CSV "
            f"and pass --{split}_file."
        )
    if layout.nested and builder != "audiofolder":
        inner = sorted({os.path.basename(os.path.dirname(path)) for path in layout.nested})
        raise InputError(
            f"{flag}: {len(layout.nested)} image(s) sit in sub-folders of class folders (e.g. {layout.nested[0]}): "
            f"the imagefolder builder would name the classes after the innermost folders ({inner[:5]}), not after "
            f"{sorted(layout.classes)[:5]}. {layout_help}: move each class's images up into it, or list files and "
            f"labels in a CSV and pass --{split}_file."
        )
    if not any(layout.classes.values()):
        raise InputError(f"{flag} holds no {kind} files ({_known(extensions)}); {layout_help}.")
    _check_empty_classes(split, flag, layout, extensions)
    return False


def _check_empty_classes(split: str, flag: str, layout: _FolderLayout, extensions: tuple[str, ...]) -> None:
    """A class folder without files: an error in train (the class would vanish from the model), else a warning."""
    empty = sorted(name for name, files in layout.classes.items() if not files)
    if not empty:
        return
    others = [f"{name}/{layout.others[name][0]}" for name in empty if layout.others.get(name)]
    seen = f" (other files only, e.g. {others[0]})" if others else ""
    what = f"class folder(s) {empty} hold no files with a known extension ({_known(extensions)}){seen}"
    if split == "train":
        raise InputError(
            f"{flag}: {what}; their classes would be left out of the model. Add their files, or remove the folders."
        )
    logger.warning("%s: %s; those classes are not evaluated on this split.", flag, what)


def _load_folders(folders: dict[str, str], builder: str, unlabelled: tuple[str, ...] = ()) -> RawData:
    """Splits read from class-per-folder directories (split -> folder), checked by `_check_layout` first, except
    the `unlabelled` splits (target train data: any layout, sub-folders are not labels).

    Raises:
        InputError: a missing folder, a layout `_check_layout` refuses, or a folder `datasets` cannot read.
    """
    splits, sources = DatasetDict(), {}
    for split, folder in folders.items():
        if not os.path.isdir(folder):
            raise InputError(f"--{split}_dir {folder}: no such folder.")
        labelled = split not in unlabelled and not _check_layout(split, folder, builder)
        try:
            if builder == "audiofolder":
                splits[split] = _scan_audio_folder(folder)
            else:  # labels from the class folders even when a split has one class (datasets drops them then)
                labels = {"drop_labels": False} if labelled else {}
                splits[split] = load_dataset(builder, data_dir=folder, split="train", **labels)
        except Exception as error:
            raise InputError(
                f"--{split}_dir {folder} does not load as an {builder} (one sub-folder per class): "
                f"{type(error).__name__}: {str(error).strip()[:300]}"
            ) from None
        sources[split] = f"--{split}_dir {folder}"
    names = ", ".join(f"{split}: {folder}" for split, folder in folders.items())
    return RawData(splits, sources, f"local folders ({names})")


def load_raw_data(
    dataset_name: str | None,
    dataset_config_name: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    default_dataset: str | None = None,
    cache_dir: str | None = None,
    token: str | None = None,
    folders: dict[str, str] | None = None,
    folder_builder: str | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    unlabelled_folders: tuple[str, ...] = (),
) -> RawData:
    """Read the raw splits from local files or folders, a built-in dataset, or a Hub dataset, in that order.

    With none of them given, the recipe's `default_dataset` (a built-in name) is used. `folders` (split -> folder,
    one sub-folder per class) are read with the `folder_builder` ("imagefolder", "audiofolder"); the splits in
    `unlabelled_folders` (target train data) may have any layout. `delimiter` and `encoding` apply to CSV / TSV
    (and JSON) files; None detects them (see `hftl.data.files`).

    Raises:
        InputError: a file or folder is missing, has an unknown extension or does not parse; a dataset cannot be
            found.
    """
    if folders:
        if train_file or dataset_name:
            raise InputError(
                "Give data either as folders (--train_dir ...), files (--train_file ...) or --dataset_name."
            )
        if "train" not in folders:
            raise InputError("--validation_dir / --test_dir need --train_dir as well.")
        return _load_folders(folders, folder_builder or "imagefolder", unlabelled_folders)
    if train_file:
        paths = {"train": train_file, "validation": validation_file, "test": test_file}
        return _load_files(paths, delimiter, encoding)
    name = dataset_name or default_dataset
    if name is None:
        raise InputError("No data given: pass --dataset_name or --train_file (see `hftl datasets`).")
    if name in BUILTIN_DATASETS:
        entry = BUILTIN_DATASETS[name]
        splits = load_builtin(name)
        sources = {split: f"built-in dataset '{name}', {split} split" for split in splits}
        return RawData(splits, sources, f"built-in `{name}`: {entry.description} Source: {entry.source}", builtin=name)
    return _load_hub(name, dataset_config_name, cache_dir, token)


def _load_files(paths: dict[str, str | None], delimiter: str | None = None, encoding: str | None = None) -> RawData:
    """Splits read from local files (split -> path; None: not given)."""
    files = {split: path for split, path in paths.items() if path}
    splits = DatasetDict({split: _load_file(split, path, delimiter, encoding) for split, path in files.items()})
    sources = {split: f"--{split}_file {path}" for split, path in files.items()}
    csv_splits = {split for split, path in files.items() if path.lower().endswith((".csv", ".tsv"))}
    names = ", ".join(os.path.basename(path) for path in files.values())
    return RawData(splits, sources, f"local files ({names})", csv_splits=csv_splits, files=files)


def _load_hub(name: str, config_name: str | None, cache_dir: str | None, token: str | None) -> RawData:
    """A Hub dataset's splits (`valid` / `dev` / `val` named `validation`).

    Raises:
        InputError: the dataset cannot be loaded (the message lists the built-in names).
    """
    try:
        splits = load_dataset(name, config_name, cache_dir=cache_dir, token=token)
    except Exception as error:
        raise InputError(
            f"--dataset_name {name}: not a built-in dataset ({', '.join(sorted(BUILTIN_DATASETS))}) and could not be "
            f"loaded from the Hub: {type(error).__name__}: {str(error).strip()[:300]}"
        ) from None
    if "validation" not in splits:
        for alias in ("valid", "dev", "val"):
            if alias in splits:
                splits["validation"] = splits.pop(alias)
    sources = {split: f"Hub dataset '{name}', {split} split" for split in splits}
    return RawData(DatasetDict(splits), sources, f"Hub dataset `{name}`", hub_dataset=name)
