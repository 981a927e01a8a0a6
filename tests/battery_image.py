"""Battery cases of the image recipe (see `battery.py`): every PIL mode, broken and odd files, path columns holding
missing files, folders, FIFOs and devices, wild sizes with both processor kinds, folder layouts, `--image_size`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from battery import Case, Error, Handled, image_folder, image_run, log_says

# ---- inputs ------------------------------------------------------------------------------------------------------


def _image(label: str, index: int, size=(20, 16)):
    from helpers import make_image

    return make_image(label, index, "RGB", size=size)


def _save_as(image, path: Path, mode: str) -> Path:
    """Save `image` so that PIL opens it in `mode`; returns the file's path (its extension follows the mode)."""
    import numpy as np
    from PIL import Image

    gray = np.asarray(image.convert("L"))
    if mode in ("CMYK", "exif"):
        path = path.with_suffix(".jpg")
        if mode == "exif":  # stored sideways, tagged "rotate 90 degrees clockwise to view"
            exif = Image.Exif()
            exif[0x0112] = 6
            image.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
        else:
            image.convert("CMYK").save(path)
    elif mode in ("I", "F"):
        path = path.with_suffix(".tif")
        Image.fromarray(gray.astype(np.int32 if mode == "I" else np.float32)).save(path)
    elif mode in ("I;16", "I;16-full"):  # 8-bit values in 16 bits, or the full 16-bit range
        Image.fromarray(gray.astype(np.uint16) * (257 if mode == "I;16-full" else 1)).save(path)
    elif mode in ("RGBA", "LA"):
        converted = image.convert(mode)
        converted.putalpha(Image.linear_gradient("L").resize(image.size))
        converted.save(path)
    elif mode == "P+transparency":
        image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path, transparency=0)
    else:
        image.convert(mode).save(path)
    return path


