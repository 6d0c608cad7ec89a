from harness import *
from fcn_edge.quantize import bias_correction
for name in sys.argv[1].split(','):
    c = Case(name)
    for m in sys.argv[2].split(','):
        r = c.ranges(c.prepared, m)
        plain = c.quant(c.prepared, r)
        out = c.dir / f'bc_{m}.onnx'
        t = time.time()
        bias_correction.correct(c.prepared, plain, out, c.feeds)
        el = time.time() - t
        p = c.quant(out, r)
        print(name, m, 'plain', c.report(plain), 'bc', c.report(p), round(el, 1), flush=True)
