#!/usr/bin/env python
"""Scaling: time and peak memory of `dmsae.train.train_sae` as tokens and width grow, and of `dmsae.distill.distill` as
cycles grow, with log-log fitted slopes (1 = linear; a slope near 0 = flat).

    python bench/bench_scaling.py [--quick]

`--quick` (used by `make bench`) writes `results/scaling-quick.md`, otherwise `results/scaling.md`.

Every point runs in a fresh process: peak memory = VmHWM - VmRSS, with VmHWM reset (`/proc/self/clear_refs`) after imports
and opening the data, so it counts what training (or distillation) itself allocates. Training streams from the tiny
activation cache (64k rows, built on first use), cycling through it when more tokens are asked for. Distillation runs in a
temporary DMSAE_HOME (the corpus and the converted model are linked in) at tiny sizes; its caches are built by a warm-up
run before any timed point.
"""
import os
for _k, _v in dict(OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled").items():
    os.environ.setdefault(_k, _v)
import argparse, json, math, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write

def _rss(k): return int(next(l for l in open("/proc/self/status") if l.startswith(k)).split()[1]) / 1024

def child_train(spec):
    import torch
    from dmsae.config import get_config
    from dmsae.activations import build_activation_cache
    from dmsae.train import train_sae
    cfg = get_config("tiny", d_sae=spec["F"], k=spec["k"], batch_size=spec["B"], checkpoint_every=10**9)
    src = build_activation_cache(get_config("tiny"), "train", progress=False)
    next(iter(src.batches(spec["B"], seed=0)))                       # touch the loader once before the baseline
    with tempfile.TemporaryDirectory() as out:
        base = _rss("VmRSS"); open("/proc/self/clear_refs", "w").write("5")
        ts = []; cb = lambda step, sae: ts.append(time.perf_counter())
        t0 = time.perf_counter(); train_sae(cfg, src, out, n_steps=spec["steps"], progress=False, callback=cb); dt = time.perf_counter() - t0
    step_s = (ts[-1] - ts[len(ts) // 4]) / (len(ts) - 1 - len(ts) // 4)   # steady state: after the first quarter of the steps
    return dict(s=dt, step_s=step_s, peak_MB=_rss("VmHWM") - base, base_MB=base)

def child_prep(spec):
    from dmsae.config import get_config
    from dmsae.distill import _data
    from dmsae.attribution import clean_loss
    cfg = get_config("tiny", **spec["cfg"])
    lm, train, held, htok = _data(cfg)
    return dict(loss=clean_loss(lm, held, htok, cfg.hook_layer, cfg.attribution_batch_contexts))

def child_distill(spec):
    from dmsae.config import get_config
    from dmsae.model import load_lm
    from dmsae.distill import distill
    cfg = get_config("tiny", **spec["cfg"])
    lm = load_lm(cfg.model_name)
    with tempfile.TemporaryDirectory() as out:
        base = _rss("VmRSS"); open("/proc/self/clear_refs", "w").write("5")
        t0 = time.perf_counter(); r = distill(cfg, lm, run_dir=out, progress=False); dt = time.perf_counter() - t0
    return dict(s=dt, peak_MB=_rss("VmHWM") - base, base_MB=base, train_s=sum(x["train_s"] for x in r.records),
                attribute_s=sum(x["attribute_s"] for x in r.records), cores=[x["core_out"] for x in r.records])

def run(kind, spec, env=None):
    r = subprocess.run([sys.executable, __file__, "--_child", kind, json.dumps(spec)], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if r.returncode != 0: raise RuntimeError(f"{kind} {spec} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def slope(xs, ys):
    "Least-squares slope of log y against log x."
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller points (for `make bench`)")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        kind, spec = a._child[0], json.loads(a._child[1])
        print(json.dumps(dict(train=child_train, distill=child_distill, prep=child_prep)[kind](spec))); return
    T0 = time.perf_counter(); loads = []
    # --- tokens (width and batch fixed)
    B, F0, K = 1024, 1024, 32
    steps = [16, 64, 256] if a.quick else [64, 256, 1024]
    tok_rows = []
    for n in steps:
        r = run("train", dict(F=F0, k=K, B=B, steps=n)); loads.append(os.getloadavg()[0])
        tok_rows.append(dict(tokens=n * B, steps=n, seconds=r["s"], tokens_per_s=n * B / r["s"], steady_step_s=r["step_s"], peak_MB=r["peak_MB"]))
        print(tok_rows[-1], f"[{time.perf_counter() - T0:.0f}s]", flush=True)
    # --- width (tokens fixed)
    widths = [1024, 4096, 16384] if a.quick else [1024, 4096, 16384, 65536]
    wsteps = 12 if a.quick else 32
    w_rows = []
    for F in widths:
        r = run("train", dict(F=F, k=K, B=B, steps=wsteps)); loads.append(os.getloadavg()[0])
        w_rows.append(dict(d_sae=F, tokens=wsteps * B, seconds=r["s"], s_per_step=r["s"] / wsteps, steady_step_s=r["step_s"], peak_MB=r["peak_MB"],
                           params_grads_adam_MB=8 * F * 576 * 4 / 2**20))
        print(w_rows[-1], f"[{time.perf_counter() - T0:.0f}s]", flush=True)
    # --- distillation cycles (tiny sizes, own DMSAE_HOME)
    from dmsae.config import dmsae_home
    real = dmsae_home()
    dcfg = dict(n_train_tokens=16_384, n_heldout_tokens=512 if a.quick else 1_024, d_sae=512, k=16, batch_size=1024, shard_tokens=16_384)
    cycles = [0, 1, 2] if a.quick else [0, 1, 3]
    c_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"; home.mkdir()
        for sub in ("corpus", "models"): (home / sub).symlink_to(real / sub)
        env = dict(DMSAE_HOME=str(home))
        run("prep", dict(cfg=dcfg), env)                                 # builds the caches and the clean loss once
        for n in cycles:
            r = run("distill", dict(cfg={**dcfg, "n_cycles": n}), env); loads.append(os.getloadavg()[0])
            c_rows.append(dict(cycles=n, trainings=n + 1, seconds=r["s"], train_s=r["train_s"], attribute_s=r["attribute_s"],
                               s_per_training=r["s"] / (n + 1), peak_MB=r["peak_MB"], core_sizes=str(r["cores"])))
            print(c_rows[-1], f"[{time.perf_counter() - T0:.0f}s]", flush=True)
    sl = [dict(what="train time vs tokens", slope=slope([r["tokens"] for r in tok_rows], [r["seconds"] for r in tok_rows])),
          dict(what="train peak memory vs tokens", slope=slope([r["tokens"] for r in tok_rows], [r["peak_MB"] for r in tok_rows])),
          dict(what="train time vs width", slope=slope([r["d_sae"] for r in w_rows], [r["seconds"] for r in w_rows])),
          dict(what="train steady-state step time vs width", slope=slope([r["d_sae"] for r in w_rows], [r["steady_step_s"] for r in w_rows])),
          dict(what="train peak memory vs width", slope=slope([r["d_sae"] for r in w_rows], [r["peak_MB"] for r in w_rows])),
          dict(what="distill time vs trainings (cycles + 1)", slope=slope([r["trainings"] for r in c_rows], [r["seconds"] for r in c_rows])),
          dict(what="distill peak memory vs trainings", slope=slope([r["trainings"] for r in c_rows], [r["peak_MB"] for r in c_rows]))]
    print(table(sl), flush=True)
    body = (f"Load average (1 min) after each point: {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} cores (shared machine); "
            f"each point is one run, so single points are noisy.\n\n"
            f"### Fitted log-log slopes (time or memory ∝ size^slope)\n\n" + table(sl) +
            f"\n\n### Training vs tokens (d_sae {F0}, k {K}, batch {B}, tiny cache streamed)\n\n" + table(tok_rows) +
            f"\n\n### Training vs width ({wsteps} steps of {B} tokens, k {K})\n\n" + table(w_rows) +
            f"\n\n`seconds` = the whole `train_sae` call (input scale, geometric-median init, steps, saving); `steady_step_s` = "
            f"mean step time after the first quarter of the steps (from the per-step callback).\n\n`params_grads_adam_MB` = 8·F·576 float32 (W_enc, W_dec, gradients, two Adam moments), for reference.\n\n"
            f"### Distillation vs cycles (tiny: {dcfg['n_train_tokens']:,} training tokens, {dcfg['n_heldout_tokens']:,} held-out "
            f"tokens, d_sae {dcfg['d_sae']}, k {dcfg['k']}, batch {dcfg['batch_size']})\n\n" + table(c_rows) +
            f"\n\n`seconds` = the `distill` call (caches already built, language model loaded); `train_s`/`attribute_s` = the "
            f"cycles' own timers.\n\nWhole script: {time.perf_counter() - T0:.0f}s.")
    write("scaling-quick" if a.quick else "scaling", "Scaling of time and memory with tokens, width and cycles", body,
          "python bench/bench_scaling.py " + " ".join(sys.argv[1:]))

if __name__ == "__main__": main()
