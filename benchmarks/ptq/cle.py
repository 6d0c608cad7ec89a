from harness import *
from fcn_edge.quantize import equalize
for name in sys.argv[1].split(','):
    c = Case(name)
    m = onnx.load(str(c.prepared)); pairs = equalize.equalize(m)
    path = c.dir / 'cle.onnx'; onnx.save(m, path)
    ref2 = real_models.run_onnx(path, c.held)
    print(name, len(pairs), pairs[:4], 'max |fp32 diff|', float(np.abs(ref2 - c.ref).max()))
    for meth in sys.argv[2].split(','):
        r0 = c.ranges(c.prepared, meth); r = c.ranges(path, meth)
        print(name, meth, 'plain', c.report(c.quant(c.prepared, r0)), 'CLE', c.report(c.quant(path, r)), flush=True)
