"""Every TensorRT name the code uses, release by release, against the real Python bindings of that release.

CI downloads the bindings wheels of TensorRT 8.6, 10.3, 10.13 and 11.4 into ``.ci/reference/``
(``pip download --no-deps``, about 1 MB each, no libraries: the line in .ci/run). Their
compiled extension cannot be imported here (it needs libnvinfer), so :mod:`trt_bindings`
reads the names it registers per class from the machine code. The tests then hold
``CHANGES`` in fcn_edge/backends/tensorrt/api.py to what each release really has, and every
name build.py and runner.py use to the releases the table says they are used on.
"""

from __future__ import annotations

import zipfile

import pytest

from fcn_edge.backends.tensorrt import api as trt_api
from test_trt_api import REFERENCE, PublishedApi, _all, object_members, overrides, trt_chains, trees  # noqa: F401 (fixture)
from trt_bindings import Bindings, read_bindings

LINES = {(8, 6), (10, 3), (10, 13), (11, 4)}  # what .ci/run downloads: JetPack 5's line, JetPack 6's, newest 10.x, newest 11.x
DOWNLOAD = (
    "pip download --no-deps -d .ci/reference tensorrt-bindings==8.6.1 tensorrt-cu12-bindings==10.3.0 ... (the line in .ci/run)"
)


@pytest.fixture(scope="module")
def stubs() -> PublishedApi:
    wheels = sorted(REFERENCE.glob("tensorrt_stubs-*.whl"))
    if not wheels:
        pytest.skip(f"the tensorrt-stubs wheel is not in {REFERENCE} (class names and bases come from it): {DOWNLOAD}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        texts = (
            wheel.read(n).decode().replace("\r\n", "\n") for n in ("tensorrt/__init__.pyi", "tensorrt_bindings/tensorrt.pyi")
        )
        return PublishedApi(*texts)


@pytest.fixture(scope="module")
def releases(stubs: PublishedApi) -> list[Bindings]:
    wheels = sorted(REFERENCE.glob("tensorrt*_bindings-*.whl"))
    if not wheels:
        pytest.skip(f"no TensorRT bindings wheels in {REFERENCE}: {DOWNLOAD}")
    bases = {name: [b.split(".")[-1] for b in cls_bases] for name, (_, cls_bases) in stubs.classes.items()}
    return [read_bindings(wheel, set(stubs.classes), bases) for wheel in wheels]


def test_every_supported_line_is_there(releases):
    assert {r.version for r in releases} >= LINES, (
        f"missing bindings of {sorted(LINES - {r.version for r in releases})}: {DOWNLOAD}"
    )


def test_the_reader_finds_what_the_published_stubs_list(releases, stubs):
    """The 10.13 bindings against the 10.13 stubs: the reader misses almost nothing, so 'absent' means absent."""
    (release,) = [r for r in releases if r.version == (10, 13)]
    listed = found = 0
    for cls, (members, _) in stubs.classes.items():
        if "append" in members:  # pybind11's bind_vector containers: their methods come from its generic code
            continue
        names = {m for m in members if not m.startswith("_")} - {"name", "value"}  # pybind11's own enum properties
        listed += len(names)
        found += sum(release.has(f"{cls}.{m}") for m in names)
    assert found / listed > 0.99, f"only {found} of {listed} published members found"  # 4 missed of 1030 in 10.13
    assert release.has("BuilderFlag.FP16") and not release.has("BuilderFlag.FP61") and not release.has("Bulder")


def test_version_table_matches_every_release(releases):
    wrong = []
    for release in releases:
        for change in trt_api.CHANGES:
            if not change.name.startswith("json:") and release.has(change.name) != trt_api.available(
                change.name, release.version
            ):
                wrong.append(f"{change.name} on {release.version}: bindings {'have' if release.has(change.name) else 'lack'} it")
    assert wrong == []


def test_every_name_the_code_uses_exists_where_the_table_says_it_is_used(releases, trees):
    names = {".".join(chain[:2]) for chain in _all(trees, trt_chains)}
    names |= {f"{cls}.{member}" for cls, member in _all(trees, object_members) | _all(trees, overrides)}
    assert "IExecutionContext.execute_async_v3" in names and "BuilderFlag.INT8" in names
    missing = [
        f"{name} on {release.version}" for release in releases for name in sorted(names)
        if trt_api.available(name, release.version) and not release.has(name)
    ]  # fmt: skip
    assert missing == []


def test_removed_names_are_absent_from_the_newest_release(releases):
    """The facts the table got wrong before it was checked against real bindings."""
    newest = max(releases, key=lambda r: r.version)
    if newest.version < (11, 0):
        pytest.skip("no 11.x bindings")
    assert not newest.has("NetworkDefinitionCreationFlag.EXPLICIT_BATCH")
    assert newest.has("NetworkDefinitionCreationFlag.STRONGLY_TYPED")  # kept, ignored (strongly typed is the default)
    assert not newest.has("BuilderFlag.INT8") and not newest.has("IBuilderConfig.set_calibration_profile")
