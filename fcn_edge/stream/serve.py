"""``--serve``: watch the stream in a browser on a device with no screen (standard library HTTP, OpenCV JPEG).

Routes (``ROUTES``): ``/`` a page with the live picture, the class legend and the live figures;
``/stream.mjpg`` multipart MJPEG for players and ``<img>`` tags; ``/stats.json`` the
figures the status line shows; ``/snapshot.jpg`` the next frame. With several streams
(fcn_edge/stream/multi.py) each stream is a :class:`ServeChannel` of the one server: ``/`` is
a grid of every stream's picture and figures, ``/stream/<id>.mjpg`` and ``/snapshot/<id>.jpg``
are stream ``id``'s (``/stream.mjpg``: stream 0), ``/stats.json`` lists them all, and
``--serve-clients`` is per stream.

Why it cannot slow the loop: ``write`` runs on the overlay thread and returns at once
unless a viewer is waiting for a frame; then it encodes the frame once, whatever the
number of viewers, and publishes it as the newest JPEG. There are no queues: each
viewer's worker sends the newest JPEG it has not sent yet (one shared latest-frame slot,
a sequence number per viewer), so a slow viewer skips frames, and one that stops reading
blocks only its own worker (until the send deadline) and, no longer waiting, costs no
encoding. A small socket send buffer keeps the kernel from queueing seconds of old frames.

Why clients cannot starve it: one thread reads the request heads of every connection at
once (a selector, a deadline for the whole head, a size limit), and only a complete request
reaches the fixed pool of workers; viewers are limited to ``--serve-clients`` and the pool
has spare workers beyond them for pages and figures. A viewer waiting for a frame that does
not come looks at its socket every ``HANG_UP_CHECK`` seconds, so one that closes frees its
slot at once, frames or not.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import ipaddress
import queue
import re
import select
import selectors
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from ..atomic import json_text
from ..errors import FcnEdgeError
from .page import GRID_PAGE, PAGE
from .sinks import Sink
from .stats import STAGES, StreamStats

if TYPE_CHECKING:
    from .overlay import Overlay  # for the annotation only: the CLI imports serve before its cheap checks

LOCAL_HOST = "127.0.0.1"
BOUNDARY = "frame"
POLL = 0.1  # s: how soon the server thread notices a shutdown
HEAD_TIMEOUT = 10.0  # s a client may take to send its whole request head (slowloris)
HEAD_LIMIT = 64 * 1024  # bytes of request head; more gets 431
PENDING_LIMIT = 256  # connections still sending their head; beyond it the oldest is dropped
BACKLOG = 512  # connections the kernel queues before accept: a burst of viewers is not refused
SPARE_WORKERS = 4  # workers beyond --serve-clients, for pages, figures and refusals
SEND_TIMEOUT = 10.0  # s a client may take to accept a reply or a frame before it is dropped
LINGER = 2.0  # s a refused client's further input is read and dropped, so the refusal is not lost to a reset
HANG_UP_CHECK = 0.5  # s between looks at a waiting viewer's socket: a closed one frees its slot
TOKEN_ENV = "FCN_EDGE_SERVE_TOKEN"  # --serve-token from the environment: not in ps
TOKEN_COOKIE = "fcn_edge_token"
TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,256}")  # URL- and cookie-safe as is
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
    if not (port.isascii() and port.isdigit()) or int(port) > 65535 or (colon and not host):
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


def check_token(token: str | None, origin: str) -> str | None:
    """The --serve-token (or $FCN_EDGE_SERVE_TOKEN) if it is one; an error naming ``origin``, never the value."""
    if token is None or TOKEN.fullmatch(token):
        return token
    raise FcnEdgeError(
        f"{origin} must be 16 to 256 letters, digits or - _ . ~ (it has {len(token)} characters): make one with "
        "python -c 'import secrets; print(secrets.token_urlsafe())'"
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


class ServeChannel(Sink):
    """One stream's picture: ``write`` encodes a frame only when a viewer of this stream waits for one."""

    def __init__(self, index: int, name: str, model: str, quality: int, width: int, clients: int) -> None:
        self.index, self.name, self.model, self.width = index, name, model, width
        self.frames = Frames(clients)
        self.served_size: tuple[int, int] | None = None
        self.classes: list[dict[str, str]] | None = None  # for the legend, once the stream starts
        self.description = f"browser /stream/{index}.mjpg"
        self._params = [cv2.IMWRITE_JPEG_QUALITY, quality]
        self._scaled: np.ndarray | None = None
        self._stats = StreamStats()  # replaced by the stream's own in start()
        self._fps, self._window_start, self._window_frames = 0.0, time.perf_counter(), 0  # served fps, ~1 s windows

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
            "id": self.index, "name": self.name,
        }  # fmt: skip

    def close(self) -> None:
        """This stream's viewers get the closing boundary (the server stops with :meth:`ServeSink.close`)."""
        self.frames.close()


