#!/usr/bin/env python
"""BatchTopK selection with integer comparisons and a word-level `nonzero`: its time, the step's, and bit identity.

    python bench/bench_select.py [--quick]

`dmsae.sae.batch_topk_select` scans the B F pre-activations twice before its exact top-K: a comparison with the cut
estimate and a `nonzero` of the mask. Since 3 December 2026 it does both exactly but faster (`positive_at_least`: the
bits of the scores compared as integers; `flat_nonzero`: `nonzero` over 64-bit words first). The plain version is kept
here as the reference. On the `small` profile's shapes and bf16 settings (d 576, F 4096, batch 1024, k 80, a random
50-latent ReLU core) and its activation cache (built in $DMSAE_HOME if missing, about 5 minutes), in one process,
alternated, medians:

1. **Selection** of one batch's pre-activations (after 20 training steps) in float32 and bfloat16, with one and two
   threads: plain vs dmsae, and the returned indices compared (the same tensor, order included).
2. **Training step** (`train_step`, one thread as in the transfer's two-at-a-time workers, and two threads as in the
   distillation): plain vs dmsae in alternated blocks.
3. **Bit identity**: two trainings from the same start, one per selection, compared weight for weight.

`--quick` times fewer blocks (results in `results/select-quick.md`).
"""

import os

for _k, _v in dict(OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1").items():
    os.environ.setdefault(_k, _v)  # before torch is imported (libgomp reads OMP_* when it loads)
import argparse, copy, statistics, sys, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_ms, table, write_result
import dmsae.sae as S

FAST = S.batch_topk_select


def plain_select(a: torch.Tensor, budget: int) -> torch.Tensor:
    "`batch_topk_select` with a float comparison and a plain `nonzero` (the code before 3 December 2026)."
    flat = a.reshape(-1)
    N = flat.numel()
    if budget <= 0 or N == 0: return torch.zeros(0, dtype=torch.long, device=a.device)
    if budget >= N: return (flat > 0).nonzero().squeeze(1)
    lb = S.cut_estimate(flat, budget, a.shape[-1] if a.ndim else 1) if N >= 1 << 16 else flat.new_zeros(())
    cand = (flat >= lb).nonzero().squeeze(1) if lb > 0 else (flat > 0).nonzero().squeeze(1)
    if cand.numel() < budget and lb > 0: cand = (flat > 0).nonzero().squeeze(1)
    if cand.numel() > budget: cand = cand[flat[cand].topk(budget, sorted=False).indices]
    return cand[flat[cand] > 0]


SELECT = {"plain": plain_select, "dmsae": FAST}


def setup(seed: int = 0):
    "The `small` config, 16 batches of its training cache (scaled), a random 50-latent core, a fresh training state."
    from dmsae.config import get_config
    from dmsae.activations import build_activation_cache
    from dmsae.train import init_sae, input_scale, make_state
    cfg = get_config("small")
    train = build_activation_cache(cfg, "train", progress=False)
    scale = input_scale(train, cfg.batch_size)
    batches = [b.float() * scale for _, b in zip(range(16), train.batches(cfg.batch_size, seed=seed))]
    g = torch.Generator().manual_seed(seed)
    core = torch.nn.functional.normalize(torch.randn(50, batches[0].shape[1], generator=g), dim=1)
    return cfg, batches, make_state(init_sae(cfg, batches[0].shape[1], core, batches[0]), cfg, n_steps=100_000)


def steps(state, batches, n: int, select) -> float:
    "Milliseconds per step of `n` steps of `state` with the selection `select`."
    from dmsae.train import train_step
    S.batch_topk_select = select
    try:
        t = time.perf_counter()
        for i in range(n): train_step(state, batches[(state.step + i) % len(batches)])
        return (time.perf_counter() - t) * 1000 / n
    finally: S.batch_topk_select = FAST


def selection_rows(reps: int) -> list[dict]:
    "Milliseconds of both selections of one batch, per dtype and thread count; the outputs compared."
    cfg, batches, state = setup()
    steps(state, batches, 20, FAST)
    sae = state.sae
    x = batches[0]
    budget, rows = int(cfg.k * x.shape[0]), []
    for dt in ("float32", "bfloat16"):
        h = sae.training_preacts(x - sae.b_dec, getattr(torch, dt))
        h[:, :sae.n_core] = 0
        same = torch.equal(plain_select(h, budget), FAST(h, budget))
        lb = S.cut_estimate(h.reshape(-1), budget, h.shape[1])
        n_cand = int((h >= lb).sum())
        for nt in (1, 2):
            torch.set_num_threads(nt)
            row = dict(dtype=dt, threads=nt)
            for name, fn in SELECT.items(): row[f"{name} (ms)"] = median_ms(lambda: fn(h, budget), reps)
            row["speed-up"] = row["plain (ms)"] / row["dmsae (ms)"]
            row["candidates / K"] = n_cand / budget
            row["same indices, same order"] = same
            rows.append(row)
    torch.set_num_threads(2)
    return rows


def step_rows(blocks: int, per_block: int) -> list[dict]:
    "Median ms per training step with each selection, alternated in blocks, at one and two threads."
    rows = []
    for nt in (1, 2):
        torch.set_num_threads(nt)
        cfg, batches, state = setup()
        steps(state, batches, 40, FAST)                  # past the dead window (30,720 tokens): AuxK can run
        ms = {n: [] for n in SELECT}
        for _ in range(blocks):
            for n, fn in SELECT.items(): ms[n].append(steps(state, batches, per_block, fn))
        med = {n: statistics.median(v) for n, v in ms.items()}
        dead = float(state.sae.dead_mask().float().mean())
        rows.append({"threads": nt, "plain (ms / step)": med["plain"], "dmsae (ms / step)": med["dmsae"],
                     "speed-up": med["plain"] / med["dmsae"], "dead fraction": dead})
    torch.set_num_threads(2)
    return rows


def identity_row(n: int) -> dict:
    "Train twice from the same start, once per selection; whether every parameter and buffer ends equal."
    cfg, batches, a = setup()
    b = copy.deepcopy(a)
    steps(a, batches, n, plain_select)
    steps(b, batches, n, FAST)
    sa, sb = a.sae.state_dict(), b.sae.state_dict()
    return dict(steps=n, tensors=len(sa), equal=sum(torch.equal(sa[k], sb[k]) for k in sa))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer timing blocks")
    a = p.parse_args()
    sel = selection_rows(reps=7 if a.quick else 21)
    st = step_rows(blocks=4 if a.quick else 10, per_block=8)
    ident = identity_row(30 if a.quick else 100)
    body = (f"**Selection** of one batch (1024 x 4096 pre-activations, K = 80 x 1024, the 50 core columns zeroed), "
            f"median ms:\n\n{table(sel)}\n\n**Training step** (`train_step`, `small` with a 50-latent core, k 80), "
            f"median ms over alternated blocks of 8 steps:\n\n{table(st)}\n\n**Bit identity** (the same training "
            f"with each selection):\n\n{table([ident])}\n")
    write_result("select", a.quick, "BatchTopK selection: integer comparison and word-level nonzero", body)


if __name__ == "__main__":
    main()
