from harness import *
from fcn_edge.quantize import sensitivity
from fcn_edge.quantize.layer_error import layer_errors
from scipy.stats import spearmanr
name, method, target = sys.argv[1], sys.argv[2], float(sys.argv[3])
prep = Path(sys.argv[4]) if len(sys.argv) > 4 else None
c = Case(name); prep = prep or c.prepared
r = c.ranges(prep, method)
plain = c.quant(prep, r, path=c.dir / f'splain.onnx')
print('plain', c.report(plain), flush=True)
cands = qdq.quantizable_nodes(onnx.load(str(prep)))
errs = layer_errors(onnx.load(str(prep)), onnx.load(str(plain)), cands, c.feeds[:8], progress=False)
cal_ref = real_models.run_onnx(prep, c.cal)
t = time.time(); single = {}
for n in cands:
    p = c.quant(prep, r, [x for x in cands if x != n], path=c.dir / 'single.onnx')
    out = real_models.run_onnx(p, c.cal)
    single[n] = (float(((out > .5) != (cal_ref > .5)).mean()), float(np.abs(out - cal_ref).mean()))
print('single-node pass', round(time.time() - t), 's')
json.dump(dict(errs=errs, single=single), open(c.dir / f'rank_{method}.json', 'w'))
common = [n for n in cands if n in errs]
print('spearman noise vs single flips', spearmanr([errs[n] for n in common], [single[n][0] for n in common])[0],
      'noise vs single dprob', spearmanr([errs[n] for n in common], [single[n][1] for n in common])[0])
rankings = {'noise': sensitivity.rank(errs, cands),
            'single_flips': sorted(cands, key=lambda n: -single[n][0]),
            'single_dprob': sorted(cands, key=lambda n: -single[n][1])}
convs = {n.name for n in onnx.load(str(prep)).graph.node if n.op_type in ('Conv', 'ConvTranspose')}
for label, ranking in [(k, v) for k, v in rankings.items() if k != "single_dprob"]:
    def meets(ex):
        p = c.quant(prep, r, ex, path=c.dir / 'trial.onnx'); return c.agree(p)[0] >= target
    res = sensitivity.fewest_in_float(ranking, meets, 600)
    final = c.quant(prep, r, res.kept_float, path=c.dir / f'searched_{label}.onnx')
    print(label, 'kept float', len(res.kept_float), 'of which convs', len(set(res.kept_float) & convs), c.report(final), 'trials', len(res.trials), 'top', ranking[:6], flush=True)
