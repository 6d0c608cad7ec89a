"""TensorRT and CUDA names checked against the published APIs, and the GPU-free logic of build/runtime.

No GPU and no TensorRT here: the TensorRT names our code uses are checked, by AST, against
the ``tensorrt-stubs`` wheel (NVIDIA's 10.x Python API as .pyi files), read from
``.ci/reference/`` where .ci/run downloads it (``pip download --no-deps``: the stubs' own
dependency is TensorRT, which does not install here), the cuda-python names
against the installed cuda-python, and everything that decides what a build or a run
does is pure Python tested directly.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fcn_edge.backends.tensorrt import api as trt_api
from fcn_edge.backends.tensorrt.build import (
    TrtBuildOptions,
    layer_precisions,
    onnx_kinds,
    plan_build,
    probe,
    profile_shapes,
    read_calibration_cache,
)
from fcn_edge.errors import FcnEdgeError
from fcn_edge.backends.tensorrt.calibration_cache import write_cache
from fcn_edge.compile.options import BuildOptions
from fcn_edge.backends import cuda as cuda_module
from fcn_edge.backends.cuda import DeviceInfo, HostBuffer, find_gpu, open_cuda
from fcn_edge.backends.cuda import pycuda as pycuda_binding
from fcn_edge.backends.tensorrt.runner import check_engine_matches, engine_facts
from fcn_edge.sidecar import sidecar_path

ROOT = Path(__file__).resolve().parents[2]
TRT_SOURCES = [
    ROOT / "fcn_edge/backends/tensorrt/build.py",
    ROOT / "fcn_edge/backends/tensorrt/runner.py",
    ROOT / "fcn_edge/backends/tensorrt/api.py",
]
CUDA_PYTHON_SOURCE = ROOT / "fcn_edge/backends/cuda/cuda_python.py"
PYCUDA_SOURCE = ROOT / "fcn_edge/backends/cuda/pycuda.py"
REFERENCE = ROOT / ".ci" / "reference"
STUBS_PIN = f"pip download --no-deps -d {REFERENCE} tensorrt-stubs==10.13.0.35.1 (the line in .ci/run)"


# ---------------------------------------------------------------- the published TensorRT API


def _parse_stub(text: str, name: str) -> ast.Module:
    """Parse a .pyi; the generated stubs have a few invalid signatures (a parameter named ``in``,
    a default before a non-default), which are replaced by ``(*args, **kwargs)`` keeping the name."""
    lines = text.split("\n")
    for _ in range(50):
        try:
            return ast.parse("\n".join(lines))
        except SyntaxError as error:
            line = lines[error.lineno - 1]
            match = re.match(r"(\s*)def (\w+)\(.*\)( -> .*)?:$", line)
            if not match:
                raise
            lines[error.lineno - 1] = f"{match[1]}def {match[2]}(*args, **kwargs):"
    raise AssertionError(f"{name}: too many syntax errors to repair")


class PublishedApi:
    """Top-level names of ``tensorrt`` and the members (with inherited ones) of its classes."""

    def __init__(self, package: str, bindings: str) -> None:
        self.names: set[str] = set()
        for node in _parse_stub(package, "tensorrt/__init__.pyi").body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self.names |= {(a.asname or a.name).split(".")[0] for a in node.names}
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                self.names.add(node.target.id)
            elif isinstance(node, ast.Assign):
                self.names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                self.names.add(node.name)
        self.classes: dict[str, tuple[set[str], list[str]]] = {}
        for node in _parse_stub(bindings, "tensorrt_bindings/tensorrt.pyi").body:
            if isinstance(node, ast.ClassDef):
                members = set()
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.ClassDef)):
                        members.add(item.name)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        members.add(item.target.id)
                    elif isinstance(item, ast.Assign):
                        members |= {t.id for t in item.targets if isinstance(t, ast.Name)}
                self.classes[node.name] = (members, [ast.unparse(b) for b in node.bases])

    def member(self, cls: str, name: str) -> bool:
        if cls not in self.classes:
            return False
        members, bases = self.classes[cls]
        return name in members or any(self.member(base, name) for base in bases)

    def has(self, chain: tuple[str, ...]) -> bool:
        """``("BuilderFlag", "FP16")`` -> is ``trt.BuilderFlag.FP16`` published? (two levels are checked)"""
        if chain[0] not in self.names:
            return False
        return len(chain) == 1 or self.member(chain[0], chain[1])


@pytest.fixture(scope="module")
def published() -> tuple[PublishedApi, trt_api.Version]:
    wheels = sorted(REFERENCE.glob("tensorrt_stubs-*.whl"))
    if not wheels:
        pytest.skip(f"the tensorrt-stubs wheel is not in {REFERENCE}: {STUBS_PIN}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        package, bindings = (
            wheel.read(name).decode().replace("\r\n", "\n")
            for name in ("tensorrt/__init__.pyi", "tensorrt_bindings/tensorrt.pyi")
        )
    api = PublishedApi(package, bindings)
    return api, trt_api.parse_version(wheels[-1].name.split("-")[1])


# ---------------------------------------------------------------- what our code uses, by AST


def _chain(node: ast.AST) -> tuple[str | None, tuple[str, ...]]:
    """``a.b.c`` -> ("a", ("b", "c")); ``self._a.b`` -> ("self._a", ("b",)); else (None, ())."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return f"self.{node.attr}", tuple(reversed(attrs))
    return (node.id if isinstance(node, ast.Name) else None), tuple(reversed(attrs))


