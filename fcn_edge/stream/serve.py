"""``--serve``: watch the stream in a browser on a device with no screen (standard library HTTP, OpenCV JPEG).

Routes: ``/`` a page with the live picture, the class legend and the live figures;
``/stream.mjpg`` multipart MJPEG for players and ``<img>`` tags; ``/stats.json`` the
figures the status line shows; ``/snapshot.jpg`` the next frame.

Why it cannot slow the loop: ``write`` runs on the overlay thread and returns at once
unless a viewer is waiting for a frame; then it encodes the frame once, whatever the
number of viewers, and publishes it as the newest JPEG. There are no queues: each
viewer's thread sends the newest JPEG it has not sent yet (one shared latest-frame slot,
a sequence number per viewer), so a slow viewer skips frames, and one that stops reading
blocks only its own thread and, no longer waiting, costs no encoding. A small socket send
buffer keeps the kernel from queueing seconds of old frames for a slow link.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import cv2
import numpy as np

from ..atomic import json_text
from ..errors import FcnEdgeError
from .page import PAGE
from .sinks import Sink
from .stats import STAGES, StreamStats

if TYPE_CHECKING:
    from .overlay import Overlay  # for the annotation only: the CLI imports serve before its cheap checks

LOCAL_HOST = "127.0.0.1"
BOUNDARY = "frame"
POLL = 0.1  # s: how soon the server thread notices a shutdown
CLIENT_TIMEOUT = 30.0  # s a viewer may take to send its request or accept data before it is dropped
SEND_BUFFER = 256 * 1024  # bytes the kernel may hold for one viewer: a few frames, not seconds of them
SNAPSHOT_WAIT = 5.0  # s /snapshot.jpg waits for a frame
CLOSE_GRACE = 1.0  # s viewers get at the end to receive the closing boundary before their sockets are shut
FPS_WINDOW = 1.0  # s over which the served fps is counted


HOSTNAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?", re.IGNORECASE)


def parse_address(text: str) -> tuple[str, int]:
    """``PORT`` (bound to 127.0.0.1) or ``HOST:PORT``, HOST a dotted IPv4 address, ``[IPv6]`` or a host name; an
    argparse type, so a bad value is reported before anything opens. Forms the C library reads as IPv4 addresses
    though they are not dotted quads (``0``, ``0x0``, ``127.1``) are refused: ``0`` binds every interface."""
    host, colon, port = text.rpartition(":")
    if not port.isdigit() or int(port) > 65535 or (colon and not host):
        raise FcnEdgeError(f"--serve {text}: give PORT or HOST:PORT, e.g. --serve 8080 or --serve 0.0.0.0:8080 (0 = a free port)")
    if not colon:
        return LOCAL_HOST, int(port)
    with contextlib.suppress(ValueError):
        if host.startswith("[") and host.endswith("]"):
            return str(ipaddress.IPv6Address(host[1:-1])), int(port)
        return str(ipaddress.IPv4Address(host)), int(port)
    if HOSTNAME.fullmatch(host) and not host.rstrip(".").rpartition(".")[2].isdigit() and not _reads_as_ipv4(host):
        return host, int(port)
    raise FcnEdgeError(
        f"--serve {text}: HOST {host} is not a dotted IPv4 address, [IPv6] address or host name: write "
        f"0.0.0.0:{port} for every interface, 127.0.0.1:{port} for this machine only, [::1]:{port} for IPv6"
    )


def _reads_as_ipv4(host: str) -> bool:
    try:
        socket.inet_aton(host)  # 0x0, 0177.1: what a bind would make of it
    except OSError:
        return False
    return True


class Frames:
    """The newest JPEG, who waits for the next one, and the client limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.clients = 0
        self.waiting = 0  # viewers blocked in next(): only then is a frame worth encoding
        self.closed = False
        self.seq = 0
        self._jpeg = b""
        self._changed = threading.Condition()

    def join(self) -> bool:
        """Count a client in; False when the limit is reached or the stream has ended."""
        with self._changed:
            if self.closed or self.clients >= self.limit:
                return False
            self.clients += 1
            return True

    def leave(self) -> None:
        with self._changed:
            self.clients -= 1

    def next(self, after: int, timeout: float | None = None) -> tuple[int, bytes] | None:
        """The newest frame if it is newer than ``after`` (waiting for one); None when the stream ended or time ran out."""
        with self._changed:
            self.waiting += 1
            try:
                fresh = self._changed.wait_for(lambda: self.seq > after or self.closed, timeout)
            finally:
                self.waiting -= 1
            if self.closed or not fresh:
                return None
            return self.seq, self._jpeg

    def publish(self, jpeg: bytes) -> None:
        with self._changed:
            self.seq += 1
            self._jpeg = jpeg
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()


