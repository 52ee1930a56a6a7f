"""Fetch the bytes of an image URL within a total deadline and a size cap (``refseg.image_utils.load_image``).

``timeout`` bounds the whole download (connection, headers and body), not one socket read: a watchdog
shuts the connection's sockets down when the deadline passes, so a server that sends one byte per
second fails on time. The body is refused beyond ``max_bytes`` (the ``Content-Length`` is checked before
anything is read). A non-2xx answer reports its HTTP status and a text/HTML/JSON answer its content
type; nothing is decoded here. Every error is one :class:`UrlFetchError` line (without the URL: the
caller names it).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

__all__ = ["UrlFetchError", "fetch_url"]

#: content types that are never images (answered by refusing, before the body is read)
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml", "application/javascript")


class UrlFetchError(ValueError):
    """A URL whose bytes could not be fetched; the message says why, in one line."""


class _Watchdog:
    """Shuts down every socket registered with it once ``deadline`` (``time.monotonic()``) has passed."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        if deadline is not None:
            self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
            self._timer.daemon = True
            self._timer.start()

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.001, self.deadline - time.monotonic())

    def expired(self) -> bool:
        return self.fired or (self.deadline is not None and time.monotonic() >= self.deadline)

    def register(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            fired = self.fired
        if fired:
            _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv on this socket
    except OSError:
        pass


def _connection_classes(watchdog: _Watchdog) -> tuple[type, type]:
    class HTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.register(self.sock)

    class HTTPSConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.register(self.sock)

    return HTTPConnection, HTTPSConnection


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    http_class, https_class = _connection_classes(watchdog)

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(http_class, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(https_class, req, context=self._context)

    return urllib.request.build_opener(HTTPHandler, HTTPSHandler)


def _is_text(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind.startswith(_TEXT_TYPES)


def fetch_url(url: str, timeout: float | None, max_bytes: int) -> tuple[bytes, str]:
    """``(body, content type)`` of an ``http(s)://`` URL, within ``timeout`` seconds in all.

    Raises:
        UrlFetchError: HTTP error status, text/HTML answer, body over ``max_bytes``, deadline passed,
            or the server cannot be reached.
    """
    from . import __version__

    watchdog = _Watchdog(None if timeout is None else time.monotonic() + timeout)
    request = urllib.request.Request(
        url, headers={"User-Agent": f"refseg/{__version__}", "Accept": "image/*"}
    )
    late = f"no complete answer within the {timeout:g} s deadline" if timeout is not None else ""
    received = 0
    try:
        try:
            response = _opener(watchdog).open(request, timeout=watchdog.remaining())
        except urllib.error.HTTPError as err:
            err.close()
            raise UrlFetchError(f"the server answered HTTP {err.code} {err.reason}".rstrip()) from None
        with response:
            status = getattr(response, "status", 200)
            content_type = response.headers.get("Content-Type") or "no content type"
            if _is_text(content_type):
                raise UrlFetchError(f"the server answered HTTP {status} with {content_type}, not an image")
            length = response.headers.get("Content-Length")
            if length is not None and length.strip().isdigit() and int(length) > max_bytes:
                raise UrlFetchError(
                    f"the image is {int(length)} bytes, over the limit of {max_bytes} bytes "
                    "(REFSEG_MAX_IMAGE_BYTES)"
                )
            chunks = []
            while True:
                if watchdog.expired():
                    raise UrlFetchError(f"{late} ({received} bytes received)")
                chunk = response.read1(1 << 16)
                if not chunk:
                    break
                received += len(chunk)
                if received > max_bytes:
                    raise UrlFetchError(
                        f"the answer is over the limit of {max_bytes} bytes (REFSEG_MAX_IMAGE_BYTES)"
                    )
                chunks.append(chunk)
            if watchdog.expired():
                raise UrlFetchError(f"{late} ({received} bytes received)")
            return b"".join(chunks), content_type
    except UrlFetchError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as err:
        if watchdog.expired():
            raise UrlFetchError(f"{late} ({received} bytes received)") from None
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        text = " ".join(str(reason).split()) or type(reason).__name__
        raise UrlFetchError(f"cannot fetch it: {text}") from None
    finally:
        watchdog.cancel()
