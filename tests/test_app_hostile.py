"""`leukml app` against hostile uploads and careless use (issue 38), each test naming what it holds
against: script in a file name is the browser test's (test_app_browser.py); here a zip bomb and a
chunked body (the server process's memory measured), DNS rebinding, other sites' forms and
scripts, the headers, pixels that amplify, a blank image or unreadable zip entry beside good ones,
malformed bodies, and formats the page does not advertise."""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import select
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from pages import PAGE, ask, expand, free_port, peak_growth, predict, some_cells
from PIL import Image

from leukml.serving.app.config import Limits

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def page_process(small_model, child_env, tmp_path_factory):
    """The page as a server process of its own (`leukml app`'s create_app and serve), one image a
    request at most 20 MiB (a request at most ~28 MB): its URL and process id."""
    port = free_port()
    log = tmp_path_factory.mktemp("page-process") / "page.log"
    with open(log, "wb") as out:
        page = subprocess.Popen(
            [sys.executable, "-c", PAGE, str(TESTS), str(small_model), str(port), '{"chunk": 1}'],
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(url + "/api/info", timeout=5)
            break
        except OSError:
            if page.poll() is not None or time.monotonic() > deadline:
                page.kill()
                pytest.fail(f"the page did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    yield url, page.pid
    page.terminate()
    page.wait(timeout=60)


def _bomb(entries: int, size: int) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for k in range(entries):
            z.writestr(f"cells/{k}.bmp", bytes(size))
    return archive.getvalue()


@pytest.mark.slow
def test_a_zip_bomb_is_refused_while_it_inflates(page_process):
    url, pid = page_process
    bomb = _bomb(12, 20_000_000)  # 240 MB of zeros in a ~240 KB zip; each entry under the image limit
    (status, body), grew = peak_growth(pid, lambda: expand(url, bomb, "bomb.zip"))
    print(f"zip bomb: the page's memory grew by {grew / 1e6:.1f} MB at most")
    assert grew < 200e6, f"the page's memory grew by {grew / 1e6:.0f} MB"
    assert status == 413, str(body)[:300]
    assert body["error"] == (
        f"bomb.zip: its images inflate to more than 100 times the zip's {len(bomb)} bytes (a zip "
        "bomb?); zip the image files themselves"
    )


def test_zip_limit_in_total_names_its_option(serve_page, real_sample):
    """Images that inflate past --max-zip-bytes together (each under the image limit, the zip no
    bomb: BMPs deflate ~11 times) are refused by that limit's name."""
    cells = some_cells(real_sample, 3)
    url = serve_page(Limits(max_zip_bytes=2 * cells[0].stat().st_size))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for cell in cells:
            z.write(cell, cell.name)
    status, body = expand(url, archive.getvalue(), "three.zip")
    limit = 2 * cells[0].stat().st_size
    assert status == 413, body
    assert body["error"].startswith(
        f"three.zip: its images inflate to more than {limit} bytes, the --max-zip-bytes"
    )


def _send_chunked(url: str, total: int) -> tuple[int, dict]:
    """POST a JSON-looking body of ``total`` bytes with ``Transfer-Encoding: chunked`` (no
    Content-Length), 1 MiB a chunk, until it is sent or the page has answered."""
    host, port = url.removeprefix("http://").split(":")
    piece = b"A" * (1 << 20)
    frame = b"%x\r\n%s\r\n" % (len(piece), piece)
    start, end = b'{"files": [{"name": "a.png", "data": "', b'"}]}'
    with socket.create_connection((host, int(port)), timeout=120) as s:
        s.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n"
            % (host.encode(), port.encode(), len(start), start)
        )
        sent = 0
        try:
            while sent < total and not select.select([s], [], [], 0)[0]:  # stop once answered
                s.sendall(frame)
                sent += len(piece)
            if sent >= total:
                s.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(end), end))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page closed the connection after its answer
        response = http.client.HTTPResponse(s)
        response.begin()
        return response.status, json.loads(response.read())


