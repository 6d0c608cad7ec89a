from harness import *
import sys
for name in sys.argv[1:]:
    c = Case(name)
    for m in ["max", "percentile", "entropy"]:
        t=time.time(); r = c.ranges(c.prepared, m)
        p = c.quant(c.prepared, r)
        from collections import Counter
        print(name, m, c.report(p), round(time.time()-t,1), flush=True)
