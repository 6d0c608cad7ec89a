"""``--serve`` under load and misbehaving clients, against a real server on 127.0.0.1 whose source has stalled (no
frame is written): the thread count stays bounded, a fresh request is answered, viewers that hang up free their slots
without waiting for a frame, slow senders (slowloris) and clients that never read are dropped, garbage and huge
requests get a status and no traceback, and nothing of a request is echoed."""

from __future__ import annotations

import select
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from fcn_edge.data.synthetic import CLASSES, PALETTE
from fcn_edge.stream import serve
from fcn_edge.stream.overlay import Overlay
from fcn_edge.stream.serve import ServeSink
from fcn_edge.stream.stats import StreamStats

pytestmark = pytest.mark.slow
CLIENTS = 4


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.fixture
def sink():
    """A server whose stream has started and then stalled: nothing is written until a test says so."""
    sink = ServeSink(("127.0.0.1", 0), "model.onnx", clients=CLIENTS)
    sink.start(StreamStats(), Overlay(PALETTE, 0.5, CLASSES))
    yield sink
    sink.close()


def connect(sink: ServeSink, request: bytes = b"") -> socket.socket:
    client = socket.create_connection(("127.0.0.1", sink.port), timeout=10)
    client.sendall(request)
    return client


def request(route: str, port: int) -> bytes:
    return f"GET /{route} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def status_of(client: socket.socket) -> int:
    """The status of the response on ``client`` (its first line)."""
    line = client.makefile("rb").readline()
    assert line.startswith(b"HTTP/1."), line
    return int(line.split()[1])


def reply(client: socket.socket) -> bytes:
    """Everything the server sends on ``client`` until it closes the connection."""
    chunks = []
    while chunk := client.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def reset(client: socket.socket) -> None:
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
    client.close()


def test_viewers_that_hang_up_while_no_frame_comes_free_their_slots(sink):
    viewers = [connect(sink, request("stream.mjpg", sink.port)) for _ in range(CLIENTS)]
    assert [status_of(viewer) for viewer in viewers] == [200] * CLIENTS
    with connect(sink, request("stream.mjpg", sink.port)) as surplus:
        assert status_of(surplus) == 503  # the limit holds
    for i, viewer in enumerate(viewers):  # two close, two reset; no frame comes meanwhile
        viewer.close() if i % 2 else reset(viewer)
    wait_for(lambda: sink.frames.clients == 0, 3, "closed viewers still hold their slots")
    with urllib.request.urlopen(sink.url + "stream.mjpg", timeout=10) as viewer:  # a new viewer gets in ...
        snapshot = {}
        thread = threading.Thread(
            target=lambda: snapshot.update(response=urllib.request.urlopen(sink.url + "snapshot.jpg", timeout=10))
        )
        thread.start()
        wait_for(lambda: sink.frames.waiting == 2, 5, "the snapshot was not let in")
        sink.write(np.full((48, 64, 3), 90, np.uint8))  # ... and both get the frame when the source comes back
        thread.join()
        assert viewer.readline() == b"--frame\r\n" and snapshot["response"].status == 200
        assert snapshot["response"].read()[:2] == b"\xff\xd8"


def threads() -> int:
    return threading.active_count()