def test_a_chunked_body_is_counted_as_it_arrives(page_process):
    url, pid = page_process
    limit = Limits(chunk=1).max_request_bytes
    (status, body), grew = peak_growth(pid, lambda: _send_chunked(url, 300 * 2**20))
    print(f"chunked body: the page's memory grew by {grew / 1e6:.1f} MB at most")
    assert grew < 200e6, f"the page's memory grew by {grew / 1e6:.0f} MB"
    assert status == 413 and body["error"] == f"request body over the {limit}-byte limit", body


def test_every_answer_carries_the_security_headers_and_no_server_banner(page_process):
    url, _ = page_process
    for path in ("/", "/api/info", "/static/app.js", "/nowhere"):
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(url + path, timeout=60)
        request = urllib.request.Request(url + path)
        try:
            response = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as exc:
            response = exc
        headers = response.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "script-src 'self';" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer", path
        assert "server" not in headers, (path, headers["server"])


def _post(url: str, body: bytes, headers: dict) -> tuple[int, dict | str]:
    return ask(url + "/api/predict", body, headers)


def test_another_name_another_site_or_a_form_is_refused(serve_page, real_sample):
    """DNS rebinding (a foreign Host), another site's script (its Origin) and another site's form
    (text/plain, urlencoded) are refused before the model is asked; the page's own POST works."""
    url = serve_page(Limits(), allowed=("cells.example",))
    port = url.rsplit(":", 1)[1]
    cell = some_cells(real_sample, 1)[0]
    body = json.dumps({"files": [{"name": cell.name, "data": base64.b64encode(cell.read_bytes()).decode()}]})
    own = {"Content-Type": "application/json", "Origin": url}
    assert _post(url, body.encode(), own)[0] == 200
    status, answer = _post(url, body.encode(), {**own, "Host": f"attacker.example:{port}"})
    assert status == 421 and "--allowed-host" in answer["error"], answer
    assert ask(url + "/", headers={"Host": f"attacker.example:{port}"})[0] == 421
    assert ask(url + "/", headers={"Host": f"cells.example:{port}"})[0] == 200  # --allowed-host
    assert ask(url + "/", headers={"Host": f"localhost:{port}"})[0] == 200
    status, answer = _post(url, body.encode(), {**own, "Origin": "http://attacker.example"})
    assert status == 403 and answer["error"].startswith("a request from http://attacker.example refused")
    assert _post(url, body.encode(), {**own, "Origin": "null"})[0] == 403
    for form in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, answer = _post(url, body.encode(), {"Content-Type": form})
        assert status == 415 and answer["error"].endswith("send application/json"), (form, answer)
    status, answer = ask(url + "/api/expand", b"PK", {"Content-Type": "text/plain"})
    assert status == 415 and answer["error"].endswith("send application/zip"), answer


def test_allowed_host_option_is_repeatable_and_reaches_the_page():
    from leukml.common.options import build
    from leukml.serving.app.config import AppConfig
    from leukml.serving.app.security import HostCheck

    config = build(AppConfig, {"allowed_host": ("cells.example", "lab.example,proxy.example")})
    assert config.allowed_hosts == ("cells.example", "lab.example", "proxy.example")
    assert build(AppConfig, {"allowed_host": ("",)}).allowed_hosts == ()  # the MLproject's empty default
    wildcard = HostCheck("0.0.0.0", config.allowed_hosts)
    assert wildcard.allows("10.1.2.3:8501") and wildcard.allows("[::1]:8501")
    assert wildcard.allows("lab.example") and wildcard.allows("localhost:8501")
    assert not wildcard.allows("attacker.example:8501") and not wildcard.allows(None)
    assert not HostCheck("10.1.2.3").allows("10.9.9.9") and not HostCheck("10.1.2.3").allows("localhost")


def _png(size: tuple[int, int], blank: bool = False) -> bytes:
    picture = Image.new("RGB", size)
    if not blank:
        picture.paste((200, 40, 120), (0, 0, 40, 40))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def test_a_blank_image_loses_only_itself(serve_page, real_sample):
    url = serve_page(Limits(chunk=3))
    cell = some_cells(real_sample, 1)[0]
    status, body = predict(url, [("blank.png", _png((64, 64), blank=True)), (cell.name, cell.read_bytes())])
    assert status == 200, body
    blank, good = body["results"]
    assert blank["error"].startswith("blank.png: blank image (every pixel is 0)"), blank
    assert good["label"] in ("ALL", "hem") and "error" not in good