class ServeSink(Sink):
    """An HTTP server in daemon threads serving one stream (it is that stream's sink) or several (``streams``: each
    stream's sink is one of ``channels``, and the server stops with :meth:`close` after the streams)."""

    def __init__(self, address: tuple[str, int], model: str | Path, quality: int = 80, width: int = 640,
                 clients: int = 4, names: tuple[str, ...] = (), token: str | None = None,
                 streams: tuple[str, ...] = ("stream",)) -> None:  # fmt: skip
        host, port = address
        self.names = {name.lower().rstrip(".") for name in names}  # --serve-host: trusted, on any port (a proxy's)
        self.token = token  # --serve-token: None lets anyone who passes the Host check in
        self.model = str(model)
        self.channels = [ServeChannel(i, name, self.model, quality, width, clients) for i, name in enumerate(streams)]
        try:
            self._server = Server((host, port), self, clients * len(streams) + SPARE_WORKERS)
        except OSError as error:  # address in use, unknown host, no permission for ports below 1024
            raise FcnEdgeError(
                f"--serve {host}:{port}: cannot listen there ({error.strerror or error}): choose another port "
                "(0 picks a free one) or host"
            ) from None
        self.host, self.port = host, self._server.address[1]
        self.bound = self._server.address[0]  # getsockname(): what is listening, whatever HOST was
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"
        self.description = f"browser {self.url}"

    @property
    def banner(self) -> str:
        """The start-up line: where to point a browser, and who else can (from the address actually bound)."""
        token = "; token required: add ?token=TOKEN to the URL" if self.token else ""
        if self.bound in ("0.0.0.0", "::"):
            return (f"serving http://{socket.gethostname()}:{self.port}/ (bound to all interfaces: any machine that "
                    f"can reach this one can watch{token})")  # fmt: skip
        if ipaddress.ip_address(self.bound).is_loopback:
            return (f"serving {self.url} (bound to {self.bound} only; --serve 0.0.0.0:{self.port} to allow other "
                    f"machines{token})")  # fmt: skip
        return f"serving {self.url} (bound to {self.bound} only{token})"

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
        if not (port.isascii() and port.isdigit()) or int(port) != self.port:  # not "²", which int() refuses
            return False
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
            return True
        return name in ("localhost", socket.gethostname().lower())

    def authorised(self, candidates: list[str]) -> bool:
        """Whether one of the tokens a request carries is --serve-token's, each compared in constant time."""
        if self.token is None:
            return True
        token = self.token.encode()
        return any(hmac.compare_digest(given.encode("utf-8", "replace"), token) for given in candidates)

    # one stream: this sink is the stream's own (its first channel)
    @property
    def frames(self) -> Frames:
        return self.channels[0].frames

    @property
    def served_size(self) -> tuple[int, int] | None:
        return self.channels[0].served_size

    def start(self, stats: StreamStats, overlay: Overlay) -> None:
        self.channels[0].start(stats, overlay)

    def write(self, image: np.ndarray) -> None:
        self.channels[0].write(image)

    def channel(self, index: str | None) -> ServeChannel | None:
        """Stream ``index`` (a route's digits; None: the first), or None when there is no such stream."""
        number = int(index) if index is not None else 0
        return self.channels[number] if number < len(self.channels) else None

    def live_stats(self) -> dict:
        """The body of /stats.json: one stream's figures as they were, or every stream's under ``streams``."""
        if len(self.channels) == 1:
            return self.channels[0].live_stats()
        streams = [channel.live_stats() for channel in self.channels]
        return {"running": any(s["running"] for s in streams), "model": self.model, "streams": streams,
                "backend": streams[0]["backend"], "classes": streams[0]["classes"]}  # fmt: skip

    def close(self) -> None:
        """Viewers get the closing boundary, then the server stops and the port is released."""
        for channel in self.channels:
            channel.close()
        self._server.close(CLOSE_GRACE)


