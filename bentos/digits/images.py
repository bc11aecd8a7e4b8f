"""A client's base64 image → the 8×8, 0..16, ink-high array the digit models learnt from.

scikit-learn's digits are white ink on black: each pixel counts the inked pixels of a 4×4 block of a
32×32 bitmap, every digit fills the full height, and the mean ink is the same for every digit.
Photos and canvas drawings are usually dark ink on a light page, of any size and format, so decoding
finds the polarity from the border, crops to the ink, centres it in a square, averages down to 8×8
and brings the stroke weight to the training digits'. An image that is already 8×8 (the seed's
example) is only inverted if its border is light and rescaled so its darkest ink is 16. Every bad
input raises ``ImageError``, which a service answers with a 400.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps

# Decoded file size: a handwritten digit needs a few kB; 2 MiB still admits a phone photo.
MAX_IMAGE_BYTES = 2 * 1024 * 1024
# Width × height read from the header before any pixel is decoded, so decompression bombs (a small
# file that expands to gigabytes) are refused up front.
MAX_IMAGE_PIXELS = 4096 * 4096
# Characters of base64 for MAX_IMAGE_BYTES, plus room for a ``data:image/...;base64,`` prefix.
MAX_IMAGE_CHARS = (MAX_IMAGE_BYTES + 2) // 3 * 4 + 100

SIZE = 8  # the models' input is SIZE × SIZE
INK_MAX = 16.0  # the models' darkest ink (16 pixels of a 4×4 block)
DRAFT_SIZE = 256  # JPEGs larger than this are decoded at a reduced scale (cheap; 8×8 is the goal)
WORK_SIZE = 1024  # longer side, in pixels, that larger images are averaged down to before cropping
BLANK_LEVEL = 8.0  # peak ink (of 255) below which there is no digit to read
INK_THRESHOLD = 0.25  # share of peak ink that counts as ink when finding the digit's bounding box
# Mean pixel of scikit-learn's digits: 4.88 of 16, ± 0.54 per image and the same for every digit, so
# larger images have their stroke weight brought to it (see _match_ink).
INK_MEAN = 4.88
GAMMA_RANGE = (0.1, 10.0)

_DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


class ImageError(ValueError):
    """The request's image cannot be read as a digit; the message says why, for a 400."""


def decode(image_b64: str) -> np.ndarray:
    """Base64 (optionally a data URL) of any common image format → ``(8, 8)`` float, ink high, 0..16."""
    return normalise(_grayscale(_open(_bytes(image_b64))))


def decode_batch(images_b64: Sequence[str]) -> np.ndarray:
    """``(n, 8, 8)`` for n images; an error names the position of the bad image."""
    out = np.zeros((len(images_b64), SIZE, SIZE))
    for position, image_b64 in enumerate(images_b64):
        try:
            out[position] = decode(image_b64)
        except ImageError as exc:
            raise ImageError(f"image {position}: {exc}") from exc
    return out


def normalise(gray: np.ndarray) -> np.ndarray:
    """Grayscale pixels (0..255, any size, either polarity) → the models' ``(8, 8)`` 0..16 ink-high array."""
    ink = _ink_high(np.asarray(gray, dtype=np.float64))
    if ink.size == 0 or ink.max() < BLANK_LEVEL:
        raise ImageError("image is blank: no ink found")
    if ink.shape != (SIZE, SIZE):
        ink = _fit(ink)
    return ink * (INK_MAX / ink.max())


def _bytes(image_b64: str) -> bytes:
    """Strict base64: the size is checked from the length first, so a huge string is never decoded."""
    if not isinstance(image_b64, str):
        raise ImageError("image is not valid base64: expected a string")
    text = _DATA_URL.sub("", image_b64.strip(), count=1)
    size = len(text) * 3 // 4 - (len(text) - len(text.rstrip("=")))
    if size > MAX_IMAGE_BYTES:
        raise ImageError(f"image is {size} bytes; limit {MAX_IMAGE_BYTES}")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"image is not valid base64: {exc}") from exc
    if not data:
        raise ImageError("image is empty")
    return data