def _outer_chains(tree: ast.AST, roots: set[str]) -> set[tuple[str, ...]]:
    """The longest attribute chain of every expression rooted at one of ``roots``."""
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            root, attrs = _chain(node)
            if root in roots:
                found.add(attrs)
    return found


def trt_chains(tree: ast.AST) -> set[tuple[str, ...]]:
    return _outer_chains(tree, {"trt"})


def object_members(tree: ast.AST) -> set[tuple[str, str]]:
    """(class, member) for ``builder.x``, ``self._engine.x`` ... per trt_api.OBJECT_CLASSES."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            root, attrs = _chain(node)
            variable = (root or "").removeprefix("self.").lstrip("_")
            if variable in trt_api.OBJECT_CLASSES and len(attrs) == 1 and root != "self":
                found.add((trt_api.OBJECT_CLASSES[variable], attrs[0]))
    return found


def overrides(tree: ast.AST) -> set[tuple[str, str]]:
    """(TensorRT base class, method) for every method of our subclasses of ``trt.X``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                root, attrs = _chain(base)
                if root == "trt" and len(attrs) == 1:
                    found |= {(attrs[0], f.name) for f in node.body if isinstance(f, ast.FunctionDef) and f.name != "__init__"}
    return found


def version_names(tree: ast.AST) -> set[str]:
    """String literals passed to trt_api.available()/needed()."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func in ("available", "needed"):
                found.add(node.args[0].value)
    return found


def unpublished(api: PublishedApi, tree: ast.AST) -> list[str]:
    """Every TensorRT name or method in ``tree`` that the published API lacks: what the tests below assert empty."""
    missing = [".".join(c) for c in trt_chains(tree) if not api.has(c)]
    missing += [f"{c}.{m}" for c, m in object_members(tree) | overrides(tree) if not api.member(c, m)]
    return sorted(missing)


@pytest.fixture(scope="module")
def trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text()) for path in TRT_SOURCES}


def _all(trees: dict[Path, ast.Module], collect) -> set:
    return set().union(*(collect(tree) for tree in trees.values()))


def test_every_tensorrt_name_we_use_is_in_the_published_api(published, trees):
    api, _ = published
    for path, tree in trees.items():
        assert unpublished(api, tree) == [], f"{path.name} uses TensorRT names the 10.x API does not have"
    assert ("BuilderFlag", "FP16") in _all(trees, trt_chains)  # the collector does see our names


def test_the_checker_flags_misspelt_names(published):
    api, _ = published
    fake = ast.parse(
        "def build(trt, config, engine):\n"
        "    trt.BuilderFlag.FP61\n"
        "    trt.Bulder(None)\n"
        "    config.set_memry_pool_limit(trt.MemoryPoolType.WORKSPACE, 1)\n"
        "    engine.get_tensor_shape('x')\n"
        "    class Monitor(trt.IProgressMonitor):\n"
        "        def phase_begin(self, name, parent, steps): ...\n"
    )
    assert unpublished(api, fake) == [
        "BuilderFlag.FP61", "Bulder", "IBuilderConfig.set_memry_pool_limit", "IProgressMonitor.phase_begin",
    ]  # fmt: skip


def test_called_methods_list_is_exactly_what_the_code_calls(published, trees):
    api, _ = published
    assert _all(trees, object_members) == set(trt_api.CALLED_METHODS)
    assert [pair for pair in trt_api.CALLED_METHODS if not api.member(*pair)] == []


def test_version_table_agrees_with_the_published_api(published):
    api, version = published
    for change in trt_api.CHANGES:
        if not change.name.startswith("json:"):
            published_there = api.has(tuple(change.name.split(".")))
            assert published_there == trt_api.available(change.name, version), (change.name, version)


def test_version_table_used_flags_match_the_code(trees):
    used = {".".join(c) for c in _all(trees, trt_chains)}
    used |= {f"{c}.{m}" for c, m in _all(trees, object_members)} | _all(trees, version_names)
    used |= {f"json:{key}" for key in trt_api.LAYER_DTYPE_KEYS}
    for change in trt_api.CHANGES:
        assert (change.name in used) == change.used, change.name


def test_version_checks_only_name_rows_of_the_table(trees):
    names = {change.name for change in trt_api.CHANGES}
    assert _all(trees, version_names) - names == set()  # a typo would silently count as "always available"


def test_available_and_needed_follow_the_table():
    assert trt_api.available("BuilderFlag.FP16", (10, 3)) and not trt_api.available("BuilderFlag.FP16", (11, 0))
    assert trt_api.needed("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", (8, 6))
    assert not trt_api.needed("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", (10, 3))
    assert trt_api.needed("NetworkDefinitionCreationFlag.STRONGLY_TYPED", (10, 3))
    assert not trt_api.needed("NetworkDefinitionCreationFlag.STRONGLY_TYPED", (11, 0))
    assert not trt_api.available("IBuilderConfig.progress_monitor", (8, 6))
    assert trt_api.available("Builder.create_network", (8, 5))  # not in the table: every version


def test_versions_parse_and_old_ones_are_refused():
    assert trt_api.parse_version("10.3.0.30") == (10, 3)
    assert trt_api.parse_version("8.5.2.2") == (8, 5)
    with pytest.raises(FcnEdgeError, match="too old"):
        trt_api.check_supported((8, 4))
    with pytest.raises(FcnEdgeError, match="MAJOR.MINOR"):
        trt_api.parse_version("unknown")


def test_tensorrt_stubs_do_not_pass_for_tensorrt(monkeypatch):
    """tensorrt-stubs installs an importable, empty ``tensorrt`` namespace: stand one in."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    with pytest.raises(FcnEdgeError, match="type stubs"):
        trt_api.import_tensorrt()


