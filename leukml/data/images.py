"""Decoding and resizing of one image file: the single code path used by training and serving."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from leukml.common.errors import LeukmlError

IMAGE_EXTENSIONS = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
# The only formats decoded, whatever else Pillow knows: a GIF, WebP or EPS (which Pillow hands to
# Ghostscript) is refused by its first bytes, not decoded, in training, `leukml predict`, the
# served model and the page alike.
FORMATS = ("BMP", "PNG", "JPEG", "TIFF")
ACCEPTED = "BMP, PNG, JPEG and TIFF"
# first bytes of formats people send by mistake (where they are, what they say), to name the format
# in the message; nothing is parsed
_FOREIGN = (
    (0, b"GIF8", "GIF"),
    (8, b"WEBP", "WebP"),
    (0, b"%!PS", "PostScript (EPS)"),
    (0, b"\xc5\xd0\xd3\xc6", "PostScript (EPS)"),
    (4, b"jP  ", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
    (0, b"%PDF", "PDF"),
    (4, b"ftyp", "HEIF or another ISO media"),
    (0, b"8BPS", "Photoshop (PSD)"),
)
RESIZE_METHODS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}
DEFAULT_RESIZE = "bilinear"
# C-NMC cells are 450x450 (0.2 MP). Anything far beyond a whole-slide tile is refused before
# decoding, so a crafted header cannot make us allocate gigabytes.
MAX_PIXELS = 64_000_000


class ImageError(LeukmlError):
    """An image file that cannot be used: the message says why."""


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _unidentified(head: bytes) -> ImageError:
    for at, magic, name in _FOREIGN:
        if head[at : at + len(magic)] == magic:
            return ImageError(f"not a readable image: a {name} file; only {ACCEPTED} are read")
    return ImageError(f"not a readable image (not {ACCEPTED}, or corrupt)")


def open_image(source: Path | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an image file (path or bytes) of an accepted format (``FORMATS``): its header is read,
    its pixels are not (see ``to_rgb``).

    Raises:
        ImageError: empty, another format, a corrupt header, or more than ``max_pixels`` pixels.
    """
    data = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    if isinstance(source, bytes | bytearray) and not source:
        raise ImageError("empty (zero bytes)")
    if isinstance(source, Path) and source.stat().st_size == 0:
        raise ImageError("empty file (zero bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(data, formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"decompression bomb refused ({exc})") from None
    except UnidentifiedImageError:
        head = bytes(source[:16]) if isinstance(source, bytes | bytearray) else _head(Path(source))
        raise _unidentified(head) from None
    except OSError as exc:  # a known format's header that breaks off: "BM" and a few bytes
        raise ImageError(f"not a readable image (corrupt header: {exc})") from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"decompression bomb refused: {w}x{h} pixels exceeds {max_pixels}")
    if w == 0 or h == 0:
        raise ImageError(f"image has no pixels ({w}x{h})")
    return img


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(16)


def _from_float(img: Image.Image) -> Image.Image:
    """A 32-bit float image (scientific TIFF) as 8 bits: 0..1 is scaled to 0..255, a larger range
    by its peak. PIL's own conversion clips to 0..255, which makes a 0..1 image all black.

    Raises:
        ImageError: NaN, infinite or negative pixels (no scale is right for them).
    """
    arr = np.asarray(img, dtype=np.float64)
    if not np.isfinite(arr).all() or arr.min() < 0:
        raise ImageError(
            "float image with NaN, infinite or negative pixels; save it as 8-bit RGB (BMP, PNG, TIFF)"
        )
    peak = arr.max()
    scale = 255.0 if peak <= 1.0 else 255.0 / peak
    return Image.fromarray(np.rint(arr * scale).astype(np.uint8))


