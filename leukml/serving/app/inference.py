"""Answer a chunk of uploads: one batched model call for the chunk's usable images, then Grad-CAM
and the look-alike check per image. A file that cannot be used gets a message naming it; the
others are answered. Everything stays in memory."""

from __future__ import annotations

import base64
import io
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from PIL import Image

from leukml.data.images import ImageError, decode_image, is_image_name, load_rgb
from leukml.data.lookalike import check
from leukml.model.gradcam import gradcam, overlay
from leukml.serving.app.config import Limits
from leukml.serving.app.source import Source

SHOWN_SIDE = 224  # the cell and its overlay as the page shows them


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


def _png(picture: Image.Image) -> str:
    picture.thumbnail((SHOWN_SIDE, SHOWN_SIDE))  # only ever shrinks
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _bad(name: str, why: str) -> dict:
    return {"file": name, "error": f"{name}: {why}; give BMP, PNG, JPEG or TIFF images of single cells"}


def _usable(upload: Upload, limits: Limits) -> tuple[Image.Image | None, dict | None]:
    if len(upload.data) > limits.max_bytes:
        return None, _bad(upload.name, f"{len(upload.data)} bytes, over the {limits.max_bytes}-byte limit")
    try:
        return load_rgb(upload.data), None
    except ImageError as exc:
        return None, _bad(upload.name, str(exc))


def answer_chunk(source: Source, uploads: list[Upload], limits: Limits) -> list[dict]:
    """One result per upload, in order: ``file``, ``label``, ``p_all``, ``model_version``, the
    cell and its Grad-CAM overlay as PNG data URIs, ``warnings``; or ``file`` and ``error``.

    Raises:
        ValueError: more uploads than a chunk holds, or the model (server) refused the chunk.
    """
    if len(uploads) > limits.chunk:
        raise ValueError(f"{len(uploads)} files in one request; send at most {limits.chunk}")
    checked = [_usable(u, limits) for u in uploads]
    good = [i for i, (picture, _) in enumerate(checked) if picture is not None]
    results: list[dict] = [error for _, error in checked]  # type: ignore[misc]
    if not good:
        return results
    table = source.answer([base64.b64encode(uploads[i].data).decode("ascii") for i in good])
    for i, row in zip(good, table.to_dict("records"), strict=True):
        picture = checked[i][0]
        cell = decode_image(uploads[i].data, source.size)
        heat, _, _ = gradcam(source.network, cell)
        shown = Image.fromarray(overlay(cell, heat)).resize(picture.size, Image.Resampling.BILINEAR)
        results[i] = {
            "file": uploads[i].name,
            "label": str(row["label"]),
            "p_all": float(row["p_all"]),
            "model_version": str(row.get("model_version", source.info.version)),
            "image": _png(picture.copy()),
            "gradcam": _png(shown),
            "warnings": list(check(np.asarray(picture)).warnings) + _other_version(row, source),
        }
    return results


def _other_version(row: dict, source: Source) -> list[str]:
    """A server (``--url``) that answers with another version than the page names."""
    answered = str(row.get("model_version", source.info.version))
    if answered == source.info.version:
        return []
    return [f"answered by model version {answered}, not version {source.info.version} shown above"]


def expand_zip(name: str, data: bytes, limits: Limits) -> tuple[list[Upload], list[str]]:
    """The image files inside a zip (hidden files and folders skipped), and messages for what was
    left out. Sizes are checked from the zip's directory before anything is inflated.

    Raises:
        ValueError: not a zip file, or more images than an upload may hold.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ValueError(f"{name}: not a readable zip file") from None
    entries = [
        e
        for e in archive.infolist()
        if not e.is_dir() and not any(p.startswith((".", "__MACOSX")) for p in e.filename.split("/"))
    ]
    images = [e for e in entries if is_image_name(PurePosixPath(e.filename))]
    if len(images) > limits.max_files:
        raise ValueError(f"{name} holds {len(images)} images; an upload may hold {limits.max_files}")
    skipped = [f"{name}/{e.filename}: not an image file name" for e in entries if e not in images]
    uploads = []
    for entry in images:
        if entry.file_size > limits.max_bytes:
            skipped.append(f"{name}/{entry.filename}: {entry.file_size} bytes, over the limit")
            continue
        uploads.append(Upload(f"{name}/{entry.filename}", archive.read(entry)))
    return uploads, skipped
