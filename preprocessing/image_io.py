"""Reading one real-world image file into a square RGB array, whatever its format or flaws.

The format is found from the content, not the extension (Caltech256 has PNG and GIF data under
`.jpg` names). Every way a file can fail ends in `BadImage` with a short reason code, so the
caller can skip and list it instead of stopping a run of thirty thousand files.

Conversions (documented choices):
- grayscale, 16-bit, CMYK, YCbCr, palette: converted to 8-bit RGB;
- transparency (RGBA, LA, palette with a transparent colour): composited on white, because cut-out
  objects are shown on white pages and a black background would be a colour they never had;
- EXIF orientation: applied, so a portrait photo stays upright;
- animated GIF/WebP: the first frame.

Pillow reads every header and decodes every format and mode above. The common case, an upright
YCbCr or grayscale JPEG, is decoded by libjpeg-turbo through simplejpeg straight into a numpy
array, at half of Pillow's cost (whose pixels then still go through its own 4-byte layout and a
copy); simplejpeg's strict mode refuses anything libjpeg warns about, and those files go through
Pillow as before, so both routes give the same pixels and the same reasons (bench/README.md,
"Preprocessing real photos"; tests/test_image_io.py). OpenCV resizes, because Pillow's bicubic
filter cost three quarters of the time per image on Caltech-sized photos (bench/preprocess.py
--parts).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

# Our own guard against decompression bombs, checked after JPEG draft mode has reduced the
# decode size: 6000x4000 photos are fine (and a 20000x15000 JPEG too, decoded at 1/8), a
# 20000x20000 PNG is refused instead of taking 1.2 GB per worker.
MAX_DECODE_PIXELS = 120_000_000

ORIENTATION = 0x0112  # the EXIF tag

# Reason codes written to skipped.csv (the `reason` column).
EMPTY = "empty file"
NOT_IMAGE = "not an image"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
TOO_LARGE = "too large"
UNREADABLE = "unreadable"  # the file system refused (permissions, broken link)

# Pillow's own bomb check would refuse big JPEGs before draft mode could shrink them.
Image.MAX_IMAGE_PIXELS = None


class BadImage(Exception):
    """A file that cannot be used as an image: `reason` is one of the codes above."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def square_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The centred square of an image: the longer side trimmed equally on both ends.

    Returns:
        (left, upper, right, lower), as Pillow's crop and resize boxes take it.
    """
    side = min(width, height)
    left = (width - side) // 2
    upper = (height - side) // 2
    return left, upper, left + side, upper + side


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB (see the module docstring for the choices)."""
    if im.mode == "RGB":
        return im
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("PA", "La", "RGBa"):
        im = im.convert("RGBA")
    elif im.mode.startswith("I;16") or im.mode in ("I", "F"):
        # 16-bit or 32-bit grayscale: scale by the largest value the format can hold, so a
        # 16-bit scan does not clip to white as Pillow's plain convert("L") would.
        values = np.asarray(im, dtype=np.float64)
        scale = 255.0 / 65535.0 if im.mode.startswith("I;16") or values.max() > 255 else 1.0
        im = Image.fromarray(np.clip(values * scale + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def draft_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The size a JPEG decodes at for a `size` square: its 1/8, 1/4, 1/2 or full scale, the
    smallest that still covers the square (Pillow's `draft` rule, which the Pillow route uses;
    tests/test_image_io.py checks the two routes agree at every scale)."""
    fits = min(width // size, height // size)
    scale = next(s for s in (8, 4, 2, 1) if fits >= s or s == 1)
    return -(-width // scale), -(-height // scale)


def _plain_jpeg(data: bytes, size: int) -> tuple[np.ndarray, int] | None:
    """(pixels at the draft size, stored pixels) of an upright YCbCr or grayscale JPEG, or None.

    None means "let Pillow decode it": another format or colour space, an EXIF rotation, a
    decode larger than MAX_DECODE_PIXELS (Pillow's route names it), or anything libjpeg warns
    about (a truncated or damaged file, extra bytes before a marker), which strict mode turns
    into a ValueError.
    """
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "Gray"):
        return None
    if b"Exif\x00\x00" in data:  # most web images carry none: no need to parse headers then
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.getexif().get(ORIENTATION, 1) != 1:
                    return None
        except Exception:  # bad metadata: Pillow's route decides what it means
            return None
    draft_w, draft_h = draft_size(width, height, size)
    if draft_w * draft_h > MAX_DECODE_PIXELS:
        return None
    try:
        pixels = simplejpeg.decode_jpeg(
            data, "RGB", min_height=draft_h, min_width=draft_w, strict=True
        )
    except ValueError:
        return None
    # The smallest libjpeg scale covering the draft size is the draft's own; any other outcome
    # is left to Pillow rather than trusted.
    return (pixels, width * height) if pixels.shape[:2] == (draft_h, draft_w) else None


def _upright(im: Image.Image) -> Image.Image:
    """Applies the EXIF orientation; a broken EXIF block leaves the image as stored."""
    try:
        if im.getexif().get(ORIENTATION, 1) == 1:
            return im  # upright already; exif_transpose would copy the pixels for nothing
        return ImageOps.exif_transpose(im)
    except Exception:  # bad metadata must not cost a good image
        return im


def load_rgb(
    path: str | os.PathLike, size: int, center_crop: bool = True, resample: str = "bicubic"
) -> np.ndarray:
    """Decodes an image file by content and returns it as a `size` x `size` RGB uint8 array.

    Args:
        path: the file; its extension is ignored.
        size: side of the output square.
        center_crop: trim the longer side to a centred square first (keeps the aspect ratio);
            False stretches the whole image to the square.
        resample: "bicubic" (the dataset's) or "bilinear" (what torchvision's and TF-slim's
            ImageNet evaluation used).

    Returns:
        uint8 array of shape (size, size, 3).

    Raises:
        BadImage: empty, not an image, truncated, corrupt or too large; `reason` says which.
    """
    return square_rgb(decode_file(path, size)[0], size, center_crop, resample)


def square_rgb(
    pixels: np.ndarray, size: int, center_crop: bool = True, resample: str = "bicubic"
) -> np.ndarray:
    """A decoded RGB array as the `size` x `size` square `load_rgb` returns."""
    height, width = pixels.shape[:2]
    box = square_box(width, height) if center_crop else (0, 0, width, height)
    return resize_square(pixels, size, box, resample)


def decode_file(path: str | os.PathLike, size: int) -> tuple[np.ndarray, int]:
    """Decodes an image file by content into an upright RGB uint8 array (height, width, 3).

    Args:
        path: the file; its extension is ignored.
        size: the side it will be resized to; a JPEG decodes at 1/2, 1/4 or 1/8 scale when
            that still covers it.

    Returns:
        (the array, the pixels the file stores: width x height before any JPEG draft scale).

    Raises:
        BadImage: empty, not an image, truncated, corrupt or too large; `reason` says which.
    """
    path = Path(path)
    try:
        data = path.read_bytes()  # one read; both decoders take the bytes
        if not data:
            raise BadImage(EMPTY)
        if plain := _plain_jpeg(data, size):
            return plain
        with warnings.catch_warnings():
            # Corrupt EXIF or odd chunks warn; the image itself may still be fine.
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                # JPEGs decode at 1/2, 1/4 or 1/8 scale when that still covers the output
                # square: the biggest speed-up for multi-megapixel photos (and memory saver).
                stored = im.size[0] * im.size[1]
                im.draft("RGB", (size, size))
                width, height = im.size
                if width * height > MAX_DECODE_PIXELS:
                    raise BadImage(TOO_LARGE, f"{width}x{height} pixels")
                im.load()
                im = _upright(im)
                im = _to_rgb(im)
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage(NOT_IMAGE, "not a format Pillow can read") from None
    except MemoryError:
        raise BadImage(TOO_LARGE, "out of memory while decoding") from None
    except OSError as e:
        if e.errno is not None:  # from the OS, not from a decoder
            raise BadImage(UNREADABLE, e.strerror or str(e)) from None
        message = str(e)
        if "truncat" in message.lower() or "premature end" in message.lower():
            raise BadImage(TRUNCATED, message) from None
        raise BadImage(CORRUPT, message) from None
    except Exception as e:  # any decoder failure is a bad file, not a crash
        raise BadImage(CORRUPT, f"{type(e).__name__}: {e}") from None
    return np.asarray(im, dtype=np.uint8), stored


def resize_square(
    pixels: np.ndarray, size: int, box: tuple[int, int, int, int], resample: str = "bicubic"
) -> np.ndarray:
    """The `box` (left, upper, right, lower) of an RGB array, resized to `size` x `size`.

    "bicubic" (the dataset's): shrinking by 2x or more averages the source pixels under each
    output pixel (OpenCV's INTER_AREA), so fine texture cannot alias. Below 2x, where Caltech's
    200-500 px photos and every JPEG after draft mode fall, and when enlarging, bicubic: as
    sharp, at a fifth of the cost of INTER_AREA's fractional weights and a tenth of Pillow's
    bicubic (measured, 300 px).
    "bilinear": Pillow's antialiased bilinear, the filter torchvision's and TF-slim's ImageNet
    evaluation used, so imported weights see the pixels they were measured with.
    """
    if resample == "bilinear":
        return np.asarray(
            Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR, box=box)
        )
    left, upper, right, lower = box
    crop = pixels[upper:lower, left:right]
    shrink = min(crop.shape[0], crop.shape[1]) / size
    interpolation = cv2.INTER_AREA if shrink >= 2 else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interpolation)