def load_rgb(source: Path | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Fully decode an image file (path or bytes) to RGB (``open_image``, then ``to_rgb``).

    Raises:
        ImageError: empty, unreadable, truncated or oversized input, or another format.
    """
    return to_rgb(open_image(source, max_pixels))


def to_rgb(img: Image.Image) -> Image.Image:
    """Decode an opened image's pixels to RGB.

    Grayscale and palette images are expanded; transparent pixels become black, the background
    of C-NMC cells; 16-bit and float images are scaled to 8 bits.

    Raises:
        ImageError: truncated or corrupt pixel data.
    """
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"truncated or corrupt image data ({exc})") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / peak)).astype(np.uint8))
    if img.mode == "F":
        img = _from_float(img)
    return img.convert("RGB")


def refuse_blank(pixels: np.ndarray) -> None:
    """Raise ``ImageError`` for an image whose pixels are all one colour: it holds no cell, and a
    prediction on it would be an answer about nothing."""
    if pixels.size and pixels.min() == pixels.max():
        raise ImageError(f"blank image (every pixel is {pixels.flat[0]}): there is no cell to classify")


def to_square(img: Image.Image) -> Image.Image:
    """Pad to a square on black, centred, so resizing keeps the cell's shape."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), (0, 0, 0))
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def decode_image(
    source: Path | bytes, size: int, method: str = DEFAULT_RESIZE, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decode, pad to square and resize one image to a ``(size, size, 3)`` uint8 array.

    Args:
        source: a file path or the file's bytes.
        size: side of the output square in pixels.
        method: one of ``RESIZE_METHODS``.

    Raises:
        ImageError: the input cannot be decoded.
        ValueError: unknown ``method``.
    """
    if method not in RESIZE_METHODS:
        raise LeukmlError(f"resize method {method!r}; choose one of: {', '.join(RESIZE_METHODS)}")
    return fit(load_rgb(source, max_pixels), size, method)


def fit(img: Image.Image, size: int, method: str = DEFAULT_RESIZE) -> np.ndarray:
    """A decoded RGB image padded to square and resized to ``(size, size, 3)`` uint8, as
    ``decode_image`` makes it from the file."""
    img = to_square(img)
    if img.size != (size, size):
        img = img.resize((size, size), RESIZE_METHODS[method])
    return np.asarray(img, dtype=np.uint8)


def check_image(path: Path, max_pixels: int = MAX_PIXELS) -> None:
    """Decode fully without resizing; raise ``ImageError`` if the file is unusable."""
    load_rgb(path, max_pixels)


def read_image_file(path: Path, max_pixels: int = MAX_PIXELS) -> bytes:
    """The bytes of an image file a user named, checked to decode.

    Raises:
        ImageError: naming the file, what is wrong with it and what to give instead.
        OSError: the file cannot be read.
    """
    data = Path(path).read_bytes()
    try:
        refuse_blank(np.asarray(load_rgb(data, max_pixels)))
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}; give BMP, PNG, JPEG or TIFF images of single cells") from None
    return data


MAX_REQUEST_IMAGE_BYTES = 20 * 1024 * 1024


def decode_base64_batch(
    encoded: list, size: int, method: str = DEFAULT_RESIZE, max_bytes: int = MAX_REQUEST_IMAGE_BYTES
) -> np.ndarray:
    """Base64-encoded image files -> ``(n, size, size, 3)`` float32, decoded as in training.

    Raises:
        ValueError: naming the first bad row and what is wrong with it.
    """
    import base64
    import binascii

    out = np.empty((len(encoded), size, size, 3), np.float32)
    for row, text in enumerate(encoded):
        if not isinstance(text, str) or not text.strip():
            raise LeukmlError(f"row {row}: 'image' is empty; send a base64-encoded image file")
        if len(text) * 3 // 4 > max_bytes:
            raise LeukmlError(
                f"row {row}: image of ~{len(text) * 3 // 4} bytes is over the {max_bytes}-byte limit"
            )
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise LeukmlError(f"row {row}: 'image' is not valid base64") from None
        try:
            out[row] = decode_image(data, size, method)
            refuse_blank(out[row])
        except ImageError as exc:
            raise LeukmlError(f"row {row}: not a usable image: {exc}") from None
    return out
