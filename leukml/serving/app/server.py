"""The page's routes (FastAPI, a Jinja2 template, static files from the package: nothing from the
internet) and its start under uvicorn."""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from leukml.common.errors import LeukmlError
from leukml.serving.app.archive import Upload, ZipTooLarge, expand_zip
from leukml.serving.app.config import Limits
from leukml.serving.app.evaluation import Evaluation
from leukml.serving.app.guard import Guard, refused
from leukml.serving.app.inference import answer_prepared, prepare_chunk
from leukml.serving.app.security import HostCheck
from leukml.serving.app.source import Source
from leukml.serving.predict import CHALLENGE_CODES

HERE = Path(__file__).parent
FILES_FORMAT = 'send {"files": [{"name": ..., "data": base64}, ...]}'


def _uploads(body: bytes) -> list[Upload]:
    """The files of a predict request's JSON body.

    Raises:
        ValueError: the body is not that JSON (or nested too deep to read).
    """
    try:
        files = json.loads(body)["files"]
        return [Upload(str(f["name"]), base64.b64decode(f["data"], validate=True)) for f in files]
    except (ValueError, KeyError, TypeError, RecursionError, binascii.Error):
        raise LeukmlError(FILES_FORMAT) from None


def _upload_routes(app: FastAPI, answer: Callable[[list[Upload]], list[dict]], limits: Limits) -> None:
    """``POST /api/predict`` (a chunk of files, answered by ``answer``) and ``POST /api/expand`` (a
    zip's images, sent back to be sent in chunks)."""

    @app.post("/api/predict")
    async def predict(request: Request):
        try:
            uploads = _uploads(await request.body())
        except ValueError as exc:
            return refused(400, str(exc))
        try:
            return {"results": await run_in_threadpool(answer, uploads)}
        except ValueError as exc:
            return refused(422, str(exc))

    @app.post("/api/expand")
    async def expand(request: Request):
        name = request.headers.get("x-file-name", "upload.zip")
        try:
            uploads, skipped = await run_in_threadpool(expand_zip, name, await request.body(), limits)
        except ZipTooLarge as exc:
            return refused(413, str(exc))
        except ValueError as exc:
            return refused(422, str(exc))
        files = [{"name": u.name, "data": base64.b64encode(u.data).decode("ascii")} for u in uploads]
        return {"files": files, "skipped": skipped}


def create_app(
    source: Source,
    evaluation: Evaluation,
    limits: Limits,
    token: str | None = None,
    hosts: HostCheck | None = None,
) -> FastAPI:
    """The page in front of ``source``; ``hosts``: the ``Host`` names it answers to (default: as
    bound to 127.0.0.1)."""
    app = FastAPI(title="leukml", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_middleware(Guard, token=token, limits=limits, hosts=hosts or HostCheck("127.0.0.1"))
    # one chunk decoded at a time (its pixels bounded by --max-pixels), and one at a time in the
    # model; the model's lock is not held while a chunk decodes; the event loop stays free
    decoding, one_at_a_time = threading.Lock(), threading.Lock()

    def answer(uploads: list[Upload]) -> list[dict]:
        with decoding:
            prepared = prepare_chunk(uploads, limits, source.size)
        with one_at_a_time:
            return answer_prepared(source, prepared)

    about = {
        "name": source.info.name,
        "version": source.info.version,
        "alias": source.info.alias,
        "registered": source.info.registered,
        "served_by": source.url or "this process",
    }

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request):
        settings = {"chunk": limits.chunk, "maxFiles": limits.max_files, "maxBytes": limits.max_bytes}
        return templates.TemplateResponse(
            request,
            "index.html",
            {"about": about, "evaluation": evaluation, "settings": settings, "codes": CHALLENGE_CODES},
        )

    @app.get("/api/info")
    def info():
        return {**about, "evaluation": evaluation.__dict__, "limits": limits.__dict__}

    _upload_routes(app, answer, limits)

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)

    return app


def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve until interrupted (uvicorn, one process)."""
    import uvicorn

    # no `server: uvicorn` line: what runs the page is nobody's business
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)