class Server:
    """A listening socket, one thread that reads the request heads of all connections at once, and a fixed pool of
    workers that answer complete requests: a client that sends its request slowly, or never, holds no worker, and
    the thread count is the same for one client as for a thousand."""

    def __init__(self, address: tuple[str, int], sink: ServeSink, workers: int) -> None:
        self.sink = sink
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        every = address[0] == "::" and socket.has_dualstack_ipv6()  # "all interfaces" then means IPv4 ones too
        self.socket = socket.create_server(address, family=family, backlog=BACKLOG, dualstack_ipv6=every)
        self.socket.setblocking(False)
        self.address = self.socket.getsockname()
        self.ready: queue.Queue = queue.Queue(BACKLOG)  # complete requests for the workers
        self.connections: set[socket.socket] = set()  # the ones workers answer now
        self.connections_changed = threading.Condition()
        self._stopping = threading.Event()
        self._reader = threading.Thread(target=self._read_heads, name="serve", daemon=True)
        self._workers = [threading.Thread(target=self._work, name=f"serve-{i}", daemon=True) for i in range(workers)]
        for thread in (self._reader, *self._workers):
            thread.start()

    def _read_heads(self) -> None:
        """Accept connections and collect their request heads; a whole head goes to the workers, a late or huge one
        is answered here, without a worker, and what the client still sends is read and dropped until it closes
        (closing with unread input would reset the connection before the client reads the answer)."""
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ)
        pending: dict[socket.socket, tuple[tuple, float, bytearray]] = {}  # oldest first: address, deadline, head
        closing: dict[socket.socket, float] = {}  # answered, read until EOF or this deadline
        try:
            while not self._stopping.is_set():
                for key, _ in selector.select(POLL):
                    if key.fileobj is self.socket:
                        self._accept(selector, pending, closing)
                    elif key.fileobj in closing:
                        self._discard(key.fileobj, selector, closing)
                    else:
                        self._read(key.fileobj, selector, pending, closing)
                now = time.monotonic()
                for connection in [c for c, (_, deadline, _) in pending.items() if deadline < now]:
                    del pending[connection]
                    self._answer(connection, HTTPStatus.REQUEST_TIMEOUT, closing)
                for connection in [c for c, deadline in closing.items() if deadline < now]:
                    self._forget(connection, selector, closing)
        finally:
            for connection in [*pending, *closing]:
                connection.close()
            selector.close()
            self.socket.close()

    def _accept(self, selector: selectors.BaseSelector, pending: dict, closing: dict) -> None:
        while True:  # a burst: all of it now
            try:
                connection, address = self.socket.accept()
            except BlockingIOError:
                return
            except OSError:  # out of file descriptors: the oldest refused or slow client makes room
                if closing or pending:
                    self._forget(next(iter(closing)) if closing else self._oldest(pending), selector, closing)
                return
            if len(pending) >= PENDING_LIMIT:
                self._answer(self._oldest(pending), HTTPStatus.SERVICE_UNAVAILABLE, closing)
            if len(closing) >= PENDING_LIMIT:
                self._forget(next(iter(closing)), selector, closing)
            connection.setblocking(False)
            pending[connection] = (address, time.monotonic() + HEAD_TIMEOUT, bytearray())
            selector.register(connection, selectors.EVENT_READ)

    @staticmethod
    def _oldest(pending: dict) -> socket.socket:
        connection = next(iter(pending))
        del pending[connection]
        return connection

    def _read(self, connection: socket.socket, selector: selectors.BaseSelector, pending: dict, closing: dict) -> None:
        address, _, head = pending[connection]
        try:
            data = connection.recv(HEAD_LIMIT + 1 - len(head))
        except BlockingIOError:
            return
        except OSError:  # reset
            data = b""
        if not data:  # gone before its request was complete
            del pending[connection]
            self._forget(connection, selector, {})
            return
        head += data
        if b"\r\n\r\n" in head or b"\n\n" in head:
            del pending[connection]
            selector.unregister(connection)
            try:
                self.ready.put_nowait((connection, address, bytes(head)))
            except queue.Full:
                selector.register(connection, selectors.EVENT_READ)
                self._answer(connection, HTTPStatus.SERVICE_UNAVAILABLE, closing)
        elif len(head) > HEAD_LIMIT:
            del pending[connection]
            self._answer(connection, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, closing)

    @staticmethod
    def _answer(connection: socket.socket, status: HTTPStatus, closing: dict) -> None:
        """Send ``status`` if there is room for it (never waiting), end our side, and read the client's out."""
        with contextlib.suppress(OSError):
            body = f"{status.value} {status.phrase}\n".encode()
            connection.send(b"HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                            b"Connection: close\r\n\r\n%s" % (status.value, status.phrase.encode(), len(body), body))  # fmt: skip
            connection.shutdown(socket.SHUT_WR)
        closing[connection] = time.monotonic() + LINGER

    @staticmethod
    def _discard(connection: socket.socket, selector: selectors.BaseSelector, closing: dict) -> None:
        try:
            if connection.recv(65536):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        Server._forget(connection, selector, closing)

    @staticmethod
    def _forget(connection: socket.socket, selector: selectors.BaseSelector, closing: dict) -> None:
        selector.unregister(connection)
        closing.pop(connection, None)
        connection.close()

    def _work(self) -> None:
        while (request := self.ready.get()) is not None:
            connection, address, head = request
            connection.setblocking(True)
            with self.connections_changed:
                self.connections.add(connection)
            try:
                Handler(connection, address, self, head)
            except OSError:  # a reset, a client that stopped reading: it is gone, nothing to say
                pass
            except Exception as error:  # a bug: one line, the server goes on
                print(f"note: --serve: a request from {address[0]} failed: {error!r}", file=sys.stderr, flush=True)
            finally:
                with self.connections_changed:
                    self.connections.discard(connection)
                    self.connections_changed.notify_all()
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_WR)
                connection.close()

    def close(self, grace: float) -> None:
        """Stop accepting; wait up to ``grace`` s for requests to finish, then shut the sockets of the rest (a viewer
        that stopped reading); the workers end and the port is released."""
        self._stopping.set()
        self._reader.join()
        with contextlib.suppress(queue.Empty):
            while True:  # complete requests no worker took: the stream is over
                self.ready.get_nowait()[0].close()
        with self.connections_changed:
            self.connections_changed.wait_for(lambda: not self.connections, grace)
            for connection in self.connections:
                with contextlib.suppress(OSError):  # the viewer may have hung up meanwhile
                    connection.shutdown(socket.SHUT_RDWR)
        for _ in self._workers:
            self.ready.put(None)
        for worker in self._workers:
            worker.join(SEND_TIMEOUT)