# ---------------------------------------------------------------- cuda-python and PyCUDA names


def test_every_cuda_python_name_we_use_exists_in_the_installed_cuda_python():
    from fcn_edge.backends.cuda.cuda_python import import_cuda_python

    modules = dict(zip(("driver", "runtime"), import_cuda_python()))
    tree = ast.parse(CUDA_PYTHON_SOURCE.read_text())
    chains = _outer_chains(tree, {"driver", "runtime", "self._runtime"})
    assert len(chains) > 25
    missing = []
    for root, module in modules.items():
        for chain in _outer_chains(tree, {root, f"self._{root}"}):
            target = module
            for attr in chain:
                target = getattr(target, attr, None)
            if target is None:
                missing.append(f"{root}.{'.'.join(chain)}")
    assert missing == []


def test_stream_handles_come_out_as_ints():
    from fcn_edge.backends.cuda.cuda_python import import_cuda_python, native_handle

    _, runtime = import_cuda_python()
    assert native_handle(runtime.cudaStream_t(1234)) == 1234


def test_pycuda_surface_is_listed_and_small():
    tree = ast.parse(PYCUDA_SOURCE.read_text())
    used = {".".join(chain) for chain in _outer_chains(tree, {"drv", "self._drv"})}
    assert used == set(pycuda_binding.SURFACE)
    try:
        import pycuda.driver as drv
    except ImportError:
        return  # PyCUDA needs the CUDA toolkit to build: the names are checked on GPU machines only
    for name in pycuda_binding.SURFACE + pycuda_binding.OBJECT_SURFACE:
        target = drv
        for attr in name.split("."):
            target = getattr(target, attr)


