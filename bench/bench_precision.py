#!/usr/bin/env python
"""bf16 selection matmul (`preact_dtype`) and the BatchTopK cut estimate: step time, and what bf16 changes in the SAE.

    python bench/bench_precision.py [--quick] [--steps 1500] [--seeds 0 1]

Three measurements on the `small` profile's shapes (d 576, F 4096, k 80, batch 1024) and its activation cache (built
in $DMSAE_HOME if missing, about 5 minutes):

1. **Selection**: the flat BatchTopK of one batch's [B, F] pre-activations, three ways side by side: `torch.topk` over
   all B F entries, the previous two-pass selection (exact top-K of a 1-in-N/M sample, M = max(4K, 2 sqrt(K N)), as
   the lower bound) and `dmsae.sae.batch_topk_select` (a quantile of a 1-in-16 sample with 5% slack), in float32 and
   bfloat16. All give the same set (checked).
2. **Step**: `dmsae.train.train_step` at `preact_dtype` float32 and bfloat16, alternated in blocks in one process;
   medians.
3. **Quality**: the same plain Matryoshka training (`small`, no core) at both dtypes, per seed: held-out FVU and L0 at
   the trained threshold, training time. The difference is to be read against the seed-to-seed spread.

`--quick` times fewer blocks and trains 300 steps (results in `results/precision-quick.md`).
"""

import os