def test_pixels_a_request_may_decode_are_bounded(serve_page, real_sample):
    """A 25-megapixel PNG (a few KB) is refused from its header, before it is decoded, and the
    pixels of one request's images are counted together."""
    cells = some_cells(real_sample, 3)  # 450x450 each
    url = serve_page(Limits(chunk=4, max_pixels=2 * 450 * 450))
    huge = _png((5000, 5000))
    status, body = predict(url, [("huge.png", huge), *((c.name, c.read_bytes()) for c in cells)])
    assert status == 200, body
    refused, first, second, third = body["results"]
    assert refused["error"].startswith("huge.png: 5000x5000 pixels, over the 405000-pixel limit of a request")
    assert "label" in first and "label" in second
    left = f"{cells[2].name}: 450x450 pixels, over the 0 pixels left of the request's 405000 (--max-pixels)"
    assert third["error"].startswith(left), third


def test_a_zip_entry_that_cannot_be_read_is_named_and_the_others_given(serve_page, real_sample):
    """A wrong CRC, a password and a compression method Python lacks: one message each, no 500."""
    url = serve_page(Limits())
    cell = some_cells(real_sample, 1)[0]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:  # stored: the bytes are the file's
        z.write(cell, "good.bmp")
        for name in ("crc.bmp", "locked.bmp", "method.bmp"):
            z.writestr(name, b"BM" + bytes(100))
    data = bytearray(archive.getvalue())
    data[data.index(b"crc.bmp") + len("crc.bmp") + 5] ^= 0xFF  # a byte of its content
    directory = data.index(b"PK\x01\x02")  # the central directory's first entry

    def entry(name: bytes) -> int:  # where the central directory's entry of ``name`` starts
        return data.rindex(b"PK\x01\x02", 0, data.index(name, directory))

    data[entry(b"locked.bmp") + 8] |= 0x01  # flags: encrypted
    data[entry(b"method.bmp") + 10] = 97  # compression method: WavPack
    status, body = expand(url, bytes(data), "odd.zip")
    assert status == 200, body
    assert [f["name"] for f in body["files"]] == ["odd.zip/good.bmp"]
    crc, locked, method = body["skipped"]
    assert crc.startswith("odd.zip/crc.bmp: cannot be read from the zip (Bad CRC-32"), crc
    assert locked.startswith("odd.zip/locked.bmp: cannot be read from the zip") and "password" in locked
    assert method.startswith("odd.zip/method.bmp: cannot be read from the zip") and "compression" in method
    for each in (crc, locked, method):
        assert each.endswith("zip it again (deflate, no password)")


def test_a_malformed_body_gets_400(serve_page):
    url = serve_page(Limits())
    deep = b"[" * 100_000 + b"]" * 100_000
    for body in (deep, b'{"files": [{"name": "a"}]}', b"not json", b'{"files": 3}'):
        status, answer = _post(url, body, {"Content-Type": "application/json"})
        assert status == 400 and answer["error"] == 'send {"files": [{"name": ..., "data": base64}, ...]}'


def _foreign(kind: str) -> bytes:
    if kind == "EPS":
        return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\nshowpage\n%%EOF\n"
    out = io.BytesIO()
    picture = Image.new("RGB", (64, 64))
    picture.paste((200, 40, 120), (0, 0, 30, 30))
    picture.save(out, format=kind)
    return out.getvalue()


def test_gif_webp_and_eps_get_a_message_not_a_label(serve_page):
    url = serve_page(Limits(chunk=3))
    files = [("cell.gif", _foreign("GIF")), ("cell.webp", _foreign("WEBP")), ("cell.eps", _foreign("EPS"))]
    status, body = predict(url, files)
    assert status == 200, body
    kinds = ("a GIF file", "a WebP file", "a PostScript (EPS) file")
    for result, kind in zip(body["results"], kinds, strict=True):
        assert "label" not in result, result
        assert result["error"] == (
            f"{result['file']}: not a readable image: {kind}; only BMP, PNG, JPEG and TIFF are read; "
            "give BMP, PNG, JPEG or TIFF images of single cells"
        )
