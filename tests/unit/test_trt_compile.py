"""A TensorRT build's latency is timed on the engine through the runner, on FAKES (tests/unit/trt_fakes.py).

The automatic choice itself runs end to end on the TensorRT stand-in (tests/integration/test_tensorrt_standin.py).
"""

from __future__ import annotations

import numpy as np

from fcn_edge.backends.tensorrt import api as trt_api
from fcn_edge.backends.tensorrt import runner as runner_module
from fcn_edge.backends.tensorrt import timing
from trt_fakes import FACTS as DEVICE_FACTS, NumpyCuda, engine_bytes, fake_tensorrt

FACTS = {"tensorrt_version": "10.3.0.30", **DEVICE_FACTS}


def test_engine_latency_is_measured_through_the_runner_on_frame_pool_memory(tmp_path, monkeypatch):
    cuda = NumpyCuda()
    monkeypatch.setattr(trt_api, "import_tensorrt", lambda: fake_tensorrt(cuda))
    monkeypatch.setattr(runner_module, "open_cuda", lambda binding: cuda)
    engine = tmp_path / "m.int8.engine"
    engine.write_bytes(engine_bytes((1, 16, 16, 3), (1, 64, 96, 3), (1, 64, 96, 3)))
    frame = np.zeros((64, 96, 3), np.uint8)
    assert timing.median_latency_ms(engine, FACTS, frame, runs=3, warmup=1) > 0
    assert cuda.closed and not [c for c in cuda.calls if c[0] == "htod" and c[1] != frame.nbytes]
