"""What every request passes before a route sees it, in this order: the ``Host`` it names (against
DNS rebinding), the token when one is set, a POST's origin and content type (against other sites'
forms and scripts), and its body's size, counted as the body arrives (a ``Content-Length`` is
checked first, a chunked body is cut off at the limit). Every answer carries ``security.HEADERS``.

A plain ASGI middleware: it sees the body's pieces as uvicorn hands them over, which FastAPI's
``@app.middleware("http")`` does not let it do."""

from __future__ import annotations

from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leukml.serving.app.config import Limits
from leukml.serving.app.security import HEADERS, TOKEN_COOKIE, HostCheck, same_origin, token_matches

OPEN = ("/static/",)  # the stylesheet and script hold no data
# what a POST's body must be: types no form of another site can send (a form sends text/plain,
# urlencoded or multipart), so a browser asks this page first, and this page never says yes
BODY_TYPES = {"/api/expand": "application/zip"}
DEFAULT_BODY_TYPE = "application/json"


class TooLarge(Exception):
    """A body that went past the limit while it arrived."""


def refused(status: int, message: str, close: bool = False) -> JSONResponse:
    headers = {"connection": "close"} if close else None  # don't read the rest of a refused body
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Guard:
    """The checks above around ``app``; ``hosts``: the names it answers to."""

    def __init__(self, app: ASGIApp, token: str | None, limits: Limits, hosts: HostCheck) -> None:
        self.app, self.token, self.limits, self.hosts = app, token, limits, hosts

    def refusal(self, request: Request) -> JSONResponse | None:
        """Why the request is refused before its body is read, or None."""
        host = request.headers.get("host")
        if not self.hosts.allows(host):
            return refused(
                421,
                f"this page does not answer to the name {host!r}; open it by its address, or start it "
                f"with --allowed-host NAME for each name it is served under",
            )
        if self.token and not request.url.path.startswith(OPEN):
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or None
            given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or bearer
            if not token_matches(given, self.token):
                return refused(401, "this page needs its token: open it as /?token=YOUR_TOKEN")
        if request.method == "POST":
            if not same_origin(origin := request.headers.get("origin"), host):
                return refused(403, f"a request from {origin} refused: only this page may send to it")
            wanted = BODY_TYPES.get(request.url.path, DEFAULT_BODY_TYPE)
            given = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if given != wanted:
                return refused(415, f"a body of type {given or 'none'!r} refused; send {wanted}")
        size = request.headers.get("content-length")
        limit = self.limits.max_request_bytes
        if size is not None and (not size.isdigit() or int(size) > limit):
            return refused(413, f"request of {size} bytes is over the {limit}-byte limit", close=True)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        started = False
        cookie = bool(self.token and request.query_params.get("token"))

        async def answer(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                if cookie and message["status"] < 400:
                    headers.append("set-cookie", self._cookie())
            await send(message)

        if (refusal := self.refusal(request)) is not None:
            if refusal.status_code != 413:
                await self._drain(receive)
            await refusal(scope, receive, answer)
            return
        try:
            await self.app(scope, self._counted(receive), answer)
        except TooLarge:
            if started:
                raise
            too_large = f"request body over the {self.limits.max_request_bytes}-byte limit"
            await refused(413, too_large, close=True)(scope, receive, answer)

    async def _drain(self, receive: Receive) -> None:
        """Read and drop a refused request's body (up to the limit), so that its sender, still
        sending, gets the refusal instead of a connection closed under it."""
        seen = 0
        while seen <= self.limits.max_request_bytes:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                return
            seen += len(message.get("body", b""))

    def _cookie(self) -> str:
        keeper = Response()
        keeper.set_cookie(TOKEN_COOKIE, str(self.token), httponly=True, samesite="strict")
        return keeper.headers["set-cookie"]

    def _counted(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limits.max_request_bytes:
                    raise TooLarge
            return message

        return counted