# ---------------------------------------------------------------- no GPU here: clear errors, fast


def test_cuda_python_without_a_device_says_so():
    if find_gpu()[0] is not None:
        pytest.skip("a CUDA GPU is visible: the no-device path cannot be exercised here")
    with pytest.raises(FcnEdgeError, match="no CUDA device"):
        open_cuda("cuda-python")
    with pytest.raises(FcnEdgeError, match="no CUDA device"):
        open_cuda("auto")


def test_unknown_or_missing_bindings_are_user_errors():
    with pytest.raises(FcnEdgeError, match="choose one of auto, cuda-python, pycuda"):
        open_cuda("cupy")
    if importlib.util.find_spec("pycuda") is None:
        with pytest.raises(FcnEdgeError, match="pip install pycuda"):
            open_cuda("pycuda")


def test_probe_says_what_is_missing_quickly():
    result = probe()
    if result.available:
        assert result.version and result.gpu_name and re.fullmatch(r"\d+\.\d+", result.compute_capability)
    else:
        assert "GPU" in result.reason or "tensorrt" in result.reason
        assert "\n" not in result.reason


def test_torch_fallback_reports_no_gpu_on_a_cpu_build():
    import torch

    if torch.cuda.is_available():
        pytest.skip("torch sees a GPU here")
    gpu, reason = cuda_module._find_gpu_torch()
    assert gpu is None and "torch.cuda.is_available() is False" in reason


def test_host_buffer_views_share_its_memory():
    freed = []
    buffer = HostBuffer(np.zeros(64, np.uint8), None, lambda: freed.append(True))
    frame = buffer.view(np.uint8, (2, 4, 3))
    frame[:] = 7
    assert buffer.array[:24].tolist() == [7] * 24 and buffer.array[24:].sum() == 0
    assert buffer.view(np.float32, (4,)).nbytes == 16
    buffer.free()
    buffer.free()
    assert freed == [True] and buffer.array is None


# ---------------------------------------------------------------- what a build does, per version


def _model(path: Path, *, qdq: bool = False, fp16: bool = False) -> Path:
    nodes = [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT)]
    initializers = []
    if qdq:
        initializers = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("z", TensorProto.INT8, [], [0])]
        nodes += [
            helper.make_node("QuantizeLinear", ["y", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["out"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["y"], ["out"]))
    out_type = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4, 4, 3])],
        [helper.make_tensor_value_info("out", out_type, [1, 4, 4, 3])], initializers,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_onnx_kinds_sees_qdq_and_fp16(tmp_path):
    assert onnx_kinds(_model(tmp_path / "fp32.onnx")) == frozenset()
    assert onnx_kinds(_model(tmp_path / "int8.onnx", qdq=True)) == {"qdq"}
    assert onnx_kinds(_model(tmp_path / "fp16.onnx", fp16=True)) == {"fp16"}
    (tmp_path / "junk.onnx").write_bytes(b"\x01\x02 not protobuf" * 8)
    with pytest.raises(FcnEdgeError, match="is not an ONNX model"):
        onnx_kinds(tmp_path / "junk.onnx")


QDQ, FP16, NONE = frozenset({"qdq"}), frozenset({"fp16"}), frozenset()


