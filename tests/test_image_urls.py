"""Image URLs: a total deadline, a size cap, and errors that give the HTTP status or the content type."""

from __future__ import annotations

import io
import time

import PIL.Image
import pytest

from refseg.image_utils import ImageFileError, load_image
from tests.image_helpers import EPS, install_fake_gs, send, serve, trickle


def _png() -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", (12, 7), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def _chunked_forever(handler) -> None:
    """An answer with no Content-Length that keeps coming (bounded: 64 MiB at most)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.end_headers()
    try:
        for _ in range(1024):
            handler.wfile.write(b"\0" * 65536)
    except OSError:
        pass


ROUTES = {
    "/ok.png": lambda h: send(h, 200, _png(), "image/png"),
    "/octet": lambda h: send(h, 200, _png(), "application/octet-stream"),
    "/page": lambda h: send(
        h, 200, b"<!doctype html><html><body>a gallery</body></html>", "text/html; charset=utf-8"
    ),
    "/gone": lambda h: send(h, 410, b"gone", "text/plain"),
    "/slow": trickle,
    "/huge": lambda h: send(h, 200, b"\0" * 5000, "image/png"),
    "/endless": _chunked_forever,
    "/eps.png": lambda h: send(h, 200, EPS, "image/png"),
}


@pytest.fixture(scope="module")
def base():
    with serve(ROUTES) as url:
        yield url


def _message(url: str, **kwargs) -> str:
    with pytest.raises(ImageFileError) as info:
        load_image(url, **kwargs)
    message = str(info.value)
    assert message.startswith(f"cannot read image {url}") and "\n" not in message
    assert "<_io." not in message and "object at 0x" not in message
    return message


def test_images_load_whatever_their_content_type(base):
    assert load_image(f"{base}/ok.png").size == (12, 7)
    assert load_image(f"{base}/octet").size == (12, 7)


def test_a_404_and_an_html_page_say_what_the_server_answered(base):
    assert _message(f"{base}/missing.png").endswith("the server answered HTTP 404 Not Found")
    assert _message(f"{base}/gone").endswith("the server answered HTTP 410 Gone")
    assert "the server answered HTTP 200 with text/html; charset=utf-8, not an image" in _message(
        f"{base}/page"
    )


def test_a_server_sending_one_byte_per_second_fails_within_the_deadline(base):
    start = time.monotonic()
    message = _message(f"{base}/slow", timeout=1.5)
    assert time.monotonic() - start < 3.5
    assert "no complete answer within the 1.5 s deadline" in message


def test_answers_over_the_size_cap_are_refused(base, monkeypatch):
    assert "the image is 5000 bytes, over the limit of 4000 bytes" in _message(f"{base}/huge", max_bytes=4000)
    monkeypatch.setenv("REFSEG_MAX_IMAGE_BYTES", "1000000")
    start = time.monotonic()
    assert "over the limit of 1000000 bytes (REFSEG_MAX_IMAGE_BYTES)" in _message(f"{base}/endless")
    assert time.monotonic() - start < 5


def test_an_eps_served_as_png_is_refused_without_ghostscript(base, tmp_path, monkeypatch):
    log = install_fake_gs(tmp_path, monkeypatch)
    assert "looks like PostScript/EPS" in _message(f"{base}/eps.png")
    assert not log.exists()


def test_an_unreachable_server_is_one_line():
    assert "cannot fetch it" in _message("http://127.0.0.1:9/a.png", timeout=3)