def hung_up(connection: socket.socket) -> bool:
    """Whether a viewer waiting for a frame has closed or reset its connection, without waiting (a viewer sends
    nothing after its request: what it sends anyway is read and ignored)."""
    poller = select.poll()
    poller.register(connection, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        return not connection.recv(4096)
    except OSError:
        return True


ROUTES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"/"), "page"),
    (re.compile(r"/stream(?:/(\d{1,4}))?\.mjpg"), "stream"),  # /stream.mjpg: the first stream's
    (re.compile(r"/stats\.json"), "stats"),
    (re.compile(r"/snapshot(?:/(\d{1,4}))?\.jpg"), "snapshot"),
)  # path (whole) -> Handler method, called with the pattern's groups


class Handler(BaseHTTPRequestHandler):
    """One request, whose head the server has already read: Host check, token, then the route."""

    server: Server
    server_version = "fcn_edge"

    def __init__(self, connection: socket.socket, address: tuple, server: Server, head: bytes) -> None:
        self.head = head
        super().__init__(connection, address, server)

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(SEND_TIMEOUT)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self.rfile.close()
        self.rfile = io.BytesIO(self.head)  # a GET or HEAD has no body: the head is the whole request

    def parse_request(self) -> bool:
        """The request line and headers; False (the request answered) for a Host this server does not know or a
        request without the token."""
        if not super().parse_request():
            return False
        self.close_connection = True  # one request per connection: no worker waits on an idle keep-alive
        try:
            self.url = urlsplit(self.path)
        except ValueError:  # "http://[x/": an absolute URL that is not one
            self.send_error(HTTPStatus.BAD_REQUEST)
            return False
        sink = self.server.sink
        if not sink.allows(self.headers.get("Host")):
            self.reply(HTTPStatus.FORBIDDEN, "text/plain",
                       f"unknown Host {self.headers['Host']!r}: start the stream with --serve-host NAME to allow it\n".encode())  # fmt: skip
            return False
        if not sink.authorised(self.tokens()):
            self.reply(HTTPStatus.UNAUTHORIZED, "text/plain",
                       b"a token is required: open the page as /?token=TOKEN (the one given with --serve-token), "
                       b"or send Authorization: Bearer TOKEN\n", {"WWW-Authenticate": 'Bearer realm="fcn_edge"'})  # fmt: skip
            return False
        return True

    def tokens(self) -> list[str]:
        """The tokens a request carries: ?token=, the page's cookie, Authorization: Bearer."""
        given = parse_qs(self.url.query).get("token", [])
        for header in self.headers.get_all("Cookie", []):
            for part in header.split(";"):
                name, _, value = part.strip().partition("=")
                if name == TOKEN_COOKIE:
                    given.append(value)
        scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given.append(credentials.strip())
        return given

    def do_GET(self) -> None:
        try:
            for pattern, name in ROUTES:
                if match := pattern.fullmatch(self.url.path):
                    getattr(self, name)(*match.groups())
                    return
            self.reply(HTTPStatus.NOT_FOUND, "text/plain", b"not found: try / or /stream.mjpg\n")
        except OSError:
            pass  # the viewer went away or stopped reading: its worker moves on

    def do_HEAD(self) -> None:
        """As GET, without the body (``reply`` and ``stream`` look at ``self.command``)."""
        self.do_GET()

    def page(self) -> None:
        if self.server.sink.token and "token" in parse_qs(self.url.query):
            # the token leaves the address bar (and history) for a cookie only this site's requests carry
            cookie = f"{TOKEN_COOKIE}={self.server.sink.token}; Path=/; HttpOnly; SameSite=Strict"
            self.reply(HTTPStatus.SEE_OTHER, "text/plain", b"", {"Location": "/", "Set-Cookie": cookie})
            return
        self.reply(HTTPStatus.OK, "text/html; charset=utf-8", PAGE if len(self.server.sink.channels) == 1 else GRID_PAGE)

    def stats(self) -> None:
        self.reply(HTTPStatus.OK, "application/json", json_text(self.server.sink.live_stats(), indent=None).encode())

    def snapshot(self, index: str | None = None) -> None:
        channel = self.server.sink.channel(index)
        if channel is None:
            self.no_stream(index)
            return
        frames = channel.frames
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

    def stream(self, index: str | None = None) -> None:
        channel = self.server.sink.channel(index)
        if channel is None:
            self.no_stream(index)
            return
        frames = channel.frames
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
            while not frames.closed:
                frame = frames.next(seen, HANG_UP_CHECK)
                if frame is None:
                    if hung_up(self.connection):
                        return  # its slot is free for the next viewer, frames or not
                    continue
                seen, jpeg = frame
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                self.wfile.write(head + jpeg + b"\r\n")
            self.wfile.write(f"--{BOUNDARY}--\r\n".encode())
        finally:
            frames.leave()

    def no_stream(self, index: str) -> None:
        count = len(self.server.sink.channels)
        self.reply(HTTPStatus.NOT_FOUND, "text/plain", f"no stream {index}: streams are 0 to {count - 1}\n".encode())

    def busy(self) -> None:
        limit = self.server.sink.frames.limit
        self.reply(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain",
                   f"{limit} clients already (--serve-clients {limit}), or the stream has ended\n".encode())  # fmt: skip

    def reply(self, status: HTTPStatus, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Garbage, oversized or unsupported requests: the status alone, plain text; nothing of the request is
        echoed (http.server's page quotes the request line, a token in it included)."""
        self.close_connection = True
        self.request_version = "HTTP/1.0"  # garbage is not HTTP/0.9 to answer without a status line
        status = HTTPStatus(code)
        self.reply(status, "text/plain", f"{status.value} {status.phrase}\n".encode())

    def log_message(self, format: str, *args: object) -> None:
        """Silent: a request log every second would bury the status line on stderr."""
