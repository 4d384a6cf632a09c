"""A zip's image files, opened in memory with the inflation counted: a zip bomb is stopped while it
inflates, whatever its headers say, and a bad entry (a wrong CRC, a password, a compression method
Python does not know) is named and set aside while the others are read."""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath

from leukml.common.errors import LeukmlError
from leukml.data.images import is_image_name
from leukml.serving.app.config import Limits

# Real C-NMC BMPs deflate 6-22 times (the 310 cells of the shared sample); zeros deflate ~1000
# times. A zip may inflate to this many times its own size, and to 1 MiB whatever its size.
ZIP_RATIO = 100
ZIP_FLOOR = 1024 * 1024
PIECE = 256 * 1024  # bytes inflated at a time


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


class ZipTooLarge(LeukmlError):
    """A zip whose images inflate past a limit: the message names the limit and the fix."""


def _budget(name: str, size: int, limits: Limits) -> tuple[int, str]:
    """How many bytes the zip's images may inflate to, and the message when they go past it."""
    by_ratio = max(ZIP_RATIO * size, ZIP_FLOOR)
    if limits.max_zip_bytes <= by_ratio:
        return limits.max_zip_bytes, (
            f"{name}: its images inflate to more than {limits.max_zip_bytes} bytes, the --max-zip-bytes "
            "limit; split the zip, or choose its folder instead (sent in chunks)"
        )
    return by_ratio, (
        f"{name}: its images inflate to more than {ZIP_RATIO} times the zip's {size} bytes (a zip "
        "bomb?); zip the image files themselves"
    )


def _inflate(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, most: int) -> bytes:
    """The entry's bytes, at most ``most + 1`` of them: the caller sees it went past ``most``."""
    out = bytearray()
    with archive.open(entry) as member:
        while piece := member.read(min(PIECE, most + 1 - len(out))):
            out += piece
            if len(out) > most:
                break
    return bytes(out)


def _entries(name: str, archive: zipfile.ZipFile, limits: Limits) -> tuple[list, list[str]]:
    entries = [
        e
        for e in archive.infolist()
        if not e.is_dir() and not any(p.startswith((".", "__MACOSX")) for p in e.filename.split("/"))
    ]
    images = [e for e in entries if is_image_name(PurePosixPath(e.filename))]
    if len(images) > limits.max_files:
        raise LeukmlError(f"{name} holds {len(images)} images; an upload may hold {limits.max_files}")
    return images, [f"{name}/{e.filename}: not an image file name" for e in entries if e not in images]


def expand_zip(name: str, data: bytes, limits: Limits) -> tuple[list[Upload], list[str]]:
    """The image files inside a zip (hidden files and folders skipped), and messages for what was
    left out. Each entry is inflated piece by piece and counted: one over ``max_bytes`` is named and
    skipped, and the images together may inflate to ``max_zip_bytes`` and ``ZIP_RATIO`` times the
    zip's size (what the zip's directory says is not trusted).

    Raises:
        ZipTooLarge: the images inflate past either limit (nothing more is inflated).
        ValueError: not a zip file, or more images than an upload may hold.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, EOFError, ValueError, OSError):
        raise LeukmlError(f"{name}: not a readable zip file") from None
    images, skipped = _entries(name, archive, limits)
    budget, too_much = _budget(name, len(data), limits)
    uploads, inflated = [], 0
    for entry in images:
        where = f"{name}/{entry.filename}"
        most = min(limits.max_bytes, budget - inflated)
        try:
            content = _inflate(archive, entry, most)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, zlib.error, EOFError, OSError) as exc:
            why = f"cannot be read from the zip ({exc}); zip it again (deflate, no password)"
            skipped.append(f"{where}: {why}")
            continue
        inflated += len(content)
        if inflated > budget:
            raise ZipTooLarge(too_much)
        if len(content) > limits.max_bytes:
            skipped.append(f"{where}: over the {limits.max_bytes}-byte limit of one image")
            continue
        uploads.append(Upload(where, content))
    return uploads, skipped