class ServeSink(Sink):
    """An HTTP server in a daemon thread; ``write`` encodes a frame only when a viewer waits for one."""

    def __init__(self, address: tuple[str, int], model: str | Path, quality: int = 80, width: int = 640,
                 clients: int = 4, names: tuple[str, ...] = ()) -> None:  # fmt: skip
        host, port = address
        self.names = {name.lower().rstrip(".") for name in names}  # --serve-host: trusted, on any port (a proxy's)
        self.frames = Frames(clients)
        self.model = str(model)
        self.width = width
        self.served_size: tuple[int, int] | None = None
        self.classes: list[dict[str, str]] | None = None  # for the legend, once the stream starts
        self._params = [cv2.IMWRITE_JPEG_QUALITY, quality]
        self._scaled: np.ndarray | None = None
        self._stats = StreamStats()  # replaced by the stream's own in start()
        self._fps, self._window_start, self._window_frames = 0.0, time.perf_counter(), 0  # served fps, ~1 s windows
        try:
            self._server = Server((host, port), self)
        except OSError as error:  # address in use, unknown host, no permission for ports below 1024
            raise FcnEdgeError(
                f"--serve {host}:{port}: cannot listen there ({error.strerror or error}): choose another port "
                "(0 picks a free one) or host"
            ) from None
        self.host, self.port = host, self._server.server_address[1]
        self.bound = self._server.server_address[0]  # getsockname(): what is listening, whatever HOST was
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"
        self.description = f"browser {self.url}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL,), name="serve", daemon=True)
        self._thread.start()

    @property
    def banner(self) -> str:
        """The start-up line: where to point a browser, and who else can (from the address actually bound)."""
        if self.bound in ("0.0.0.0", "::"):
            return (f"serving http://{socket.gethostname()}:{self.port}/ (bound to all interfaces: any machine that "
                    "can reach this one can watch)")  # fmt: skip
        if ipaddress.ip_address(self.bound).is_loopback:
            return f"serving {self.url} (bound to {self.bound} only; --serve 0.0.0.0:{self.port} to allow other machines)"
        return f"serving {self.url} (bound to {self.bound} only)"

    def allows(self, host: str | None) -> bool:
        """Whether a request's Host header names this server. A page from a DNS-rebound name (evil.example
        resolving to this machine) sends that name, so it is refused; an IP address, localhost, this machine's
        name and --serve-host names are not for an attacker to point here. No Host at all: not a browser."""
        if host is None:
            return True
        name, port = host.lower(), "80"
        if ":" in name and not name.endswith("]"):  # NAME:PORT, [::1]:PORT; not [::1] (port 80)
            name, _, port = name.rpartition(":")
        name = name.rstrip(".")
        if name in self.names:
            return True
        if not port.isdigit() or int(port) != self.port:
            return False
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
            return True
        return name in ("localhost", socket.gethostname().lower())

    def start(self, stats: StreamStats, overlay: Overlay) -> None:
        self._stats = stats
        self.classes = [{"name": name, "colour": "#%02x%02x%02x" % tuple(overlay.lut[i, ::-1])}
                        for i, name in enumerate(overlay.classes)]  # fmt: skip
        self._window_start = time.perf_counter()

    def write(self, image: np.ndarray) -> None:
        now = time.perf_counter()
        self._window_frames += 1
        if now - self._window_start >= FPS_WINDOW:
            self._fps = self._window_frames / (now - self._window_start)
            self._window_start, self._window_frames = now, 0
        if not self.frames.waiting:
            return
        if self.width and image.shape[1] > self.width:
            size = (self.width, max(1, round(image.shape[0] * self.width / image.shape[1])))
            image = self._scaled = cv2.resize(image, size, dst=self._scaled, interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", image, self._params)
        if not ok:
            raise FcnEdgeError(f"OpenCV cannot encode a {image.shape} frame as JPEG: this OpenCV build lacks libjpeg")
        self.served_size = (image.shape[1], image.shape[0])
        self.frames.publish(jpeg.tobytes())

    def live_stats(self) -> dict:
        """What the status line shows, plus who is watching: the body of /stats.json."""
        stats = self._stats
        waited = time.perf_counter() - self._window_start
        fps = self._window_frames / waited if waited > 2 * FPS_WINDOW else self._fps or stats.fps  # a stall shows
        stages = {}
        for name, label in STAGES.items():
            p50, p95 = stats.stages[name].recent()
            stages[name] = {"label": label, "p50_ms": p50, "p95_ms": p95}
        return {
            "running": not self.frames.closed, "fps": fps, "frames": stats.frames,
            "seconds": stats.seconds, "dropped": stats.dropped, "reconnects": stats.reconnects,
            "reconnect_attempts": stats.reconnect_attempts, "stages_ms": stages,
            "backend": stats.info.get("runner", ""), "model": self.model, "source": stats.info.get("source", ""),
            "clients": self.frames.clients, "served_size": self.served_size, "classes": self.classes,
        }  # fmt: skip

    def close(self) -> None:
        """Viewers get the closing boundary, then the server stops and the port is released."""
        self.frames.close()
        self._server.shutdown()
        self._server.drop_connections(CLOSE_GRACE)
        self._server.server_close()
        self._thread.join()


class Server(ThreadingHTTPServer):
    """A thread per request; keeps the open connections so ``close`` can end the ones still blocked on a viewer."""

    def __init__(self, address: tuple[str, int], sink: ServeSink) -> None:
        self.sink = sink
        self.connections: set[socket.socket] = set()
        self.connections_changed = threading.Condition()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, Handler)

    def handle_error(self, request: object, client_address: tuple) -> None:
        """A client that resets or stalls mid-request is no error: nothing; anything else: one line, no traceback."""
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            print(f"note: --serve: a request from {client_address[0]} failed: {error!r}", file=sys.stderr, flush=True)

    def drop_connections(self, grace: float) -> None:
        """Wait up to ``grace`` s for requests to finish, then shut the sockets of the rest (a viewer that stopped reading)."""
        with self.connections_changed:
            self.connections_changed.wait_for(lambda: not self.connections, grace)
            for connection in self.connections:
                with contextlib.suppress(OSError):  # the viewer may have hung up meanwhile
                    connection.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    server: Server
    timeout = CLIENT_TIMEOUT
    server_version = "fcn_edge"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        with self.server.connections_changed:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_changed:
            self.server.connections.discard(self.connection)
            self.server.connections_changed.notify_all()
        super().finish()

    def parse_request(self) -> bool:
        """The request line and headers; False (the request answered) for a Host this server does not know."""
        if not super().parse_request():
            return False
        if self.server.sink.allows(self.headers.get("Host")):
            return True
        self.reply(HTTPStatus.FORBIDDEN, "text/plain",
                   f"unknown Host {self.headers['Host']!r}: start the stream with --serve-host NAME to allow it\n".encode())
        self.close_connection = True
        return False

    def do_GET(self) -> None:
        routes = {"/": self.page, "/stream.mjpg": self.stream, "/stats.json": self.stats, "/snapshot.jpg": self.snapshot}
        route = routes.get(urlsplit(self.path).path)
        try:
            if route is None:
                self.reply(HTTPStatus.NOT_FOUND, "text/plain", b"not found: try / or /stream.mjpg\n")
            else:
                route()
        except (ConnectionError, TimeoutError):
            pass  # the viewer went away or stopped reading: its thread just ends

    def do_HEAD(self) -> None:
        """As GET, without the body (``reply`` and ``stream`` look at ``self.command``)."""
        self.do_GET()

    def page(self) -> None:
        self.reply(HTTPStatus.OK, "text/html; charset=utf-8", PAGE)

    def stats(self) -> None:
        self.reply(HTTPStatus.OK, "application/json", json_text(self.server.sink.live_stats(), indent=None).encode())

    def snapshot(self) -> None:
        frames = self.server.sink.frames
        if not frames.join():
            self.busy()
            return
        try:
            frame = frames.next(frames.seq, SNAPSHOT_WAIT)
        finally:
            frames.leave()
        if frame is None:
            self.reply(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame: the stream has ended or stalled\n")
        else:
            self.reply(HTTPStatus.OK, "image/jpeg", frame[1])

    def stream(self) -> None:
        frames = self.server.sink.frames
        if not frames.join():
            self.busy()
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command == "HEAD":
                return
            seen = frames.seq
            while (frame := frames.next(seen)) is not None:
                seen, jpeg = frame
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                self.wfile.write(head + jpeg + b"\r\n")
            self.wfile.write(f"--{BOUNDARY}--\r\n".encode())
        finally:
            frames.leave()

    def busy(self) -> None:
        limit = self.server.sink.frames.limit
        self.reply(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain",
                   f"{limit} clients already (--serve-clients {limit}), or the stream has ended\n".encode())  # fmt: skip

    def reply(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: a request log every second would bury the status line on stderr."""