def _open(data: bytes) -> Image.Image:
    """Open, check the header's size, then decode; the first frame of an animation is the digit."""
    try:
        image = Image.open(io.BytesIO(data))
        pixels = image.width * image.height
        if pixels <= MAX_IMAGE_PIXELS:
            image.draft("L", (DRAFT_SIZE, DRAFT_SIZE))
            image.load()
            return ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as exc:
        raise ImageError(_bomb_message(exc)) from exc
    except Exception as exc:  # a hostile file can make any decoder plug-in raise anything
        raise ImageError("image is not a decodable image") from exc
    raise ImageError(f"image has {pixels} pixels; limit {MAX_IMAGE_PIXELS}")


def _bomb_message(exc: Exception) -> str:
    """Pillow's own bomb check (far above ours) fires inside ``open``; keep our wording and numbers."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = found.group(1) if found else f"more than {MAX_IMAGE_PIXELS}"
    return f"image has {pixels} pixels; limit {MAX_IMAGE_PIXELS}"


def _grayscale(image: Image.Image) -> np.ndarray:
    """0..255 luminance, at most WORK_SIZE on a side; transparency is composited on white, as shown."""
    if image.mode in _WIDE_MODES:
        return _shrunk(_stretched(image))
    try:
        if image.mode not in _ALPHA_MODES and "transparency" not in image.info:
            return _shrunk(image.convert("L"))
        rgba = image.convert("RGBA")
    except (ValueError, OSError) as exc:
        raise ImageError(f"image mode {image.mode} is not supported") from exc
    page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    gray, alpha = Image.alpha_composite(page, rgba).convert("L"), rgba.getchannel("A")
    # Light strokes on a transparent canvas vanish on white; then the alpha channel is the drawing.
    if _span(gray) < BLANK_LEVEL <= _span(alpha):
        return _shrunk(alpha)
    return _shrunk(gray)


def _span(image: Image.Image) -> float:
    low, high = image.getextrema()
    return float(high) - float(low)


def _stretched(image: Image.Image) -> Image.Image:
    """16-bit and float images (whose scale varies) → float 0..255 over their own range."""
    values = np.asarray(image, dtype=np.float32)
    low, span = float(values.min()), float(values.max() - values.min())
    return Image.fromarray((values - low) * np.float32(255.0 / span if span > 0 else 0.0))


def _shrunk(gray: Image.Image) -> np.ndarray:
    """Averaged down to WORK_SIZE first: the digit ends up 8×8, and a 4096² page would cost 128 MB a copy."""
    if max(gray.size) > WORK_SIZE:
        scale = WORK_SIZE / max(gray.size)
        size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
        gray = gray.resize(size, Image.Resampling.BOX)
    return np.asarray(gray, dtype=np.float64)


def _ink_high(gray: np.ndarray) -> np.ndarray:
    """Ink high and background zero: a border nearer the lightest pixel than the darkest is a page."""
    if gray.ndim != 2 or gray.size == 0:
        return np.zeros((0, 0))
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    background = float(np.median(border))
    if gray.max() - background < background - gray.min():
        gray, background = 255.0 - gray, 255.0 - background
    return np.clip(gray - background, 0.0, None)


def _fit(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink, centre it in a square (the digit fills the height, as in training), average to 8×8."""
    mask = ink >= INK_THRESHOLD * ink.max()
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    side = max(crop.shape)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    resample = Image.Resampling.BOX if side >= SIZE else Image.Resampling.BILINEAR
    small = np.asarray(Image.fromarray(square).resize((SIZE, SIZE), resample), dtype=np.float64).clip(0, None)
    return _match_ink(small / small.max())


def _match_ink(levels: np.ndarray) -> np.ndarray:
    """Pen width varies; the training digits' ink does not. A gamma brings the mean ink to INK_MEAN.

    A thin stroke averages to faint blocks and a marker to solid ones; raising 0..1 levels to the
    power that gives the training mean restores the contrast pattern the models know.
    """
    target = INK_MEAN / INK_MAX
    low, high = GAMMA_RANGE
    for _ in range(30):  # bisection in log space: the mean falls as the power rises
        gamma = (low * high) ** 0.5
        low, high = (gamma, high) if (levels**gamma).mean() > target else (low, gamma)
    return levels ** ((low * high) ** 0.5)