def test_tensorrt_10_builds_strongly_typed_from_the_precision_model():
    plan = plan_build((10, 3), TrtBuildOptions(precision="int8"), QDQ)
    assert plan.strongly_typed and plan.strongly_typed_flag and not plan.explicit_batch_flag
    assert not (plan.fp16_flag or plan.int8_flag or plan.calibrate_from_cache) and plan.progress_monitor
    assert plan_build((10, 3), TrtBuildOptions(precision="fp16"), FP16).strongly_typed
    with pytest.raises(FcnEdgeError, match="needs the Q/DQ model"):
        plan_build((10, 3), TrtBuildOptions(precision="int8"), NONE)
    with pytest.raises(FcnEdgeError, match="needs an FP16 ONNX"):
        plan_build((10, 3), TrtBuildOptions(precision="fp16"), NONE)
    with pytest.raises(FcnEdgeError, match="precision fp32 asked"):
        plan_build((10, 3), TrtBuildOptions(precision="fp32"), QDQ)


def test_tensorrt_10_weakly_typed_uses_flags_and_the_calibration_cache():
    options = TrtBuildOptions(precision="int8", strongly_typed=False, calibration_cache=Path("c.cache"))
    plan = plan_build((10, 3), options, NONE)
    assert not plan.strongly_typed and plan.int8_flag and plan.calibrate_from_cache and not plan.explicit_batch_flag
    assert plan.fp16_flag  # beside INT8: layers without INT8 scales run in FP16, not FP32


def test_tensorrt_8_uses_explicit_batch_and_precision_flags():
    plan = plan_build((8, 6), TrtBuildOptions(precision="fp16"), NONE)
    assert not plan.strongly_typed and plan.explicit_batch_flag and plan.fp16_flag and not plan.progress_monitor
    plan = plan_build((8, 5), TrtBuildOptions(precision="int8"), QDQ)
    assert plan.int8_flag and not plan.calibrate_from_cache
    with pytest.raises(FcnEdgeError, match="no strongly typed networks"):
        plan_build((8, 6), TrtBuildOptions(strongly_typed=True), NONE)
    with pytest.raises(FcnEdgeError, match="or a calibration cache"):
        plan_build((8, 6), TrtBuildOptions(precision="int8"), NONE)
    with pytest.raises(FcnEdgeError, match="drop the calibration cache"):
        plan_build((8, 6), TrtBuildOptions(precision="int8", calibration_cache=Path("c")), QDQ)
    with pytest.raises(FcnEdgeError, match=r"8\.6\+"):
        plan_build((8, 5), TrtBuildOptions(optimization_level=4), NONE)


def test_tensorrt_11_is_strongly_typed_only():
    plan = plan_build((11, 0), TrtBuildOptions(precision="int8"), QDQ)
    assert plan.strongly_typed and not plan.strongly_typed_flag  # the default there: no flag passed
    with pytest.raises(FcnEdgeError, match="strongly typed networks only"):
        plan_build((11, 0), TrtBuildOptions(precision="fp16", strongly_typed=False), NONE)
    with pytest.raises(FcnEdgeError, match="weakly typed INT8"):
        plan_build((11, 0), TrtBuildOptions(precision="int8", calibration_cache=Path("c")), QDQ)


def test_build_options_are_checked():
    with pytest.raises(FcnEdgeError, match="choose one of int8, fp16, fp32"):
        plan_build((10, 3), TrtBuildOptions(precision="fp8"), NONE)
    with pytest.raises(FcnEdgeError, match="--opt-level 7 must be 0 to 5"):  # ranges: checked once, by the build's options
        BuildOptions(opt_level=7)
    with pytest.raises(FcnEdgeError, match="--min-shape, --opt-shape and --max-shape go together"):
        BuildOptions(min_shape=(1, 64, 64, 3))
    with pytest.raises(FcnEdgeError, match="DLA runs FP16 and INT8 only"):
        plan_build((8, 6), TrtBuildOptions(dla_core=0), NONE)
    with pytest.raises(FcnEdgeError, match="too old"):
        plan_build((8, 2), TrtBuildOptions(), NONE)


