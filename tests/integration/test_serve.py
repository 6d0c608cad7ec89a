"""``--serve``: the HTTP sink in process (slow and surplus clients, clean close), then ``python -m fcn_edge.stream
--serve`` as a user runs it, read with urllib and opened in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from fcn_edge.data.synthetic import CLASSES, PALETTE
from fcn_edge.errors import FcnEdgeError
from fcn_edge.stream.overlay import Overlay
from fcn_edge.stream.serve import ServeSink, parse_address
from fcn_edge.stream.sources import SyntheticSource
from fcn_edge.stream.stats import StreamStats

from conftest import ROOT, assert_user_error

pytestmark = pytest.mark.slow


def read_part(response) -> bytes | None:
    """The next JPEG of a multipart MJPEG response; None at the closing boundary."""
    boundary = response.readline()
    if boundary == b"--frame--\r\n":
        return None
    assert boundary == b"--frame\r\n", boundary
    headers = {}
    while (line := response.readline()) != b"\r\n":
        name, value = line.decode().split(":", 1)
        headers[name.strip().lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    body = response.read(int(headers["content-length"]))
    assert response.read(2) == b"\r\n"
    return body


def read_to_end(response) -> int:
    """Parts up to the closing boundary (read_part fails on an end without one)."""
    count = 0
    while read_part(response) is not None:
        count += 1
    return count


def decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


# --- the sink, in process ---------------------------------------------------------------------


@pytest.fixture
def sink():
    sink = ServeSink(("127.0.0.1", 0), "model.onnx", clients=2)
    sink.start(StreamStats(), Overlay(PALETTE, 0.5, CLASSES))
    yield sink
    if not sink.frames.closed:
        sink.close()


BITS = 16


def numbered_frame(i: int, rng: np.random.Generator) -> np.ndarray:
    """Noise (large JPEGs, so socket buffers fill fast) under a row of black and white squares: i in binary."""
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for bit in range(BITS):
        frame[:32, 32 * bit : 32 * bit + 32] = 255 * (i >> bit & 1)
    return frame


def frame_number(image: np.ndarray) -> int:
    return sum(int(np.median(image[8:24, 32 * bit + 8 : 32 * bit + 24]) > 127) << bit for bit in range(BITS))


def test_address_is_a_port_or_host_and_port():
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:0") == ("0.0.0.0", 0)
    for bad in ("http", ":8080", "host:", "1.2.3.4:70000"):
        with pytest.raises(FcnEdgeError, match=f"--serve {bad}: give PORT or HOST:PORT"):
            parse_address(bad)


def test_nothing_is_encoded_while_no_client_watches(sink):
    frame = np.zeros((48, 64, 3), np.uint8)
    for _ in range(5):
        sink.write(frame)
    assert sink.frames.seq == 0 and sink.served_size is None
    with urllib.request.urlopen(sink.url + "stream.mjpg", timeout=10) as response:
        wait_for(lambda: sink.frames.waiting)
        sink.write(frame)
        assert decode(read_part(response)).shape == (48, 64, 3)
    assert sink.frames.seq == 1


def test_a_client_that_never_reads_slows_neither_the_loop_nor_other_clients(sink):
    stuck = socket.create_connection(("127.0.0.1", sink.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")  # and never reads a byte
    wait_for(lambda: sink.frames.clients == 1)
    reader = urllib.request.urlopen(sink.url + "stream.mjpg", timeout=10)
    wait_for(lambda: sink.frames.clients == 2)
    rng = np.random.default_rng(0)
    stop, received = threading.Event(), []

    def loop():  # the overlay thread: one write per frame, as fast as it can
        i = 0
        while not stop.is_set():
            frame = numbered_frame(i, rng)
            sink.write(frame)  # were it to wait on the stuck client, no client would see a new frame again
            i += 1
            time.sleep(0.002)

    writer = threading.Thread(target=loop)
    writer.start()
    try:
        for _ in range(60):  # far more than the stuck client's socket buffers hold
            received.append(frame_number(decode(read_part(reader))))
        with pytest.raises(urllib.error.HTTPError) as extra:  # a third client: over the limit of 2
            urllib.request.urlopen(sink.url + "stream.mjpg", timeout=10)
    finally:
        stop.set()
        writer.join()
    assert extra.value.code == 503 and b"--serve-clients 2" in extra.value.read()
    assert np.all(np.diff(received) > 0), received  # always a newer frame, never a repeat
    ended = []  # the reader reads on, as a browser does, to see the closing boundary
    draining = threading.Thread(target=lambda: ended.append(read_to_end(reader)))
    draining.start()
    closing = threading.Thread(target=sink.close)  # the stuck client still holds its connection
    closing.start()
    closing.join(timeout=60)  # a bound on a hang, not a speed figure
    assert not closing.is_alive(), "close() waits on the stuck client"
    draining.join(timeout=10)
    assert ended, "the reader's stream ended without the closing boundary"
    assert refused(sink.port)  # the port is released
    stuck.close()
    reader.close()


def test_snapshot_stats_and_page(sink):
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            sink.write(np.full((480, 960, 3), 200, np.uint8))  # wider than --serve-width 640
            time.sleep(0.01)

    writer = threading.Thread(target=loop)
    writer.start()
    try:
        with urllib.request.urlopen(sink.url + "snapshot.jpg", timeout=10) as response:
            assert response.headers["Content-Type"] == "image/jpeg"
            snapshot = decode(response.read())
        with urllib.request.urlopen(sink.url + "stats.json", timeout=10) as response:
            stats = json.load(response)
        with urllib.request.urlopen(sink.url, timeout=10) as response:
            page = response.read().decode()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(sink.url + "nothing", timeout=10)
    finally:
        stop.set()
        writer.join()
    assert snapshot.shape == (320, 640, 3) and abs(int(snapshot.mean()) - 200) <= 2
    assert stats["running"] and stats["model"] == "model.onnx" and stats["served_size"] == [640, 320]
    assert set(stats["stages_ms"]) == {"capture", "infer", "overlay", "write"}
    assert stats["classes"][1] == {"name": CLASSES[1], "colour": "#%02x%02x%02x" % PALETTE[1]}
    assert [c["name"] for c in stats["classes"]] == CLASSES and 'src="/stream.mjpg"' in page


# --- the command line -------------------------------------------------------------------------


def start_stream(*args) -> tuple[subprocess.Popen, str, list[str]]:
    """``python -m fcn_edge.stream ... --serve 127.0.0.1:0``; returns the process, the URL it printed and its stderr so far."""
    process = subprocess.Popen([sys.executable, "-m", "fcn_edge.stream", *map(str, args), "--serve", "127.0.0.1:0"],
                               cwd=ROOT, stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith("serving "):
            assert "bound to 127.0.0.1 only" in line, line
            return process, line.split()[1], lines
    process.wait(timeout=30)
    pytest.fail("".join(lines))


def write_video(path, frames, size):
    source = SyntheticSource(size, fps=0)
    source.open()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    for _ in range(frames):
        writer.write(source.read(None))
    writer.release()


def test_a_video_served_while_recorded_shows_the_overlays_then_ends(frame_model, tmp_path):
    video, saved, output = tmp_path / "in.avi", tmp_path / "saved", tmp_path / "out.mp4"
    write_video(video, 240, (160, 120))
    process, url, lines = start_stream(
        "--video",
        video,
        "--model",
        frame_model,
        "--threads",
        "1",
        "--save-dir",
        saved,
        "--output",
        output,
        "--serve-width",
        "80",
        "--serve-quality",
        "90",
    )
    with urllib.request.urlopen(url + "stream.mjpg", timeout=30) as response:
        jpegs = [read_part(response) for _ in range(5)]
        with urllib.request.urlopen(url + "stats.json", timeout=30) as stats_response:
            stats = json.load(stats_response)
        while (part := read_part(response)) is not None:  # to the end of the video: the closing boundary
            jpegs.append(part)
    stderr = "".join(lines) + process.communicate(timeout=60)[1]
    assert process.returncode == 0, stderr
    assert stats["fps"] > 0 and stats["frames"] > 0 and stats["backend"] == f"ort:{frame_model.name}"
    assert stats["source"].startswith("video") and stats["served_size"] == [80, 60]
    overlays = [cv2.resize(cv2.imread(str(p)), (80, 60), interpolation=cv2.INTER_AREA) for p in sorted(saved.iterdir())]
    assert len(overlays) == 240 and cv2.VideoCapture(str(output)).get(cv2.CAP_PROP_FRAME_COUNT) == 240
    for jpeg in jpegs[:5] + jpegs[-2:]:
        frame = decode(jpeg).astype(np.int16)
        assert frame.shape == (60, 80, 3)
        # one of the overlays, JPEG-compressed: about 3.5 away on average (the input frames are about 50 away)
        assert min(np.abs(frame - overlay).mean() for overlay in overlays) < 8


def test_a_port_in_use_is_a_one_line_error(frame_model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "fcn_edge.stream", "--synthetic", "--model", str(frame_model), "--serve", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
    assert_user_error(result, f"--serve 127.0.0.1:{port}: cannot listen there", "choose another port")


def chromium(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         f"--user-data-dir={cwd}/profile", "--window-size=900,600", "--virtual-time-budget=3000", *args],
        capture_output=True, cwd=cwd, timeout=120,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium: apt-get install chromium (Debian)")
def test_the_page_in_a_real_browser_shows_the_picture_the_legend_and_live_figures(frame_model, tmp_path):
    process, url, _ = start_stream(
        "--synthetic", "--size", "240x320", "--max-frames", "100000", "--model", frame_model, "--threads", "1"
    )
    try:
        shot = chromium(f"--screenshot={tmp_path / 'page.png'}", url, cwd=tmp_path)
        dom = chromium("--dump-dom", url, cwd=tmp_path).stdout.decode()
    finally:
        process.send_signal(signal.SIGINT)
        stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 0 and "ended: stopped" in stderr, stderr
    image = cv2.imread(str(tmp_path / "page.png"))
    assert image is not None, shot.stderr.decode()
    picture = image[:240, :320]  # the page puts the picture at the top-left corner, at its served size
    assert picture.std() > 20 and len(np.unique(picture.reshape(-1, 3), axis=0)) > 100, "the picture area is blank"
    assert '<p id="state">live</p>' in dom, dom  # the image loaded
    assert all(f"</span>{name}</li>" in dom for name in CLASSES), dom
    fps = float(dom.split('<td id="fps">')[1].split("<")[0])  # filled in from /stats.json by the page's script
    assert fps > 0
