#!/usr/bin/env python
"""The transfer's SAEs side by side (`transfer_workers`): how many SAE steps per second two processes give on 2 cores.

    python bench/bench_parallel.py [--quick]

`make reproduce small` trains ten SAEs in its transfer (about 40 of its ~60 idle minutes), one after another, each
with both threads. A training step is many small operations (the BatchTopK selection, the sparse decoder and its
gradients, Adam, the decoder renormalisation) that split poorly over threads. On the `small` profile's shapes (d 576,
F 4096, batch 1024, k 80, a 50-latent ReLU core, the bf16 settings) with Gaussian inputs, three arrangements of the
same jobs (each job: build an SAE, warm up 3 steps, time `--steps` steps), alternated in rounds in one run (medians):

1. **one at a time, all threads**: `run_parallel(..., workers=1)` in this process (`transfer_workers=1`);
2. **one at a time, one thread**: the same with `torch.set_num_threads(1)` (how well one training uses two threads);
3. **two at a time, one thread each**: `run_parallel(..., workers=2)`, spawned processes (`transfer_workers=2`).

Reported: the timed steps per second of each arrangement (all jobs' timed steps over the seconds in which at least
one job was stepping), each job's ms per step, and the wall time of the whole arrangement (process start included).
`--quick` runs 2 jobs of 40 steps in 3 rounds (results in `results/parallel-quick.md`).
"""

import os

for _k, _v in dict(OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1").items():
    os.environ.setdefault(_k, _v)  # before torch is imported (libgomp reads OMP_* when it loads)
import argparse, statistics, sys, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write_result


def job(n_steps: int, seed: int) -> dict:
    "One training of the `small` shapes: `n_steps` timed steps after 3 warm-up steps; wall-clock stamps and ms/step."
    from dmsae.config import get_config
    from dmsae.train import init_sae, make_state, train_step
    cfg = get_config("small")
    g = torch.Generator().manual_seed(seed)
    batches = [torch.randn(cfg.batch_size, 576, generator=g) for _ in range(4)]
    core = torch.nn.functional.normalize(torch.randn(50, 576, generator=g), dim=1)
    state = make_state(init_sae(cfg, 576, core, batches[0]), cfg, n_steps=100_000)
    for i in range(3): train_step(state, batches[i % 4])
    t0 = time.time()
    for i in range(n_steps): train_step(state, batches[i % 4])
    t1 = time.time()
    return dict(start=t0, end=t1, ms=(t1 - t0) * 1000 / n_steps, threads=torch.get_num_threads())


def stepping_seconds(res: list) -> float:
    "Seconds in which at least one job was in its timed steps (the union of the jobs' intervals)."
    total, reach = 0.0, float("-inf")
    for r in sorted(res, key=lambda r: r["start"]):
        total += max(0.0, r["end"] - max(r["start"], reach))
        reach = max(reach, r["end"])
    return total


def arrangement(name: str, n_jobs: int, n_steps: int) -> dict:
    "Run the jobs in one arrangement; its timed steps per second, mean ms/step of a job and wall seconds."
    from dmsae.distributed import run_parallel
    threads = torch.get_num_threads()
    if name == "one at a time, one thread": torch.set_num_threads(1)
    t = time.time()
    try: res = run_parallel(job, [(n_steps, s) for s in range(n_jobs)], 2 if name.startswith("two") else 1)
    finally: torch.set_num_threads(threads)
    wall = time.time() - t
    return dict(steps_s=n_jobs * n_steps / stepping_seconds(res), ms=statistics.mean(r["ms"] for r in res), wall=wall,
                threads=res[0]["threads"])


NAMES = ("one at a time, all threads", "one at a time, one thread", "two at a time, one thread each")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 jobs of 40 steps, 3 rounds")
    ap.add_argument("--jobs", type=int, default=None, help="jobs per arrangement (default 4; quick 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per job (default 100; quick 40)")
    ap.add_argument("--rounds", type=int, default=None, help="alternated rounds (default 5; quick 3)")
    args = ap.parse_args()
    n_jobs = args.jobs or (2 if args.quick else 4)
    n_steps = args.steps or (40 if args.quick else 100)
    rounds = args.rounds or (3 if args.quick else 5)
    got = {n: [] for n in NAMES}
    for r in range(rounds):
        for n in NAMES:
            got[n].append(arrangement(n, n_jobs, n_steps))
            print(f"round {r}: {n}: {got[n][-1]}", flush=True)
    med = {n: {k: statistics.median(x[k] for x in got[n]) for k in ("steps_s", "ms", "wall")} for n in NAMES}
    base = med[NAMES[0]]["steps_s"]
    rows = [{"arrangement": n, "threads per job": got[n][0]["threads"], "steps / s": med[n]["steps_s"],
             "ms / step of a job": med[n]["ms"], "wall s (process start included)": med[n]["wall"],
             "throughput vs one at a time, all threads": med[n]["steps_s"] / base} for n in NAMES]
    body = (f"{n_jobs} jobs of {n_steps} timed steps per arrangement, {rounds} alternated rounds, medians; "
            f"`small` shapes (k 80, F 4096, batch 1024, 50-latent ReLU core, bf16 settings):\n\n" + table(rows) +
            "\n\nPer round (steps / s): " + "; ".join(
                f"{n}: " + ", ".join(f"{x['steps_s']:.2f}" for x in got[n]) for n in NAMES))
    write_result("parallel", args.quick, "The transfer's SAEs side by side (`transfer_workers`)", body)


if __name__ == "__main__":
    main()