FIXED = dict(min_shape=(1, 256, 512, 3), opt_shape=(1, 256, 512, 3), max_shape=(1, 256, 512, 3))


def test_dla_needs_a_release_with_dla_fp16_or_int8_and_one_fixed_shape():
    assert plan_build((10, 3, 0), TrtBuildOptions(precision="fp16", dla_core=0, **FIXED), FP16).strongly_typed
    assert plan_build((8, 5, 2), TrtBuildOptions(precision="int8", dla_core=1, **FIXED), QDQ).int8_flag
    assert plan_build((11, 4, 1), TrtBuildOptions(precision="int8", dla_core=0, **FIXED), QDQ).strongly_typed
    for release in [(10, 8, 0), (11, 0, 0), (11, 4, 0)]:  # 10.7 was the last 10.x with DLA; 11.4.0 has it on Windows on ARM only
        with pytest.raises(FcnEdgeError, match=r"has no DLA support .*TensorRT 10\.7 or older"):
            plan_build(release, TrtBuildOptions(precision="int8", dla_core=0, **FIXED), QDQ)
    with pytest.raises(FcnEdgeError, match="DLA needs one fixed input shape"):
        plan_build((10, 3, 0), TrtBuildOptions(precision="fp16", dla_core=0, min_shape=(1, 64, 64, 3), opt_shape=(1, 256, 512, 3),
                                               max_shape=(1, 512, 1024, 3)), FP16)  # fmt: skip
    with pytest.raises(FcnEdgeError, match="DLA runs FP16 and INT8 only"):
        plan_build((10, 3, 0), TrtBuildOptions(precision="fp32", dla_core=0, **FIXED), NONE)  # strongly typed too


def test_releases_parse_with_their_patch_and_members_go_with_their_class():
    assert trt_api.parse_release("11.4.1.2") == (11, 4, 1) and trt_api.parse_release("10.3") == (10, 3, 0)
    assert not trt_api.available("IInt8EntropyCalibrator2.get_batch", (11, 4))  # the class is gone, so are its methods
    assert trt_api.available("IProgressMonitor.__init__", (10, 3)) and not trt_api.available("IProgressMonitor.__init__", (8, 6))
    assert not trt_api.available("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", (11, 4))  # bindings 11.4.0 lack it


def test_profile_shapes_are_checked():
    assert profile_shapes(TrtBuildOptions()) is None
    shapes = profile_shapes(TrtBuildOptions(min_shape=(1, 64, 64, 3), opt_shape=(1, 256, 512, 3), max_shape=(4, 512, 1024, 3)))
    assert shapes == ((1, 64, 64, 3), (1, 256, 512, 3), (4, 512, 1024, 3))
    with pytest.raises(FcnEdgeError, match="all three"):
        profile_shapes(TrtBuildOptions(min_shape=(1, 3)))
    with pytest.raises(FcnEdgeError, match="min <= opt <= max"):
        profile_shapes(TrtBuildOptions(min_shape=(1, 512), opt_shape=(1, 256), max_shape=(1, 1024)))
    with pytest.raises(FcnEdgeError, match="different ranks"):
        profile_shapes(TrtBuildOptions(min_shape=(1, 2), opt_shape=(1, 2, 3), max_shape=(1, 2)))


def test_calibration_cache_must_match_the_tensorrt_version(tmp_path):
    cache = write_cache(tmp_path / "model.cache", {"frame": 127.0}, trt_version="10.3.0")
    assert read_calibration_cache(cache, "10.3.0.30").startswith(b"TRT-100300-EntropyCalibration2\n")
    with pytest.raises(FcnEdgeError, match="rewrite the cache for 8.6.1"):
        read_calibration_cache(cache, "8.6.1.6")
    (tmp_path / "junk.cache").write_text("not a cache\n")
    with pytest.raises(FcnEdgeError, match="not a TensorRT calibration cache"):
        read_calibration_cache(tmp_path / "junk.cache", "10.3.0")
    with pytest.raises(FcnEdgeError, match="not found"):
        read_calibration_cache(tmp_path / "missing.cache", "10.3.0")


