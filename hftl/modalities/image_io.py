"""Images read exactly as the saved model's `pipeline("image-classification")` reads them.

transformers' pipeline opens an image with PIL and hands `image_utils.load_image`'s result to the processor:
`ImageOps.exif_transpose` (the EXIF orientation applied), then `convert("RGB")`. hftl reads training and evaluation
images through that same function, so what is served sees the pixels training saw, whatever the file's mode:

- RGBA, LA and palette images with a transparent colour lose their alpha channel (each pixel keeps its stored
  colour; nothing is composited);
- grayscale (L, 1, 16-bit) becomes three equal channels, CMYK and YCbCr are converted by PIL;
- 16- and 32-bit images (I;16, I, F) keep their values as they are, and values above 255 are clipped. Such an image
  (values outside 0..255) is refused by the data check: training on it would learn pixels `pipeline(...)` never
  shows the model. Convert it to 8 bits first (`image.point(lambda v: v * 255 / 65535).convert("L")`).
"""

from __future__ import annotations

import io

from PIL import Image as PILImage
from transformers.image_utils import load_image

from hftl.modalities.base import file_cell_problem

WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # more than 8 bits per pixel


def open_image(cell) -> PILImage.Image:
    """Open an image cell as PIL does (lazily, in the file's own mode): a PIL image, or a `datasets` Image dict with
    `bytes` or `path`.

    Raises:
        ValueError: the cell is not an image, or its path is not a regular file (a FIFO, a directory ...: never
            opened, see `file_cell_problem`).
    """
    if isinstance(cell, PILImage.Image):
        return cell
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return PILImage.open(io.BytesIO(cell["bytes"]))
        if cell.get("path"):
            problem = file_cell_problem(cell)
            if problem:
                raise ValueError(f"{cell['path']}: {problem}")
            return PILImage.open(cell["path"])
    raise ValueError(f"not an image: {type(cell).__name__}")


def load_rgb(cell) -> PILImage.Image:
    """The RGB image `pipeline("image-classification")` would give the processor for this file: transformers'
    `load_image` (EXIF orientation applied, then `convert("RGB")`). Shape: (W, H) of the upright image."""
    return load_image(open_image(cell))


def wide_value_problem(image: PILImage.Image) -> str | None:
    """For a 16- or 32-bit image (I;16, I, F) with values outside 0..255, which `convert("RGB")` clips: what is wrong
    and the fix; None for every other image."""
    if image.mode not in WIDE_MODES:
        return None
    low, high = image.getextrema()
    if 0 <= low and high <= 255:
        return None
    return f"{image.mode} values {low:g}..{high:g}: pipeline(...) clips them at 255; convert the images to 8 bits"


def image_problem(cell) -> str | None:
    """Why an image cell cannot be used (None when it can): its path is not a regular file, it does not decode as
    an image (truncated data included), it does not convert to RGB, or its values exceed 8 bits."""
    problem = file_cell_problem(cell)
    if problem:
        return problem
    if cell is None:
        return "empty cell"
    try:
        with open_image(cell) as image:
            image.load()  # decodes the pixels: verify() alone misses truncated JPEG data
            problem = wide_value_problem(image)
            load_rgb(image)
    except Exception as error:
        return f"not a readable image: {type(error).__name__}: {str(error).strip()[:100]}"
    return problem
