"""``--serve`` with several sources: one server, a grid page of every stream, ``/stream/<id>.mjpg`` each; checked over
HTTP and in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import signal
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from test_serve import chromium, decode, read_part, start_stream

pytestmark = pytest.mark.slow

SOURCES = ("--synthetic", "--synthetic", "--synthetic", "--size", "120x160", "--fps", "10", "--max-frames", "100000")


def stop(process) -> str:
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 0, stderr
    return stderr


def test_each_stream_has_its_own_mjpeg_and_figures(frame_model):
    process, url, lines = start_stream(*SOURCES, "--model", frame_model, "--threads", "1")
    try:
        firsts = []
        for index in range(3):
            with urllib.request.urlopen(f"{url}stream/{index}.mjpg", timeout=60) as response:
                firsts.append(decode(read_part(response)))
        with urllib.request.urlopen(url + "stats.json", timeout=30) as response:
            stats = json.load(response)
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url + "stream/3.mjpg", timeout=30)
        with urllib.request.urlopen(url, timeout=30) as response:
            page = response.read().decode()
    finally:
        stderr = "".join(lines) + stop(process)
    assert missing.value.code == 404 and b"streams are 0 to 2" in missing.value.read()
    assert [s["name"] for s in stats["streams"]] == ["synthetic0", "synthetic1", "synthetic2"], stats
    assert all(s["frames"] > 0 and s["running"] for s in stats["streams"])
    assert all(frame.shape == (120, 160, 3) for frame in firsts)
    assert np.abs(firsts[0].astype(int) - firsts[1]).mean() > 10  # two scenes, not one stream served twice
    assert 'id="grid"' in page and "3 streams" in stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium: apt-get install chromium (Debian)")
def test_the_grid_in_a_real_browser_shows_frames_in_every_tile(frame_model, tmp_path):
    process, url, _ = start_stream(*SOURCES, "--model", frame_model, "--threads", "1")
    try:
        shot = chromium(f"--screenshot={tmp_path / 'grid.png'}", url, cwd=tmp_path)
        dom = chromium("--dump-dom", url, cwd=tmp_path).stdout.decode()
    finally:
        stop(process)
    for index, name in enumerate(("synthetic0", "synthetic1", "synthetic2")):
        tile = dom.split(f'id="live{index}"')[0].rsplit("<figure", 1)[1]
        assert 'data-live="1"' in tile, dom  # the tile's <img> loaded a frame of /stream/<id>.mjpg
        assert f"<b>{name}</b>" in dom and f'id="figures{index}">' in dom
        figures = dom.split(f'id="figures{index}">')[1].split("<")[0]
        assert float(figures.split(" fps")[0]) > 0, figures  # filled in from /stats.json
    image = cv2.imread(str(tmp_path / "grid.png"))
    assert image is not None, shot.stderr.decode()
    assert image.std() > 20 and len(np.unique(image.reshape(-1, 3), axis=0)) > 300, "the tiles are blank"
