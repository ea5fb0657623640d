#!/usr/bin/env python
"""The language model in bfloat16 on the CPU (`model_dtype`): how much faster, and how much it moves the numbers.

    python bench/bench_lm_dtype.py [--quick] [--contexts 64]

The LM-bound work of `make reproduce small` (caching, attribution, our evaluation, SAEBench, probing) is about 28 of
its ~73 minutes on 2 cores, all in float32 matrix products. On a CPU with AMX / AVX512-BF16 a bfloat16 model runs
those products several times faster; this measures what that would buy and cost, on the `small` profile's held-out
contexts (built in $DMSAE_HOME if missing), with the embedded SmolLM2-135M:

1. **Speed**, float32 and bfloat16 alternated in blocks in one process (medians): the forward to the hook (caching)
   and the whole forward with the loss (evaluation, SAEBench), in tokens per second.
2. **What moves**: the hook activations (relative error of bfloat16 against float32, per token, median and 99th
   percentile; the cache stores float16, whose own rounding is ~5e-4), the mean next-token loss (nats), and the loss
   with the hook residual replaced by the float32 one (the splice our CE-recovered metric makes).

A difference in the loss is to be read against the gaps the study's verdicts rest on (CE recovered: 0.006 between
the distilled core and Matryoshka at k = 80, loss range ablated - clean about 4 nats, so 0.006 of CE recovered is
0.024 nats). `--quick` uses 16 contexts and fewer blocks (results in `results/lm_dtype-quick.md`).
"""

import os

for _k, _v in dict(OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1").items():
    os.environ.setdefault(_k, _v)  # before torch is imported (libgomp reads OMP_* when it loads)
import argparse, statistics, sys, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write

DTYPES = ("float32", "bfloat16")


def timed(fn) -> float:
    "Wall seconds of one call of `fn`."
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def speed(lms: dict, toks: torch.Tensor, hook: int, blocks: int, batch: int) -> list[dict]:
    "Tokens per second of the forward to the hook and of the whole forward with the loss, dtypes alternated."
    from dmsae.model import lm_loss
    jobs = dict(to_hook=lambda lm, t: lm.run_to_hook(t, hook), whole=lambda lm, t: lm_loss(lm.logits(t), t))
    times = {(j, d): [] for j in jobs for d in lms}
    with torch.no_grad():
        for _ in range(blocks):
            for j, fn in jobs.items():
                for d, lm in lms.items():
                    times[(j, d)].append(sum(timed(lambda: fn(lm, toks[i:i + batch]))
                                             for i in range(0, len(toks), batch)))
    n = toks.numel()
    rows = []
    for j in jobs:
        tps = {d: n / statistics.median(times[(j, d)]) for d in lms}
        rows.append(dict(forward=j, **{f"{d} tok/s": tps[d] for d in lms},
                         speed_up=tps["bfloat16"] / tps["float32"]))
    return rows


@torch.no_grad()
def moves(lms: dict, toks: torch.Tensor, hook: int, batch: int) -> list[dict]:
    "Hook-activation relative error and loss differences of bfloat16 against float32."
    from dmsae.model import lm_loss
    errs, loss, loss_splice = [], {d: [] for d in lms}, []
    f32, b16 = lms["float32"], lms["bfloat16"]
    for i in range(0, len(toks), batch):
        t = toks[i:i + batch]
        a, b = f32.run_to_hook(t, hook), b16.run_to_hook(t, hook).float()
        errs.append(((b - a).norm(dim=-1) / a.norm(dim=-1).clamp_min(1e-12))[:, 1:].reshape(-1))   # BOS left out
        for d, lm in lms.items(): loss[d].append(float(lm_loss(lm.logits(t), t)))
        loss_splice.append(float(lm_loss(b16.run_from_hook(a.to(torch.bfloat16), hook, t), t)))
    e = torch.cat(errs)
    l32, l16, ls = (statistics.mean(v) for v in (loss["float32"], loss["bfloat16"], loss_splice))
    return [dict(quantity="hook activation, relative error (median)", value=float(e.median())),
            dict(quantity="hook activation, relative error (99th percentile)", value=float(e.quantile(0.99))),
            dict(quantity="next-token loss, float32 (nats)", value=l32),
            dict(quantity="next-token loss, bfloat16 - float32 (nats)", value=l16 - l32),
            dict(quantity="loss, bf16 blocks above the hook on the float32 residual - float32 (nats)", value=ls - l32)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--contexts", type=int, default=None)
    args = ap.parse_args()
    from dmsae.config import get_config
    from dmsae.model import load_lm
    from dmsae.activations import heldout_data
    cfg = get_config("small")
    n = args.contexts or (16 if args.quick else 64)
    lms = {d: load_lm(cfg.model_name, "cpu", d) for d in DTYPES}
    _, _, ctx = heldout_data(cfg, lms["float32"])
    toks = torch.as_tensor(ctx.tokens[:n]).long()
    batch = cfg.attribution_batch_contexts
    sp = speed(lms, toks, cfg.hook_layer, 2 if args.quick else 5, batch)
    mv = moves(lms, toks, cfg.hook_layer, batch)
    body = (f"{n} held-out contexts of {toks.shape[1]} tokens, batches of {batch}, hook after block "
            f"{cfg.hook_layer}.\n\n### Speed (medians of alternated blocks)\n\n{table(sp)}\n\n"
            f"### What bfloat16 moves\n\n{table(mv)}")
    cmd = "python bench/bench_lm_dtype.py" + (" --quick" if args.quick else "")
    write("lm_dtype-quick" if args.quick else "lm_dtype", "The language model in bfloat16 on the CPU", body, cmd)


if __name__ == "__main__":
    main()
