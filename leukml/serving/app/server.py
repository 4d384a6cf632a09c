"""The page's routes (FastAPI, a Jinja2 template, static files from the package: nothing from the
internet) and its start under uvicorn."""

from __future__ import annotations

import base64
import binascii
import threading
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from leukml.serving.app.config import Limits
from leukml.serving.app.evaluation import Evaluation
from leukml.serving.app.inference import Upload, answer_chunk, expand_zip
from leukml.serving.app.security import TOKEN_COOKIE, token_matches
from leukml.serving.app.source import Source
from leukml.serving.predict import CHALLENGE_CODES

HERE = Path(__file__).parent
OPEN = ("/static/",)  # the stylesheet and script hold no data


def _refused(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _guard(app: FastAPI, token: str | None, limits: Limits) -> None:
    """A token (query ``?token=`` once, then a cookie, or ``Authorization: Bearer``) on every route
    when one is set; a request body over the chunk's limit refused before it is read."""

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token and not request.url.path.startswith(OPEN):
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or None
            given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or bearer
            if not token_matches(given, token):
                return _refused(401, "this page needs its token: open it as /?token=YOUR_TOKEN")
        size = request.headers.get("content-length")
        if size and int(size) > limits.max_request_bytes:
            return _refused(413, f"request of {size} bytes is over the {limits.max_request_bytes}-byte limit")
        response = await call_next(request)
        if token and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response


def create_app(source: Source, evaluation: Evaluation, limits: Limits, token: str | None = None) -> FastAPI:
    """The page in front of ``source``."""
    app = FastAPI(title="leukml", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _guard(app, token, limits)
    one_at_a_time = threading.Lock()  # one model, one chunk at a time; the event loop stays free

    def answer(uploads: list[Upload]) -> list[dict]:
        with one_at_a_time:
            return answer_chunk(source, uploads, limits)

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

    @app.post("/api/predict")
    async def predict(request: Request):
        try:
            files = (await request.json())["files"]
            uploads = [Upload(str(f["name"]), base64.b64decode(f["data"], validate=True)) for f in files]
        except (ValueError, KeyError, TypeError, binascii.Error):
            return _refused(400, 'send {"files": [{"name": ..., "data": base64}, ...]}')
        try:
            return {"results": await run_in_threadpool(answer, uploads)}
        except ValueError as exc:
            return _refused(422, str(exc))

    @app.post("/api/expand")
    async def expand(request: Request):
        name = request.headers.get("x-file-name", "upload.zip")
        try:
            uploads, skipped = expand_zip(name, await request.body(), limits)
        except ValueError as exc:
            return _refused(422, str(exc))
        files = [{"name": u.name, "data": base64.b64encode(u.data).decode("ascii")} for u in uploads]
        return {"files": files, "skipped": skipped}

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)

    return app


def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve until interrupted (uvicorn, one process)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
