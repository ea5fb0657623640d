#!/usr/bin/env python
"""Scaling: time and peak memory of `dmsae.train.train_sae` as tokens and width grow, and of `dmsae.distill.distill` as
cycles grow, with log-log fitted slopes (1 = linear; a slope near 0 = flat).

    python bench/bench_scaling.py [--quick]

`--quick` (used by `make bench`) writes `results/scaling-quick.md`, otherwise `results/scaling.md`.

Every point runs in a fresh process: peak memory = VmHWM - VmRSS, with VmHWM reset (`/proc/self/clear_refs`) after
imports and opening the data, so it counts what training (or distillation) itself allocates. Training streams from the
tiny activation cache (64k rows, built on first use), cycling through it when more tokens are asked for. Distillation
runs in a temporary DMSAE_HOME (the corpus and the converted model are linked in) at tiny sizes; its caches are built by
a warm-up run before any timed point.
"""
import os, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ENV_DEFAULTS
for _k, _v in ENV_DEFAULTS.items(): os.environ.setdefault(_k, _v)
import argparse, json, math, subprocess, tempfile, time
from common import reset_peak, rss, shared_home, smollm2_tiny, table, write_result

def child_train(spec):
    "One training point: whole-call time, steady step time and peak memory."
    from dmsae.activations import build_activation_cache
    from dmsae.train import train_sae
    cfg = smollm2_tiny(d_sae=spec["F"], k=spec["k"], batch_size=spec["B"], checkpoint_every=10**9)
    src = build_activation_cache(smollm2_tiny(), "train", progress=False)
    next(iter(src.batches(spec["B"], seed=0)))                       # touch the loader once before the baseline
    with tempfile.TemporaryDirectory() as out:
        base = rss("VmRSS")
        reset_peak()
        ts = []
        cb = lambda step, sae: ts.append(time.perf_counter())
        t0 = time.perf_counter()
        train_sae(cfg, src, out, n_steps=spec["steps"], progress=False, callback=cb)
        dt = time.perf_counter() - t0
    step_s = (ts[-1] - ts[len(ts) // 4]) / (len(ts) - 1 - len(ts) // 4)   # steady state: after the first quarter
    return dict(s=dt, step_s=step_s, peak_MB=rss("VmHWM") - base, base_MB=base)

def child_prep(spec):
    "Build the distillation's caches and compute the clean loss once, before any timed point."
    from dmsae.distill import _data
    from dmsae.attribution import clean_loss
    cfg = smollm2_tiny(**spec["cfg"])
    lm, train, held, htok = _data(cfg)
    return dict(loss=clean_loss(lm, held, htok, cfg.hook_layer, cfg.attribution_batch_contexts))

def child_distill(spec):
    "One distillation point: time, peak memory, the cycles' own timers and core sizes."
    from dmsae.model import load_lm
    from dmsae.distill import distill
    cfg = smollm2_tiny(**spec["cfg"])
    lm = load_lm(cfg.model_name)
    with tempfile.TemporaryDirectory() as out:
        base = rss("VmRSS")
        reset_peak()
        t0 = time.perf_counter()
        r = distill(cfg, lm, run_dir=out, progress=False)
        dt = time.perf_counter() - t0
    return dict(s=dt, peak_MB=rss("VmHWM") - base, base_MB=base, train_s=sum(x["train_s"] for x in r.records),
                attribute_s=sum(x["attribute_s"] for x in r.records), cores=[x["core_out"] for x in r.records])

def run(kind, spec, env=None):
    "Run one point in a fresh process (this script with `--_child`); its result dict."
    r = subprocess.run([sys.executable, __file__, "--_child", kind, json.dumps(spec)], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if r.returncode != 0: raise RuntimeError(f"{kind} {spec} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def slope(xs, ys):
    "Least-squares slope of log y against log x."
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)

def tokens_series(steps, B, F0, K, loads, T0):
    "Training vs tokens (width and batch fixed)."
    rows = []
    for n in steps:
        r = run("train", dict(F=F0, k=K, B=B, steps=n))
        loads.append(os.getloadavg()[0])
        rows.append(dict(tokens=n * B, steps=n, seconds=r["s"], tokens_per_s=n * B / r["s"], steady_step_s=r["step_s"],
                         peak_MB=r["peak_MB"]))
        print(rows[-1], f"[{time.perf_counter() - T0:.0f}s]", flush=True)
    return rows

def width_series(widths, wsteps, B, K, loads, T0):
    "Training vs width (tokens fixed)."
    rows = []
    for F in widths:
        r = run("train", dict(F=F, k=K, B=B, steps=wsteps))
        loads.append(os.getloadavg()[0])
        rows.append(dict(d_sae=F, tokens=wsteps * B, seconds=r["s"], s_per_step=r["s"] / wsteps,
                         steady_step_s=r["step_s"], peak_MB=r["peak_MB"], params_grads_adam_MB=8 * F * 576 * 4 / 2**20))
        print(rows[-1], f"[{time.perf_counter() - T0:.0f}s]", flush=True)
    return rows

def cycles_series(cycles, dcfg, loads, T0):
    "Distillation vs cycles (tiny sizes, in a scratch DMSAE_HOME)."
    from dmsae.config import dmsae_home
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(DMSAE_HOME=str(shared_home(Path(tmp) / "home", dmsae_home())))
        run("prep", dict(cfg=dcfg), env)                                 # builds the caches and the clean loss once
        for n in cycles:
            r = run("distill", dict(cfg={**dcfg, "n_cycles": n}), env)
            loads.append(os.getloadavg()[0])
            rows.append(dict(cycles=n, trainings=n + 1, seconds=r["s"], train_s=r["train_s"],
                             attribute_s=r["attribute_s"], s_per_training=r["s"] / (n + 1), peak_MB=r["peak_MB"],
                             core_sizes=str(r["cores"])))
            print(rows[-1], f"[{time.perf_counter() - T0:.0f}s]", flush=True)
    return rows

def slopes(tok_rows, w_rows, c_rows):
    "The fitted log-log slopes of time and memory against each size."
    fit = lambda rows, x, y: slope([r[x] for r in rows], [r[y] for r in rows])
    return [dict(what="train time vs tokens", slope=fit(tok_rows, "tokens", "seconds")),
            dict(what="train peak memory vs tokens", slope=fit(tok_rows, "tokens", "peak_MB")),
            dict(what="train time vs width", slope=fit(w_rows, "d_sae", "seconds")),
            dict(what="train steady-state step time vs width", slope=fit(w_rows, "d_sae", "steady_step_s")),
            dict(what="train peak memory vs width", slope=fit(w_rows, "d_sae", "peak_MB")),
            dict(what="distill time vs trainings (cycles + 1)", slope=fit(c_rows, "trainings", "seconds")),
            dict(what="distill peak memory vs trainings", slope=fit(c_rows, "trainings", "peak_MB"))]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller points (for `make bench`)")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        kind, spec = a._child[0], json.loads(a._child[1])
        print(json.dumps(dict(train=child_train, distill=child_distill, prep=child_prep)[kind](spec)))
        return
    T0 = time.perf_counter()
    loads = []
    B, F0, K = 1024, 1024, 32
    tok_rows = tokens_series([16, 64, 256] if a.quick else [64, 256, 1024], B, F0, K, loads, T0)
    wsteps = 12 if a.quick else 32
    w_rows = width_series([1024, 4096, 16384] if a.quick else [1024, 4096, 16384, 65536], wsteps, B, K, loads, T0)
    dcfg = dict(n_train_tokens=16_384, n_heldout_tokens=512 if a.quick else 1_024, d_sae=512, k=16, batch_size=1024,
                shard_tokens=16_384)
    c_rows = cycles_series([0, 1, 2] if a.quick else [0, 1, 3], dcfg, loads, T0)
    sl = slopes(tok_rows, w_rows, c_rows)
    print(table(sl), flush=True)
    body = (f"Load average (1 min) after each point: {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} cores "
            f"(shared machine); each point is one run, so single points are noisy.\n\n"
            f"### Fitted log-log slopes (time or memory ∝ size^slope)\n\n" + table(sl) +
            f"\n\n### Training vs tokens (d_sae {F0}, k {K}, batch {B}, tiny cache streamed)\n\n" + table(tok_rows) +
            f"\n\n### Training vs width ({wsteps} steps of {B} tokens, k {K})\n\n" + table(w_rows) +
            f"\n\n`seconds` = the whole `train_sae` call (input scale, geometric-median init, steps, saving); "
            f"`steady_step_s` = mean step time after the first quarter of the steps (from the per-step callback).\n\n"
            f"`params_grads_adam_MB` = 8·F·576 float32 (W_enc, W_dec, gradients, two Adam moments), for reference.\n\n"
            f"### Distillation vs cycles (tiny: {dcfg['n_train_tokens']:,} training tokens, "
            f"{dcfg['n_heldout_tokens']:,} held-out tokens, d_sae {dcfg['d_sae']}, k {dcfg['k']}, "
            f"batch {dcfg['batch_size']})\n\n" + table(c_rows) +
            f"\n\n`seconds` = the `distill` call (caches already built, language model loaded); "
            f"`train_s`/`attribute_s` = the cycles' own timers.\n\nWhole script: {time.perf_counter() - T0:.0f}s.")
    write_result("scaling", a.quick, "Scaling of time and memory with tokens, width and cycles", body)

if __name__ == "__main__": main()
