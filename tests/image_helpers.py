"""Image files for the loader tests: a phone-style JPEG, an EPS file, a pixel bomb, a stand-in ``gs``, a local server."""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import PIL.EpsImagePlugin
import PIL.Image

#: stored size (width, height) of :func:`phone_jpeg`; Orientation=6 shows it as (40, 60), portrait
STORED = (60, 40)
DISPLAYED = (40, 60)


def phone_jpeg() -> bytes:
    """A landscape bitmap tagged EXIF Orientation=6 (rotate 90 degrees clockwise), as phones save portraits.

    Its stored top-left quarter is white, the rest black: displayed, the white block is at the top right.
    """
    pixels = np.zeros((STORED[1], STORED[0], 3), np.uint8)
    pixels[: STORED[1] // 2, : STORED[0] // 2] = 255
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    PIL.Image.fromarray(pixels).save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def is_displayed(image: PIL.Image.Image) -> bool:
    """True when ``image`` is :func:`phone_jpeg` in its displayed orientation (white block top right)."""
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    if image.size != DISPLAYED:
        return False
    h, w = grey.shape
    return grey[: h // 2, w // 2 :].mean() > 200 and grey[h // 2 :, :].mean() < 50


EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n"
    b"newpath 0 0 moveto 16 16 lineto stroke\nshowpage\n%%EOF\n"
)


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


@functools.lru_cache(maxsize=1)
def bomb_png() -> bytes:
    """A PNG of 13000 x 13000 pixels (169 MP) in about 20 KB."""
    out = io.BytesIO()
    PIL.Image.new("1", (13000, 13000), 0).save(out, "PNG", optimize=True)
    return out.getvalue()


def install_fake_gs(tmp_path: Path, monkeypatch) -> Path:
    """Put a stand-in ``gs`` first on ``PATH`` that records each call in the returned log file (and fails).

    Pillow looks Ghostscript up once per process; the cached answer is reset so that it finds this one.
    """
    folder = tmp_path / "fake-bin"
    folder.mkdir(exist_ok=True)
    log = tmp_path / "gs-calls.log"
    script = folder / "gs"
    script.write_text(f'#!/bin/sh\necho "gs $*" >> "{log}"\n[ "$1" = --version ] && echo 10.02.1\nexit 0\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(PIL.EpsImagePlugin, "gs_binary", None)
    monkeypatch.setattr(PIL.EpsImagePlugin, "gs_windows_binary", None)
    return log


Route = Callable[[http.server.BaseHTTPRequestHandler], None]


def send(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def trickle(handler: http.server.BaseHTTPRequestHandler, seconds: float = 20.0) -> None:
    """Answer an image one byte per second (for at most ``seconds``), as a slow-loris server would."""
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.end_headers()
    end = time.monotonic() + seconds
    with contextlib.suppress(OSError):
        while time.monotonic() < end:
            handler.wfile.write(b"\x89")
            handler.wfile.flush()
            time.sleep(1.0)


@contextlib.contextmanager
def serve(routes: dict[str, Route]) -> Iterator[str]:
    """A local HTTP server on 127.0.0.1 answering ``routes`` (path -> handler); yields its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            route = routes.get(self.path)
            if route is None:
                send(self, 404, b"<html><body>Not Found</body></html>", "text/html")
            else:
                route(self)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
