from harness import *
from fcn_edge.quantize import rounding
for name in sys.argv[1].split(','):
    c = Case(name)
    prep = onnx.load(str(c.prepared))
    t = time.time(); H = rounding.hessians(prep, c.feeds); th = time.time() - t
    for m in sys.argv[2].split(','):
        r = c.ranges(c.prepared, m)
        for placement in ('onnxruntime', 'tensorrt'):
            plain = c.quant(c.prepared, r, placement=placement)
            q = onnx.load(str(plain)); t = time.time()
            changed = rounding.apply(q, prep, H); ta = time.time() - t
            path = c.dir / f'rnd_{m}_{placement}.onnx'; onnx.save(q, path)
            print(name, m, placement, 'plain', c.report(plain), 'gptq', c.report(path), len(changed), f'H {th:.1f}s apply {ta:.1f}s', flush=True)
