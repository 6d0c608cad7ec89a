"""``--serve`` against a real server on 127.0.0.1: no camera password in any output, only known Host names answered
(DNS rebinding), the listen address parsed strictly and reported as bound, HEAD, and no traceback for a client
that resets."""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import pytest

from fcn_edge.stream.sources import SyntheticSource

from conftest import ROOT, assert_user_error

pytestmark = pytest.mark.slow
PASSWORD = "s3cret-pw"


class Camera(BaseHTTPRequestHandler):
    """An IP camera: synthetic frames as multipart MJPEG, whatever the credentials."""

    def do_GET(self) -> None:
        source = SyntheticSource((96, 64), fps=20)
        source.open()
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            while True:
                jpeg = cv2.imencode(".jpg", source.read(None))[1].tobytes()
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                self.wfile.write(jpeg + b"\r\n")
        except OSError:
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def camera_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://admin:{PASSWORD}@127.0.0.1:{server.server_address[1]}/video.mjpg"
    server.shutdown()
    server.server_close()


def start(*args) -> tuple[subprocess.Popen, str, list[str]]:
    """``python -m fcn_edge.stream ARGS``; the process, the URL of its banner and its stderr so far."""
    process = subprocess.Popen([sys.executable, "-m", "fcn_edge.stream", *map(str, args)], cwd=ROOT,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith("serving "):
            return process, line.split()[1], lines
    process.wait(timeout=30)
    pytest.fail("".join(lines))


def stop(process: subprocess.Popen, lines: list[str]) -> str:
    process.send_signal(signal.SIGINT)
    stderr = "".join(lines) + process.communicate(timeout=60)[1]
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    return stderr


def get(url: str, method: str = "GET", **headers) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_a_camera_password_is_in_no_output(frame_model, camera_url, tmp_path):
    summary = tmp_path / "stats.json"
    process, url, lines = start("--url", camera_url, "--model", frame_model, "--threads", "1",
                                "--serve", "127.0.0.1:0", "--stats-json", summary)
    time.sleep(1)
    status, _, stats = get(url + "stats.json")
    _, _, page = get(url)
    stderr = stop(process, lines)
    assert status == 200 and "admin:***@127.0.0.1" in json.loads(stats)["source"]
    assert "admin:***@127.0.0.1" in stderr and "admin:***@127.0.0.1" in summary.read_text()
    for output in (stderr, stats.decode(), page.decode(), summary.read_text()):
        assert PASSWORD not in output


def test_a_camera_that_cannot_be_opened_is_named_without_its_password(frame_model):
    result = subprocess.run([sys.executable, "-m", "fcn_edge.stream", "--url", f"rtsp://user:{PASSWORD}@127.0.0.1:1/cam",
                             "--model", str(frame_model)], capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert_user_error(result, "rtsp://user:***@127.0.0.1:1/cam")
    assert PASSWORD not in result.stderr + result.stdout


@pytest.fixture(scope="module")
def served(frame_model):
    """A synthetic stream served on 127.0.0.1 that also answers to cam.example; yields its URL and port."""
    process, url, lines = start("--synthetic", "--fps", "10", "--model", frame_model, "--threads", "1",
                                "--serve", "127.0.0.1:0", "--serve-host", "cam.example")  # fmt: skip
    served.lines = lines
    yield url, int(url.rstrip("/").rsplit(":", 1)[1]), process
    served.stderr = stop(process, lines)


@pytest.mark.parametrize("route", ["", "snapshot.jpg", "stats.json", "stream.mjpg"])
def test_a_request_for_an_unknown_host_gets_403_and_no_content(served, route):
    url, port, _ = served
    for host in ("evil.example.com", f"evil.example.com:{port}", "127.0.0.1:1"):  # a DNS-rebound name; another port
        status, headers, body = get(url + route, Host=host)
        assert status == 403 and headers["Content-Type"] == "text/plain", (host, status)
        assert b"--serve-host NAME" in body and b"\xff\xd8" not in body and b"fps" not in body
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"{socket.gethostname()}:{port}",
                 "cam.example", "cam.example:443"):  # fmt: skip
        if route != "stream.mjpg":
            assert get(url + route, Host=host)[0] == 200, host


@pytest.mark.parametrize("host", ["0", "0x0", "127.1", "0177.0.0.1", "::1", "[zz]"])
def test_an_ambiguous_listen_address_is_a_one_line_error(frame_model, host):
    result = subprocess.run([sys.executable, "-m", "fcn_edge.stream", "--synthetic", "--max-frames", "3", "--model",
                             str(frame_model), "--serve", f"{host}:0"], capture_output=True, text=True, timeout=120,
                            cwd=ROOT)  # fmt: skip
    assert_user_error(result, f"--serve {host}:0: HOST {host} is not", "write 0.0.0.0:0 for every interface")
    assert "serving" not in result.stderr


def test_the_banner_names_the_address_actually_bound(frame_model):
    process, url, lines = start("--synthetic", "--model", frame_model, "--threads", "1", "--serve", "localhost:0")
    stop(process, lines)
    assert url.startswith("http://localhost:") and "(bound to 127.0.0.1 only; --serve 0.0.0.0:" in lines[-1], lines


def test_head_answers_like_get_and_a_client_that_resets_prints_no_traceback(frame_model):
    process, url, lines = start("--synthetic", "--fps", "10", "--model", frame_model, "--threads", "1",
                                "--serve", "127.0.0.1:0")  # fmt: skip
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    for route, kind in (("", "text/html"), ("stats.json", "application/json"), ("snapshot.jpg", "image/jpeg")):
        status, headers, body = get(url + route, "HEAD")
        got = get(url + route)
        assert (status, headers["Content-Type"], body) == (200, got[1]["Content-Type"], b"") and kind in got[1]["Content-Type"]
        assert route == "snapshot.jpg" or int(headers["Content-Length"]) == len(got[2])
    assert get(url + "stream.mjpg", "HEAD")[:2][0] == 200
    for partial in (b"GET / HTTP/1.1\r\nHost: 127.0.0.1", b"GET /stream.mjpg HTTP/1.1\r\n\r\n", b"HEAD / HT"):
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(partial)
        time.sleep(0.2)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
        client.close()
    time.sleep(0.5)
    assert get(url + "stats.json")[0] == 200  # still serving
    stderr = stop(process, lines)  # no traceback
    assert "Exception occurred during processing" not in stderr and "note: --serve" not in stderr, stderr