def mode_folder(folder: Path, name: str, modes: tuple[str, ...], count: int, size=(20, 16)) -> str:
    """An imagefolder `folder/name` of `count` images (two classes), stored in `modes` in turn."""
    from helpers import seed_of

    for i in range(count):
        label = ("stripes", "dots")[i % 2]
        (folder / name / label).mkdir(parents=True, exist_ok=True)
        image = _image(label, seed_of(name, i), size)
        _save_as(image, folder / name / label / f"{i}.png", modes[(i // 2) % len(modes)])
    return str(folder / name)


def mode_run(*modes: str, flags: tuple[str, ...] = (), model: str = "tiny_vit_dir", validation=None):
    """A run whose train images are stored in `modes` in turn, and its validation ones in `validation` (default:
    the same)."""

    def build(folder: Path, assets: dict) -> list[str]:
        train = mode_folder(folder, "mode_train", modes, 12)
        validation_dir = mode_folder(folder, "mode_validation", validation or modes, 6)
        return image_run(folder, assets, *flags, model=model, train=train) + ["--validation_dir", validation_dir]

    return build


def broken_file_run(name: str, content: bytes | None, *flags: str):
    """A run whose train folder holds one more file, `stripes/<name>`, with `content` (None: a FIFO)."""

    def build(folder: Path, assets: dict) -> list[str]:
        train = image_folder(folder, "train", 12)
        path = Path(train) / "stripes" / name
        if content is None:
            os.mkfifo(path)
        else:
            path.write_bytes(content)
        return image_run(folder, assets, *flags, train=train)

    return build


def _png_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    _image("dots", 1).save(buffer, "PNG")
    return buffer.getvalue()


def csv_run(change=None, *flags: str, extension: str = ".csv"):
    """A run on a file of relative image paths (`images/<i>.png`, labels), 25% carved out for validation;
    `change(rows, folder)` edits the rows (dicts `image` / `label`) first."""

    def build(folder: Path, assets: dict) -> list[str]:
        from helpers import write_csv

        (folder / "images").mkdir()
        rows = []
        for i in range(16):
            label = ("stripes", "dots")[i % 2]
            _image(label, i, size=(18 + i, 30 - i)).save(folder / "images" / f"{i}.png")
            rows.append({"image": f"images/{i}.png", "label": label})
        if change is not None:
            change(rows, folder)
        path = folder / f"train{extension}"
        if extension == ".csv":
            write_csv(path, rows)
        else:
            path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return [
            "--model_name_or_path", assets["tiny_vit_dir"], "--train_file", str(path), "--output_dir",
            str(folder / "out"), "--validation_split_percentage", "25", *_QUICK, *flags,
        ]  # fmt: skip

    return build


def _quick() -> list[str]:
    from battery import QUICK

    return QUICK


_QUICK = _quick()


def _fifo_row(rows, folder):
    os.mkfifo(folder / "images" / "pipe.png")
    rows[3]["image"] = "images/pipe.png"


def _set_row(index: int, value):
    def change(rows, folder):
        rows[index]["image"] = value(folder) if callable(value) else value

    return change


def wild_sizes_run(model: str):
    """Images of wildly different sizes and aspect ratios: 1 x 1, 300 x 4, 4 x 300, 500 x 500, 31 x 17 ..."""
    sizes = ((1, 1), (300, 4), (4, 300), (500, 500), (31, 17), (17, 31), (2, 64), (64, 2))

    def build(folder: Path, assets: dict) -> list[str]:
        for split, count in (("train", 16), ("validation", 8)):
            for i in range(count):
                label = ("stripes", "dots")[i % 2]
                (folder / split / label).mkdir(parents=True, exist_ok=True)
                _image(label, i, sizes[i % len(sizes)]).save(folder / split / label / f"{i}.png")
        return image_run(folder, assets, model=model, train=str(folder / "train")) + [
            "--validation_dir", str(folder / "validation"),
        ]  # fmt: skip

    return build


def processor_swap_run(model: str, processor: str, *flags: str, sizes=((40, 25), (25, 40))):
    """`model`'s weights with another processor (`ViTImageProcessor(size={"shortest_edge": 32})`, which keeps the
    aspect ratio, without a crop), on images of two aspect ratios."""

    def build(folder: Path, assets: dict) -> list[str]:
        from transformers import AutoModelForImageClassification, ViTImageProcessor

        swapped = folder / "model"
        AutoModelForImageClassification.from_pretrained(assets[model]).save_pretrained(swapped)
        ViTImageProcessor(size=json.loads(processor)).save_pretrained(swapped)
        for split, count in (("train", 12), ("validation", 6)):
            for i in range(count):
                label = ("stripes", "dots")[i % 2]
                (folder / split / label).mkdir(parents=True, exist_ok=True)
                _image(label, i, sizes[i % len(sizes)]).save(folder / split / label / f"{i}.png")
        return [
            "--model_name_or_path", str(swapped), "--train_dir", str(folder / "train"), "--validation_dir",
            str(folder / "validation"), "--output_dir", str(folder / "out"), *_QUICK, *flags,
        ]  # fmt: skip

    return build


def layout_run(files: list[str], split: str = "train", *flags: str):
    """A run whose `split` folder is replaced by one holding exactly `files` (relative paths; "x/" an empty
    folder)."""

    def build(folder: Path, assets: dict) -> list[str]:
        root = folder / f"custom_{split}"
        for i, name in enumerate(files):
            path = root / name
            if name.endswith("/"):
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            _image(("stripes", "dots")[i % 2], i).save(path)
        flag = f"--{split}_dir"
        argv = image_run(folder, assets, *flags, train=str(root) if split == "train" else None)
        return argv + ([flag, str(root)] if split != "train" else [])

    return build


# ---- checks ------------------------------------------------------------------------------------------------------


def saved_processor_size(expected: dict):
    """A `Handled` check: the saved processor's size is `expected`, and the model was saved."""

    def check(result) -> None:
        config = json.loads((result.output_dir / "preprocessor_config.json").read_text())
        assert config["size"] == expected, config["size"]
        assert (result.output_dir / "model.safetensors").exists()

    return check


def results_have(*keys: str):
    def check(result) -> None:
        results = json.loads((result.output_dir / "all_results.json").read_text())
        missing = [key for key in keys if key not in results]
        assert not missing, f"all_results.json lacks {missing}: {sorted(results)}"

    return check


def _both(*checks):
    def check(result) -> None:
        for each in checks:
            each(result)

    return check


def _with_text_class(build, folder: Path, assets: dict) -> list[str]:
    argv = build(folder, assets)
    (folder / "custom_train" / "cats").mkdir()
    (folder / "custom_train" / "cats" / "readme.txt").write_text("cat pictures go here\n")
    return argv


def _flat_folder(root: Path, count: int) -> str:
    """Unlabelled images directly in `root` (target train data needs no class folders)."""
    root.mkdir(parents=True)
    for i in range(count):
        _image(("stripes", "dots")[i % 2], 100 + i).save(root / f"{i}.png")
    return str(root)


# ---- the table ---------------------------------------------------------------------------------------------------

_MODES = ("L", "1", "P", "P+transparency", "RGBA", "LA", "CMYK", "exif", "I;16", "I", "F")
_SLUG = {"P+transparency": "p-transparent", "I;16": "i16-8bit-values", "I": "i32-tiff", "F": "f32-tiff"}

# fmt: off
CASES = [
    *[
        Case(f"image-mode-{_SLUG.get(mode, mode.lower())}", "image", mode_run(mode), Handled(), recipe="image")
        for mode in _MODES
    ],
    Case("image-mode-16-bit-full-range", "image", mode_run("I;16-full"),
         Error(r"12 invalid row.*I;16 values 0\.\.\d+: pipeline\(\.\.\.\) clips them at 255; convert the images to 8"),
         recipe="image"),
    Case("image-mode-16-bit-full-range-dropped", "image",
         mode_run("RGB", "I;16-full", flags=("--drop_invalid_examples", "true"), validation=("RGB",)),
         Handled(log_says(r"Dropped 6 invalid row")), recipe="image"),
    Case("image-mode-all-mixed", "image", mode_run(*_MODES), Handled(), recipe="image"),
    Case("image-mode-all-mixed-resnet", "image", mode_run(*_MODES, model="tiny_resnet_dir"), Handled(), recipe="image"),
    # broken files in a folder
    Case("image-corrupt-bytes", "image", broken_file_run("bad.png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20),
         Error(r"1 invalid row.*bad\.png \(not a readable image"), recipe="image"),
    Case("image-truncated-png", "image", broken_file_run("cut.png", _png_bytes()[:60]),
         Error(r"1 invalid row.*cut\.png \(not a readable image"), recipe="image"),
    Case("image-zero-byte-file", "image", broken_file_run("empty.png", b""),
         Error(r"1 invalid row.*empty\.png \(not a readable image"), recipe="image"),
    Case("image-text-named-png", "image", broken_file_run("notes.png", b"just some notes, not a picture\n" * 3),
         Error(r"notes\.png \(not a readable image: UnidentifiedImageError"), recipe="image"),
    Case("image-corrupt-dropped", "image",
         broken_file_run("bad.png", b"not an image", "--drop_invalid_examples", "true"),
         Handled(_both(log_says(r"Dropped 1 invalid row"), results_have("eval_accuracy"))), recipe="image"),
    Case("image-folder-fifo-ignored", "image", broken_file_run("pipe.png", None), Handled(), recipe="image",
         timeout=120),
    # files of image paths
    Case("image-csv-relative-paths", "image", csv_run(), Handled(results_have("eval_accuracy")), recipe="image"),
    Case("image-jsonl-absolute-paths", "image",
         csv_run(lambda rows, folder: [row.update(image=str(folder / row["image"])) for row in rows],
                 extension=".jsonl"),
         Handled(), recipe="image"),
    Case("image-csv-missing-file", "image", csv_run(_set_row(2, "images/missing.png")),
         Error(r"1 invalid row.*images/missing\.png \(no such file\).*rows \[2\]"), recipe="image"),
    Case("image-csv-empty-path", "image", csv_run(_set_row(5, "")),
         Error(r"1 invalid row.*rows \[5\]"), recipe="image"),
    Case("image-csv-directory-path", "image", csv_run(_set_row(4, "images")),
         Error(r"1 invalid row.*images \(a directory, not a regular file\).*rows \[4\]"), recipe="image"),
    Case("image-csv-fifo-path", "image", csv_run(_fifo_row),
         Error(r"1 invalid row.*pipe\.png \(a FIFO, not a regular file\).*rows \[3\]"), recipe="image", timeout=90),
    Case("image-csv-device-path", "image", csv_run(_set_row(6, "/dev/zero")),
         Error(r"1 invalid row.*/dev/zero \(a character device, not a regular file\)"), recipe="image", timeout=90),
    Case("image-csv-text-not-paths", "image",
         csv_run(lambda rows, folder: [row.update(image=f"a photo of {row['label']}") for row in rows]),
         Error(r"16 invalid row.*a photo of stripes \(no such file\)"), recipe="image"),
    Case("image-wrong-image-column-name", "image", csv_run(None, "--image_column_name", "picture"),
         Error(r"no column 'picture'.*Available columns: \['image', 'label'\]"), recipe="image"),
    Case("image-no-image-column", "image",
         csv_run(lambda rows, folder: [row.update(photo=row.pop("image")) for row in rows]),
         Error(r"no image column found among \['label', 'photo'\].*--image_column_name"), recipe="image"),
    # sizes and processors
    Case("image-wild-sizes-vit", "image", wild_sizes_run("tiny_vit_dir"), Handled(), recipe="image"),
    Case("image-wild-sizes-resnet", "image", wild_sizes_run("tiny_resnet_dir"), Handled(), recipe="image"),
    Case("image-vit-shortest-edge-processor", "image", processor_swap_run("tiny_vit_dir", '{"shortest_edge": 32}'),
         Handled(_both(saved_processor_size({"height": 32, "width": 32}), results_have("eval_accuracy"),
                       log_says(r"keeps each image's aspect ratio; its size is set to \{height: 32, width: 32\}"))),
         recipe="image"),
    Case("image-vit-shortest-edge-processor-image-size", "image",
         processor_swap_run("tiny_vit_dir", '{"shortest_edge": 40}', "--image_size", "32"),
         Handled(saved_processor_size({"height": 32, "width": 32})), recipe="image"),
    Case("image-resnet-aspect-keeping-processor", "image",
         processor_swap_run("tiny_resnet_dir", '{"shortest_edge": 32}', sizes=((40, 25), (25, 40), (30, 30))),
         Handled(_both(saved_processor_size({"height": 32, "width": 32}), results_have("eval_accuracy"))),
         recipe="image"),
    Case("image-size-vit-mismatch", "image", lambda folder, assets: image_run(folder, assets, "--image_size", "64"),
         Error(r"--image_size 64: .* vit model.*32 x 32.*Pass --image_size 32, or leave it out"), recipe="image"),
    Case("image-size-vit-match", "image", lambda folder, assets: image_run(folder, assets, "--image_size", "32"),
         Handled(saved_processor_size({"height": 32, "width": 32})), recipe="image"),
    Case("image-size-resnet-any", "image",
         lambda folder, assets: image_run(folder, assets, "--image_size", "48", model="tiny_resnet_dir"),
         Handled(saved_processor_size({"shortest_edge": 48})), recipe="image"),
    # folder layouts
    Case("image-folder-empty-class", "image",
         layout_run(["stripes/0.png", "dots/1.png", "stripes/2.png", "dots/3.png", "cats/"]),
         Error(r"--train_dir .*custom_train: class folder\(s\) \['cats'\] hold no files.*left out of the model"),
         recipe="image"),
    Case("image-folder-class-of-text-files", "image",
         lambda folder, assets: _with_text_class(layout_run(["stripes/0.png", "dots/1.png", "dots/3.png"]), folder,
                                                 assets),
         Error(r"\['cats'\] hold no files with a known extension .*other files only, e\.g\. cats/readme\.txt"),
         recipe="image"),
    Case("image-folder-nested-years", "image",
         layout_run(["stripes/2019/0.png", "dots/2019/1.png", "stripes/2020/2.png", "dots/2020/3.png"]),
         Error(r"sub-folders of class folders .*innermost folders \(\['2019', '2020'\]\), not after \['dots', "),
         recipe="image"),
    Case("image-folder-loose-files", "image", layout_run(["stripes/0.png", "dots/1.png", "2.png"]),
         Error(r"1 image file\(s\) sit directly in it .*2\.png.*one sub-folder per class"), recipe="image"),
    Case("image-folder-one-class", "image", layout_run(["stripes/0.png", "stripes/1.png"]),
         Error(r"only one class \(\['stripes'\]\); a classifier needs at least two"), recipe="image"),
    Case("image-folder-no-images", "image", layout_run(["stripes/", "dots/"]),
         Error(r"custom_train holds no image files"), recipe="image"),
    Case("image-folder-hidden-entries", "image",
         layout_run(["stripes/0.png", "dots/1.png", "stripes/2.png", "dots/3.png", ".cache/x.png", "dots/.x.png"]),
         Handled(), recipe="image"),
    Case("image-validation-empty-class", "image", layout_run(["stripes/0.png", "dots/1.png", "cats/"], "validation"),
         Handled(log_says(r"\['cats'\] hold no files.*not evaluated on this split")), recipe="image"),
    Case("image-test-dir-one-class", "image",
         layout_run(["stripes/0.png", "stripes/1.png"], "test", "--do_predict", "true"),
         Handled(results_have("test_accuracy")), recipe="image"),
    Case("image-target-train-flat-folder", "image",
         lambda folder, assets: image_run(folder, assets, "--adaptation", "dann", "--target_train_dir",
                                          _flat_folder(folder / "target", 8)),
         Handled(log_says(r"Target data: local folders")), recipe="image"),
    Case("image-train-dir-missing", "image",
         lambda folder, assets: image_run(folder, assets, train=str(folder / "nowhere")),
         Error(r"--train_dir .*nowhere: no such folder"), recipe="image"),
]
# fmt: on
