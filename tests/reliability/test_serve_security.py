"""``--serve`` against a real server on 127.0.0.1: no camera password in any output, only known Host names answered
(DNS rebinding), the listen address parsed strictly and reported as bound (IPv6 too), HEAD, no traceback for a client
that resets, a token that guards every route and shows nowhere, and viewers that close while the camera has stalled
freeing their slots (tests/reliability/test_serve_load.py: the server under load)."""

from __future__ import annotations

import http.client
import json
import os
import secrets
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
    """An IP camera: synthetic frames as multipart MJPEG, whatever the credentials; one that stalls sends
    ``server.frames`` frames, then nothing until ``server.release`` is set."""

    def do_GET(self) -> None:
        source = SyntheticSource((96, 64), fps=20)
        source.open()
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for _ in range(getattr(self.server, "frames", sys.maxsize)):
                jpeg = cv2.imencode(".jpg", source.read(None))[1].tobytes()
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                self.wfile.write(jpeg + b"\r\n")
            self.server.release.wait(60)
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


def start(*args, env: dict | None = None) -> tuple[subprocess.Popen, str, list[str]]:
    """``python -m fcn_edge.stream ARGS``; the process, the URL of its banner and its stderr so far."""
    process = subprocess.Popen([sys.executable, "-m", "fcn_edge.stream", *map(str, args)], cwd=ROOT,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})  # fmt: skip
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
    process, url, lines = start(
        "--url", camera_url, "--model", frame_model, "--threads", "1", "--serve", "127.0.0.1:0", "--stats-json", summary
    )
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


def ipv6_loopback() -> bool:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
@pytest.mark.parametrize(
    "host, bound",
    [
        ("[::1]", "to ::1 only; --serve 0.0.0.0:{port} to allow other machines"),
        ("[::]", "to all interfaces: any machine that can reach this one can watch"),
    ],
)
def test_ipv6_is_served_and_the_banner_is_exact(frame_model, host, bound):
    process, url, lines = start("--synthetic", "--fps", "10", "--model", frame_model, "--threads", "1",
                                "--serve", f"{host}:0")  # fmt: skip
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    shown = f"http://[::1]:{port}/" if host == "[::1]" else f"http://{socket.gethostname()}:{port}/"
    status, _, body = get(f"http://[::1]:{port}/stats.json")
    also_ipv4 = host == "[::]" and get(f"http://127.0.0.1:{port}/stats.json")[0] == 200  # dual stack: every interface
    stop(process, lines)
    assert lines[-1] == f"serving {shown} (bound {bound.format(port=port)})\n", lines
    assert status == 200 and json.loads(body)["running"] and also_ipv4 == (host == "[::]")


def test_a_token_from_the_environment_guards_every_route_and_shows_nowhere(frame_model):
    token = secrets.token_urlsafe()
    process, url, lines = start("--synthetic", "--fps", "10", "--model", frame_model, "--threads", "1",
                                "--serve", "127.0.0.1:0", env={"FCN_EDGE_SERVE_TOKEN": token})  # fmt: skip
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    command_line = open(f"/proc/{process.pid}/cmdline", "rb").read()  # what ps shows
    answers = []
    for route in ("", "stream.mjpg", "stats.json", "snapshot.jpg", "nothing"):
        for headers, query in (({}, ""), ({}, "?token=" + token[:-1]), ({"Authorization": "Bearer x" + token}, ""),
                               ({"Cookie": "fcn_edge_token=" + token.upper()}, "")):  # fmt: skip
            status, got, body = get(url + route + query, **headers)
            assert status == 401 and got["WWW-Authenticate"].startswith("Bearer"), (route, query, headers, status)
            answers.append(body)
    status, _, stats = get(url + "stats.json", Authorization=f"Bearer {token}")
    snapshot = get(url + f"snapshot.jpg?token={token}")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", f"/?token={token}")
    redirect = connection.getresponse()
    cookie = redirect.getheader("Set-Cookie")
    page = get(url, Cookie=f"other=1; fcn_edge_token={token}")
    stderr = stop(process, lines)
    assert status == 200 and json.loads(stats)["running"]
    assert snapshot[0] == 200 and snapshot[2][:2] == b"\xff\xd8"
    assert redirect.status == 303 and redirect.getheader("Location") == "/"  # the token leaves the address bar
    assert cookie.startswith(f"fcn_edge_token={token};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert page[0] == 200 and page[2].startswith(b"<!doctype html>")
    assert "token required" in lines[-1], lines
    for output in (stderr, stats.decode(), page[2].decode(), command_line.decode(), *map(bytes.decode, answers)):
        assert token not in output


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--serve", "0", "--serve-token", "short-token"], {}, "--serve-token must be 16 to 256 letters"),
        (["--serve", "0"], {"FCN_EDGE_SERVE_TOKEN": "a long token with spaces"}, "$FCN_EDGE_SERVE_TOKEN must be 16"),
        (["--serve", "0"], {"FCN_EDGE_SERVE_TOKEN": ""}, "$FCN_EDGE_SERVE_TOKEN must be 16"),  # set, but empty
        (["--serve-token", "0123456789abcdef-secret"], {}, "--serve-token guards --serve, which is not given"),
    ],
)
def test_a_bad_or_lone_token_is_a_one_line_error_that_does_not_show_it(frame_model, args, env, message):
    result = subprocess.run([sys.executable, "-m", "fcn_edge.stream", "--synthetic", "--model", str(frame_model), *args],
                            capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, **env})  # fmt: skip
    assert_user_error(result, message)
    for secret in ("short-token", "with spaces", "abcdef-secret"):
        assert secret not in result.stderr


@pytest.fixture
def stalling_camera():
    """A camera that sends 20 frames, then nothing (the connection stays open) until released."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    server.daemon_threads, server.frames, server.release = True, 20, threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/video.mjpg", server.release
    server.release.set()
    server.shutdown()
    server.server_close()


def test_viewers_that_close_while_the_camera_stalls_free_their_slots(frame_model, stalling_camera):
    camera, release = stalling_camera
    process, url, lines = start("--url", camera, "--model", frame_model, "--threads", "1", "--serve", "127.0.0.1:0",
                                "--serve-clients", "4")  # fmt: skip
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    try:
        seen, deadline = [], time.monotonic() + 60
        while len(seen) < 3 or seen[-1] != seen[-3]:  # the same frame count for a second: the camera has stalled
            assert time.monotonic() < deadline, seen
            seen.append(json.loads(get(url + "stats.json")[2])["frames"])
            time.sleep(0.5)
        viewers = []
        for _ in range(4):
            viewer = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            viewer.request("GET", "/stream.mjpg")
            assert viewer.getresponse().status == 200
            viewers.append(viewer)
        assert get(url + "stream.mjpg")[0] == 503  # the limit holds
        for viewer in viewers:
            viewer.close()
        time.sleep(2)  # no frame comes meanwhile
        clients = json.loads(get(url + "stats.json")[2])["clients"]
        late = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        late.request("GET", "/stream.mjpg")
        late_status = late.getresponse().status
        late.close()
        snapshot = get(url + "snapshot.jpg")  # a frame if the source came back (a reconnect), else "stalled" after 5 s
    finally:
        release.set()  # the camera sends its end: the stream stops without waiting out OpenCV's read timeout
    stop(process, lines)
    assert clients == 0 and late_status == 200
    assert snapshot[0] == 200 or b"stalled" in snapshot[2], snapshot  # not "4 clients already"
