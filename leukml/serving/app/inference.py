"""Answer a chunk of uploads: one batched model call for the chunk's usable images, then Grad-CAM
and the look-alike check per image. A file that cannot be used gets a message naming it; the
others are answered. Everything stays in memory."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from mlflow.exceptions import MlflowException
from PIL import Image

from leukml.common.errors import LeukmlError
from leukml.data.images import ImageError, fit, open_image, refuse_blank, to_rgb
from leukml.data.lookalike import check
from leukml.model.gradcam import gradcam, overlay
from leukml.serving.app.archive import Upload
from leukml.serving.app.config import Limits
from leukml.serving.app.source import Source

SHOWN_SIDE = 224  # the cell and its overlay as the page shows them


@dataclass(frozen=True)
class Prepared:
    """One usable upload, decoded once: the cell as the model sees it, the picture as the page
    shows it (already small: a chunk never holds its full-size pictures), its look-alike warnings."""

    upload: Upload
    cell: np.ndarray
    shown: Image.Image
    warnings: tuple[str, ...]


def _png(picture: Image.Image) -> str:
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _bad(name: str, why: str) -> dict:
    return {"file": name, "error": f"{name}: {why}; give BMP, PNG, JPEG or TIFF images of single cells"}


def _decoded(upload: Upload, size: int, limits: Limits, left: list[int]) -> Prepared:
    """Raises ImageError, naming what is wrong, before the pixels are decoded where it can.
    ``left``: the pixels the request may still decode, charged before decoding."""
    if len(upload.data) > limits.max_bytes:
        raise ImageError(f"{len(upload.data)} bytes, over the {limits.max_bytes}-byte limit")
    opened = open_image(upload.data)
    w, h = opened.size
    if w * h > limits.max_pixels:
        raise ImageError(
            f"{w}x{h} pixels, over the {limits.max_pixels}-pixel limit of a request (--max-pixels)"
        )
    if w * h > left[0]:
        raise ImageError(
            f"{w}x{h} pixels, over the {left[0]} pixels left of the request's {limits.max_pixels} "
            "(--max-pixels) after the images before it; send it in a smaller chunk (--chunk)"
        )
    left[0] -= w * h
    picture = to_rgb(opened)
    cell = fit(picture, size)  # as the served model decodes it
    refuse_blank(cell)
    warnings = check(np.asarray(picture)).warnings
    picture.thumbnail((SHOWN_SIDE, SHOWN_SIDE))  # only ever shrinks
    return Prepared(upload, cell, picture, warnings)


def prepare_chunk(uploads: list[Upload], limits: Limits, size: int) -> list[Prepared | dict]:
    """Each upload checked and decoded once, in order: a ``Prepared``, or a result naming the file
    and what is wrong with it (too large, not an accepted format, corrupt, blank, past the pixels
    a request may decode). Needs no model: run it outside the model's lock.

    Raises:
        ValueError: more uploads than a chunk holds.
    """
    if len(uploads) > limits.chunk:
        raise LeukmlError(f"{len(uploads)} files in one request; send at most {limits.chunk}")
    out: list[Prepared | dict] = []
    left = [limits.max_pixels]
    for upload in uploads:
        try:
            out.append(_decoded(upload, size, limits, left))
        except ImageError as exc:
            out.append(_bad(upload.name, str(exc)))
    return out


def answer_prepared(source: Source, prepared: list[Prepared | dict]) -> list[dict]:
    """One result per upload, in order: ``file``, ``label``, ``p_all``, ``model_version``, the
    cell and its Grad-CAM overlay as PNG data URIs, ``warnings``; or ``file`` and ``error``. One
    batched model call for the usable ones.

    Raises:
        ValueError: the model (server) refused the chunk.
    """
    good = [p for p in prepared if isinstance(p, Prepared)]
    if not good:
        return list(prepared)  # type: ignore[arg-type]
    try:
        table = source.answer([base64.b64encode(p.upload.data).decode("ascii") for p in good])
    except MlflowException as exc:
        raise LeukmlError(f"the model refused the chunk: {exc.message}") from None
    answers = iter(table.to_dict("records"))
    results = []
    for item in prepared:
        if not isinstance(item, Prepared):
            results.append(item)
            continue
        row = next(answers)
        heat, _, _ = gradcam(source.network, item.cell)
        shown = Image.fromarray(overlay(item.cell, heat)).resize(item.shown.size, Image.Resampling.BILINEAR)
        results.append(
            {
                "file": item.upload.name,
                "label": str(row["label"]),
                "p_all": float(row["p_all"]),
                "model_version": str(row.get("model_version", source.info.version)),
                "image": _png(item.shown),
                "gradcam": _png(shown),
                "warnings": list(item.warnings) + _other_version(row, source),
            }
        )
    return results


def answer_chunk(source: Source, uploads: list[Upload], limits: Limits) -> list[dict]:
    """``prepare_chunk`` then ``answer_prepared`` (the page takes a lock between the two)."""
    return answer_prepared(source, prepare_chunk(uploads, limits, source.size))


def _other_version(row: dict, source: Source) -> list[str]:
    """A server (``--url``) that answers with another version than the page names."""
    answered = str(row.get("model_version", source.info.version))
    if answered == source.info.version:
        return []
    return [f"answered by model version {answered}, not version {source.info.version} shown above"]
