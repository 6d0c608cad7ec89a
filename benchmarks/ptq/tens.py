from harness import *
from fcn_edge.quantize import placement
name, method = sys.argv[1], sys.argv[2]
c = Case(name)
r = c.ranges(c.prepared, method)
plain = c.quant(c.prepared, r, path=c.dir / 'tplain.onnx')
base = onnx.load(str(plain))
consts = {t.name for t in base.graph.initializer}
prod = {o: n for n in base.graph.node for o in n.output}
acts = sorted({n.input[0] for n in base.graph.node if n.op_type == 'QuantizeLinear' and n.input[0] not in consts})
prep = onnx.load(str(c.prepared))
fw = {}
def strip(keep_acts, float_weights):
    q = onnx.load(str(plain))
    prod = {o: n for n in q.graph.node for o in n.output}
    for node in q.graph.node:
        if node.op_type in ('QuantizeLinear', 'DequantizeLinear'): continue
        for i, t in enumerate(node.input):
            dq = prod.get(t)
            if dq is None or dq.op_type != 'DequantizeLinear': continue
            src = dq.input[0]
            if src not in consts and prod[src].input[0] not in keep_acts:
                node.input[i] = prod[src].input[0]
            if float_weights and src in consts and i == 1:
                pn = next(n for n in prep.graph.node if n.name == node.name)
                node.input[i] = pn.input[1]
                q.graph.initializer.append(next(x for x in prep.graph.initializer if x.name == pn.input[1]))
    placement._drop_unused(q.graph)
    return q
ref = real_models.run_onnx(c.prepared, c.cal)
res = {}
for t in acts:
    out = real_models.run_onnx(strip({t}, True), c.cal)
    res[t] = (float(((out > .5) != (ref > .5)).mean()), float(np.abs(out - ref).mean()))
worst = sorted(res, key=lambda t: -res[t][1])
for t in worst[:15]:
    print(t, [round(x, 4) for x in res[t]], 'low', round(r.low[t], 2), 'high', round(r.high[t], 2), 'amax', round(r.amax[t], 3), 'readers', [n.op_type for n in base.graph.node if t in n.input])
json.dump(res, open(c.dir / f'tens_{method}.json', 'w'))