def test_layer_precisions_read_10x_and_11x_inspector_json():
    def layer(*types, key="Format/Datatype"):
        return {"Name": "l", "LayerType": "x", "Inputs": [{key: t} for t in types], "Outputs": []}

    tensorrt_10 = {"Layers": [
        layer("Row major linear FP32"), layer("Channel major FP16 format where channel % 8 == 0"),
        layer("Int8 NC/32HW32"), layer("Row major Int8 format"), layer("Row major linear UInt8 format"),
        {"Name": "out", "Inputs": [], "Outputs": [{"Format/Datatype": "Row major linear Int32"}]},
    ], "Bindings": ["frame", "labels"]}  # fmt: skip
    assert layer_precisions(json.dumps(tensorrt_10)) == {"fp16": 1, "fp32": 1, "int32": 1, "int8": 2, "uint8": 1}
    tensorrt_11 = {"Layers": [layer("Half", key="DataType"), layer("Float", key="DataType"), layer("Int8", key="DataType")]}
    assert layer_precisions(json.dumps(tensorrt_11)) == {"fp16": 1, "fp32": 1, "int8": 1}
    assert layer_precisions(json.dumps({"Layers": ["conv1", "relu1"]})) == {"unknown": 2}  # names-only verbosity


# ---------------------------------------------------------------- the runner's refusal of foreign engines

AGX = DeviceInfo(0, "Orin", "8.7", True, 16, 62841)  # Jetson AGX Orin 64GB: 2 DLA cores


def test_engine_from_another_tensorrt_or_device_is_refused():
    sidecar = {"tensorrt_version": "10.3.0.30", "gpu_name": "Orin", "compute_capability": "8.7", "sm_count": 16,
               "memory_mb": 62841, "dla_cores": 2}  # fmt: skip
    check_engine_matches(sidecar, "10.3.0.30", AGX, 2, Path("m.engine"))
    with pytest.raises(
        FcnEdgeError, match=r"built with TensorRT 10\.3\.0\.30, this machine has 10\.7\.0.*rebuild with: fcn-edge build"
    ):
        check_engine_matches(sidecar, "10.7.0", AGX, 2, Path("m.engine"))
    with pytest.raises(FcnEdgeError, match=r"built for Orin \(compute 8\.7, 16 SMs.*RTX 4090.*rebuild with"):
        check_engine_matches(
            sidecar, "10.3.0.30", DeviceInfo(0, "NVIDIA GeForce RTX 4090", "8.9", False, 128, 24090), 0, Path("m.engine")
        )
    nano = DeviceInfo(0, "Orin", "8.7", True, 8, 7620)  # same name and compute capability as the AGX: every Orin is "Orin", 8.7
    with pytest.raises(FcnEdgeError, match=r"with 2 DLA cores, this machine has Orin \(compute 8\.7, 8 SMs, 7620 MB\) with 0"):
        check_engine_matches(sidecar, "10.3.0.30", nano, 0, Path("m.engine"))


def test_sidecar_sits_beside_the_engine_and_is_required(tmp_path):
    engine = tmp_path / "fcn.fp16.engine"
    assert sidecar_path(engine) == tmp_path / "fcn.fp16.engine.json"
    with pytest.raises(FcnEdgeError, match="does not exist: build it"):
        engine_facts(engine)
    engine.write_bytes(b"plan")
    with pytest.raises(FcnEdgeError, match="is missing.*rebuild with"):
        engine_facts(engine)
    sidecar_path(engine).write_text(json.dumps({"tensorrt_version": "10.3.0"}))
    with pytest.raises(FcnEdgeError, match="lacks gpu_name, compute_capability, sm_count, memory_mb, dla_cores"):
        engine_facts(engine)
    facts = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7", "sm_count": 16, "memory_mb": 62841,
             "dla_cores": 2}  # fmt: skip
    sidecar_path(engine).write_text(json.dumps({"format": "x", "engine": facts}))  # as build/pipeline.py nests them
    assert engine_facts(engine) == facts
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(FcnEdgeError, match="not valid JSON"):
        engine_facts(engine)