for _k, _v in dict(OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1").items():
    os.environ.setdefault(_k, _v)  # before torch is imported (libgomp reads OMP_* when it loads)
import argparse, math, statistics, sys, tempfile, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternated_step_ms, median_ms, table, write

DTYPES = ("float32", "bfloat16")


def previous_select(a: torch.Tensor, budget: int) -> torch.Tensor:
    "The selection dmsae used before the cut estimate (kept here as the reference for the timing)."
    flat = a.reshape(-1)
    N = flat.numel()
    M = int(min(N, max(4 * budget, 2 * math.sqrt(budget * N))))
    sub = flat[:: max(1, N // M)]
    lb = sub.topk(budget, sorted=False).values.min()
    cand = (flat >= lb).nonzero().squeeze(1) if lb > 0 else (flat > 0).nonzero().squeeze(1)
    if cand.numel() > budget: cand = cand[flat[cand].topk(budget, sorted=False).indices]
    return cand[flat[cand] > 0]


def full_topk(a: torch.Tensor, budget: int) -> torch.Tensor:
    "`torch.topk` over every entry (positive ones kept)."
    top = a.reshape(-1).topk(budget, sorted=False)
    return top.indices[top.values > 0]


def selection_rows(x: torch.Tensor, cfg, reps: int) -> list[dict]:
    "Milliseconds of the three selections of one batch, per dtype; the sets are checked equal."
    from dmsae.sae import batch_topk_select
    from dmsae.train import init_sae
    sae = init_sae(cfg, x.shape[1], None, x)
    budget, rows = int(cfg.k * x.shape[0]), []
    for dt in DTYPES:
        h = sae.training_preacts(x - sae.b_dec, getattr(torch, dt))
        ref = full_topk(h, budget).sort().values
        row = dict(dtype=dt)
        for name, fn in (("full topk", full_topk), ("previous", previous_select), ("dmsae", batch_topk_select)):
            if dt == "float32": assert torch.equal(fn(h, budget).sort().values, ref), name  # bf16 has ties at the cut
            row[f"{name} (ms)"] = median_ms(lambda: fn(h, budget), reps)
        row["matmul (ms)"] = median_ms(lambda: sae.training_preacts(x - sae.b_dec, getattr(torch, dt)), reps)
        rows.append(row)
    return rows


def step_rows(batches: list, cfg, blocks: int, per_block: int) -> list[dict]:
    "Median ms per `train_step` at each `preact_dtype`, alternating blocks of `per_block` steps."
    from dmsae.train import init_sae, make_state
    states = {}
    for dt in DTYPES:
        c = cfg.replace(preact_dtype=dt)
        states[dt] = make_state(init_sae(c, batches[0].shape[1], None, batches[0]), c, n_steps=10_000)
    ms = alternated_step_ms(states, batches, blocks, per_block)
    return [{"preact_dtype": dt, "ms / step": ms[dt], "steps / s": 1000 / ms[dt], "speed-up": ms["float32"] / ms[dt]}
            for dt in DTYPES]


def heldout_rows(cfg) -> torch.Tensor:
    "Held-out residual rows of the profile's contexts (attention sinks and BOS rows left out)."
    from dmsae.activations import build_activation_cache
    held = build_activation_cache(cfg, "heldout", progress=False)
    x = held.rows_range(0, held.n_rows).float()
    held.close()
    norms = x.norm(dim=1)
    return x[norms <= (cfg.max_norm_ratio or math.inf) * norms.median()]


@torch.no_grad()
def fvu_l0(sae, x: torch.Tensor) -> tuple[float, float]:
    "Held-out FVU and L0 of `sae` at its trained threshold."
    f = sae.encode(x)
    err = (sae.decode(f) - x).pow(2).sum()
    return float(err / (x - x.mean(0)).pow(2).sum()), float((f > 0).sum(1).float().mean())


def quality_rows(cfg, source, x_held, steps: int, seeds: list[int]) -> list[dict]:
    "One plain Matryoshka training per dtype and seed: held-out FVU, L0 and wall time."
    from dmsae.train import train_sae
    rows = []
    for seed in seeds:
        for dt in DTYPES:
            with tempfile.TemporaryDirectory() as d:
                t = time.perf_counter()
                sae, _ = train_sae(cfg.replace(preact_dtype=dt, seed=seed), source, d, n_steps=steps, progress=False)
                secs = time.perf_counter() - t
            fvu, l0 = fvu_l0(sae, x_held)
            rows.append(dict(seed=seed, preact_dtype=dt, steps=steps, **{"held-out FVU": fvu, "held-out L0": l0,
                                                                          "train (s)": secs}))
            print(rows[-1], flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer timing blocks, 300 training steps")
    p.add_argument("--steps", type=int, default=None, help="training steps of the quality runs (default 1500)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the quality runs")
    a = p.parse_args()
    from dmsae.config import get_config
    from dmsae.activations import build_activation_cache
    from dmsae.train import input_scale
    cfg = get_config("small", core_max=None)
    train = build_activation_cache(cfg, "train", progress=False)
    scale = input_scale(train, cfg.batch_size)
    batches = [b.float() * scale for _, b in zip(range(16), train.batches(cfg.batch_size, seed=0))]
    sel = selection_rows(batches[0], cfg, reps=5 if a.quick else 15)
    steps = step_rows(batches, cfg, blocks=3 if a.quick else 6, per_block=10)
    qual = quality_rows(cfg, train, heldout_rows(cfg), a.steps or (300 if a.quick else 1500), a.seeds)
    deltas = []
    for seed in a.seeds:
        r = {q["preact_dtype"]: q for q in qual if q["seed"] == seed}
        deltas.append(r["bfloat16"]["held-out FVU"] - r["float32"]["held-out FVU"])
    body = (f"**Selection** of one batch ({cfg.batch_size} x {cfg.d_sae}, K = {cfg.k} x {cfg.batch_size}), "
            f"median ms:\n\n{table(sel)}\n\n**Training step** (`train_step`, plain Matryoshka, batch "
            f"{cfg.batch_size}), median over alternated blocks:\n\n{table(steps)}\n\n**Quality** (plain Matryoshka, "
            f"`small` config, held-out rows of the `small` cache):\n\n{table(qual)}\n\n"
            f"bf16 minus float32 held-out FVU per seed: {', '.join(f'{d:+.5f}' for d in deltas)}\n")
    name = "precision-quick" if a.quick else "precision"
    write(name, "bf16 selection matmul and the cut estimate", body, "python bench/bench_precision.py "
          + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
