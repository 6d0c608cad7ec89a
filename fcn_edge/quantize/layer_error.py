"""How much error each quantized node adds on its own, measured in one pass per image.

Ranking layers by building and evaluating one Q/DQ model per layer costs a full model
evaluation per layer: past 7 minutes for FCN-ResNet50 on 2 cores. Here one "probe" graph
holds the FP32 model plus, for every candidate node, a copy of that node reading
fake-quantized versions of its float inputs (the same Q/DQ scales and quantized weights as
the INT8 model) and, where the INT8 model quantizes its output, fake-quantizing that too.
One run per image yields each node's float output and its quantized twin side by side, so
ranking all nodes costs about two FP32 passes per image whatever their number.

The score is the noise-to-signal ratio ``sum((quantized - float)^2) / sum(float^2)`` of
each node's output: the local error the node's quantization adds given exact inputs. It is
a proxy for its effect on the labels, which is why the search (:mod:`.sensitivity`)
verifies every choice on real images rather than trusting the ranking. The probe graph is
no artifact: a plain ONNX Runtime session runs it (artifacts are verified through the
stream's runners, :mod:`fcn_edge.compile.verify`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from tqdm import tqdm

from ..backends.onnxruntime.session import apply_thread_policy
from ..scratch import scratch_folder

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


class _Probe:
    """Builds the probe graph: the FP32 graph plus one quantized twin per candidate node."""

    def __init__(self, prepared: onnx.ModelProto, quantized: onnx.ModelProto):
        self.model = onnx.ModelProto()
        self.model.CopyFrom(prepared)
        del self.model.opset_import[:]  # the quantizer may raise the opset (per-channel DequantizeLinear needs 13)
        self.model.opset_import.extend(quantized.opset_import)
        self.float_tensors = {o for n in prepared.graph.node for o in n.output} | {i.name for i in prepared.graph.input}
        self.float_initializers = {t.name for t in prepared.graph.initializer}
        self.float_nodes = {n.name: n for n in prepared.graph.node if n.name}
        self.q_nodes = {n.name: n for n in quantized.graph.node if n.name}
        self.q_producer = {o: n for n in quantized.graph.node for o in n.output}
        self.q_consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in quantized.graph.node:
            for name in node.input:
                self.q_consumers.setdefault(name, []).append(node)
        self.q_initializers = {t.name: t for t in quantized.graph.initializer}
        self.copied: set[str] = set()
        self.pairs: dict[str, list[tuple[str, str]]] = {}  # node -> (float output, quantized twin)

    def add(self, name: str, index: int) -> None:
        node, float_node = self.q_nodes.get(name), self.float_nodes.get(name)
        if node is None or float_node is None or node.op_type in QDQ_OPS:
            return
        prefix = f"fcn_edge_probe{index}/"
        inputs = [self._input(name, prefix) for name in node.input]
        if any(i is None for i in inputs):
            return  # an input this graph cannot reproduce (rewired by a placement rule): leave the node unranked
        twin = onnx.NodeProto()
        twin.CopyFrom(node)
        twin.name = prefix + node.name
        del twin.input[:], twin.output[:]
        twin.input.extend(inputs)
        twin.output.extend(prefix + o for o in node.output)
        self.model.graph.node.append(twin)
        # the quantizer renames an output it quantizes (the Q/DQ after it takes the name): pair them by position
        self.pairs[name] = [(exact, self._output(out, prefix)) for out, exact in zip(node.output, float_node.output) if exact]

    def _input(self, tensor: str, prefix: str) -> str | None:
        """The twin's version of ``tensor``: fake-quantized as the INT8 model has it, or the float tensor itself."""
        if not tensor:
            return tensor
        dq = self.q_producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            if tensor in self.float_tensors or tensor in self.float_initializers:
                return tensor
            # a constant only the INT8 model has (a float weight of placement's float_weights rule): copy it
            return self._copy_initializer(tensor, prefix) if tensor in self.q_initializers else None
        source = dq.input[0]
        q = self.q_producer.get(source)
        if q is not None and q.op_type == "QuantizeLinear":  # an activation: re-quantize the float one here
            if q.input[0] not in self.float_tensors:
                return None
            quantized = self._copy_node(q, prefix, {q.input[0]: q.input[0]})
        else:  # a constant: the quantized weights or bias
            quantized = self._copy_initializer(source, prefix)
        return self._copy_node(dq, prefix, {source: quantized})

    def _output(self, tensor: str, prefix: str) -> str:
        """The twin's output, fake-quantized when the INT8 model quantizes that tensor."""
        q = next((c for c in self.q_consumers.get(tensor, []) if c.op_type == "QuantizeLinear"), None)
        twin = prefix + tensor
        if q is None:
            return twin
        dq = next((c for c in self.q_consumers.get(q.output[0], []) if c.op_type == "DequantizeLinear"), None)
        if dq is None:
            return twin
        quantized = self._copy_node(q, prefix + "out/", {q.input[0]: twin})
        return self._copy_node(dq, prefix + "out/", {q.output[0]: quantized})

    def _copy_node(self, node: onnx.NodeProto, prefix: str, inputs: dict[str, str]) -> str:
        """Copy a Q or DQ node with its constant inputs, once per prefix; returns its (renamed) output."""
        if prefix + node.output[0] in self.copied:
            return prefix + node.output[0]
        self.copied.add(prefix + node.output[0])
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + (node.name or node.output[0])
        for i, name in enumerate(node.input):
            copy.input[i] = inputs[name] if name in inputs else self._copy_initializer(name, prefix)
        copy.output[0] = prefix + node.output[0]
        self.model.graph.node.append(copy)
        return copy.output[0]

    def _copy_initializer(self, name: str, prefix: str) -> str:
        if not name or name not in self.q_initializers:
            return name
        if prefix + name not in self.copied:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(self.q_initializers[name])
            tensor.name = prefix + name
            self.model.graph.initializer.append(tensor)
            self.copied.add(prefix + name)
        return prefix + name

    def outputs(self) -> list[str]:
        return [name for pairs in self.pairs.values() for pair in pairs for name in pair]


