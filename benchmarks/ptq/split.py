from harness import *
from fcn_edge.quantize import placement
import onnx
name, m = sys.argv[1], sys.argv[2]
c = Case(name)
r = c.ranges(c.prepared, m)
plain = c.quant(c.prepared, r)
prep = onnx.load(str(c.prepared))
fw = {t.name for t in prep.graph.initializer}
def strip(kind):
    q = onnx.load(str(plain))
    prod = {o: n for n in q.graph.node for o in n.output}
    consts = {t.name for t in q.graph.initializer}
    for node in q.graph.node:
        if node.op_type in ('QuantizeLinear', 'DequantizeLinear'): continue
        for i, t in enumerate(node.input):
            dq = prod.get(t)
            if dq is None or dq.op_type != 'DequantizeLinear': continue
            src = dq.input[0]
            if kind == 'act' and src not in consts:
                node.input[i] = prod[src].input[0]
            if kind == 'weight' and src in consts and i == 1:
                # float weight: the prepared initializer with the same conv
                pn = next(n for n in prep.graph.node if n.name == node.name)
                node.input[i] = pn.input[1]
                q.graph.initializer.append(next(x for x in prep.graph.initializer if x.name == pn.input[1]))
    placement._drop_unused(q.graph)
    path = c.dir / f'strip_{kind}.onnx'; onnx.save(q, path); return path
print(name, m, 'plain', c.report(plain))
print('activations float (weights int8):', c.report(strip('act')))
print('weights float (activations int8):', c.report(strip('weight')))