def test_hundreds_of_slow_idle_resetting_and_never_reading_clients_hold_a_bounded_pool(sink, monkeypatch, capfd):
    monkeypatch.setattr(serve, "HEAD_TIMEOUT", 2.0, raising=False)  # shorter deadlines, same code: seconds, not 10 s
    monkeypatch.setattr(serve, "SEND_TIMEOUT", 2.0, raising=False)
    before, most = threads(), 0
    idle, slow = [], []
    for i in range(220):
        if i % 11 == 10:  # reset mid-request
            reset(connect(sink, b"GET /stats.json HTTP/1.1\r\nHost: 1"))
        elif i % 3:  # connect, say nothing
            idle.append(connect(sink))
        else:  # never finish the head
            slow.append(connect(sink, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
        most = max(most, threads() - before)
    trickle(slow, 4.0)  # a header byte every 0.5 s each: a deadline per read never fires
    stuck = []
    for _ in range(CLIENTS):  # viewers that never read while frames are big and frequent
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", sink.port))
        client.sendall(request("stream.mjpg", sink.port))
        stuck.append(client)
    wait_for(lambda: sink.frames.clients == CLIENTS, 10, "the never-reading viewers did not get in")
    most = max(most, threads() - before)
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)  # ~200 KB as JPEG
    for _ in range(40):
        sink.write(noise)
        most = max(most, threads() - before)
        time.sleep(0.02)
    started = time.monotonic()
    with urllib.request.urlopen(sink.url + "stats.json", timeout=10) as response:  # a fresh request is answered
        assert response.status == 200 and time.monotonic() - started < 5
    # a pool (--serve-clients viewers + 4 spare workers + the head reader), not a thread per connection (228 here)
    assert most <= CLIENTS + 5, most
    wait_for(lambda: sink.frames.clients == 0, 2.0 + 8, "viewers that never read kept their slots")
    for client in slow:  # slowloris: dropped at the deadline for the whole head, with 408
        client.settimeout(1)
        assert reply(client).startswith(b"HTTP/1.0 408"), "a slow head was not dropped"
    assert get_status(sink, "snapshot.jpg", timeout=10) == 503  # a free slot, no frame: "stalled", not "busy"
    for client in idle + slow + stuck:
        client.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "note: --serve" not in err, err


def trickle(clients: list[socket.socket], seconds: float) -> None:
    """Send each client's head one byte every 0.5 s for ``seconds``, stopping on a client once it has an answer."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for client in clients:
            if not select.select([client], [], [], 0)[0]:
                client.send(b"X")
        time.sleep(0.5)


def get_status(sink: ServeSink, route: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(sink.url + route, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        assert b"clients already" not in error.read()
        return error.code


@pytest.mark.parametrize(
    "garbage, status",
    [
        (b"\x00\xff\xfe garbage\r\n\r\n", 400),
        (b"GET /?token=never-echo-me HTTP/1.1 extra\r\n\r\n", 400),  # http.server quotes the line in its 400 page
        (b"GET / HTTP/7.0\r\n\r\n", 505),
        (b"GET http://[never-echo-me/ HTTP/1.0\r\n\r\n", 400),  # urlsplit: "Invalid IPv6 URL"
        (b"GET / HTTP/1.0\r\nHost: 127.0.0.1:\xb2\r\n\r\n", 403),  # a port of digits int() refuses
        (b"BREW /pot HTTP/1.0\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431),  # over the 64 KiB head
        (b"GET / HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 150 + b"\r\n", 431),  # over http.server's 100 headers
    ],
)
def test_garbage_and_huge_requests_get_a_status_that_echoes_nothing(sink, capfd, garbage, status):
    with connect(sink, garbage) as client:
        answer = reply(client)
    assert answer.startswith(b"HTTP/1.0 %d" % status), answer[:200]
    assert b"never-echo-me" not in answer and b"garbage" not in answer and b"aaaa" not in answer
    assert get_status(sink, "stats.json", timeout=10) == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "note: --serve" not in err, err


@pytest.mark.skipif(shutil.which("ss") is None, reason="no ss (iproute2) to read the listen backlog")
def test_the_listen_backlog_takes_a_burst_of_viewers(sink):
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{sink.port}"], capture_output=True, text=True, check=True)
    backlog = int(listening.stdout.split()[2])  # State Recv-Q Send-Q: for a listening socket Send-Q is the backlog
    assert backlog >= 128, listening.stdout
    burst = [connect(sink) for _ in range(300)]  # all connected at once, none refused or left waiting for a retry
    assert len(burst) == 300
    for client in burst:
        client.close()