def layer_errors(
    prepared: onnx.ModelProto,
    quantized: onnx.ModelProto,
    candidates: Sequence[str],
    feeds: Sequence[dict[str, np.ndarray]],
    threads: int = 2,
    progress: bool = True,
) -> dict[str, float]:
    """Noise-to-signal ratio of each candidate node of ``quantized`` alone, on ``feeds`` (see the module docstring).

    ``prepared`` is the FP32 graph ``quantized`` was made from (same node and tensor names).
    Candidates whose inputs cannot be reproduced get no score (the caller ranks them last).
    """
    probe = _Probe(prepared, quantized)
    for index, name in enumerate(candidates):
        probe.add(name, index)
    names = probe.outputs()
    existing = {o.name for o in probe.model.graph.output}
    probe.model.graph.output.extend(
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names if n not in existing
    )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # folds the weight DQs; keeps every output
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    apply_thread_policy(options)
    with scratch_folder("probe") as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save_model(probe.model, path)  # a path, not bytes: models over 2 GB serialise only to files
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    noise = dict.fromkeys(probe.pairs, 0.0)
    signal = dict.fromkeys(probe.pairs, 0.0)
    for feed in tqdm(feeds, desc="rank layers: one pass per image", leave=False, disable=not progress):
        values = dict(zip(names, session.run(names, feed)))
        for node, pairs in probe.pairs.items():
            for exact, twin in pairs:
                reference = values[exact].astype(np.float64)
                noise[node] += float(np.square(values[twin] - reference).sum())
                signal[node] += float(np.square(reference).sum())
    return {node: noise[node] / max(signal[node], 1e-30) for node in probe.pairs}
