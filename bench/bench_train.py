#!/usr/bin/env python
"""SAE training step: dmsae (`dmsae.sae.SAE` + `dmsae.train.train_step`) vs SAELens `MatryoshkaBatchTopKTrainingSAE` +
`SAETrainer.step`: tokens/s and peak memory per width, distance to the dense-matmul bound, an equal-loss check, and a
profile of our step.

    python bench/bench_train.py [--quick] [--full] [--synthetic] [--ks 32 128]

`--quick` (used by `make bench`) writes `results/train-quick.md`, otherwise `results/train.md`; both also write a PNG of
the two loss curves beside the table. Widths whose estimated peak memory exceeds 80% of MemAvailable are skipped (and
said so).

Both trainers see the same batches (real activations of the tiny cache, or N(0, I) with `--synthetic`), scaled to mean
squared norm d_in, with Adam(betas 0.9, 0.999), lr 2e-4/sqrt(F/2^14), grad-norm clip 1 and the same warm-up/decay
schedule. Each library keeps its own initialisation and decoder-norm handling (dmsae: unit rows, parallel-gradient
removal, renormalisation; SAELens: `rescale_acts_by_decoder_norm`). Timings alternate dmsae / SAELens / bound in blocks
in one process (the machine is shared), and tables report medians. Peak memory is measured in a fresh subprocess per
(library, width).
"""

import os

for _k, _v in dict(
    OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled"
).items():
    os.environ.setdefault(_k, _v)  # before torch is imported (libgomp reads OMP_* when it loads)
import argparse, json, math, statistics, subprocess, sys, time, warnings
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write

K, B = 32, 4096  # mean active latents per token, tokens per step
PHASE = "train_step: "  # the torch.profiler labels of the phases of `dmsae.train.train_step`


def load_data(synthetic: bool, seed: int = 0):
    "All rows [N, d] scaled to mean squared norm d, and a description of the source."
    if synthetic:
        x = torch.randn(65_536, 576, generator=torch.Generator().manual_seed(seed))
        src = "synthetic N(0, I) rows"
    else:
        from dmsae.config import get_config
        from dmsae.activations import build_activation_cache

        c = build_activation_cache(get_config("tiny"), "train", progress=False)
        x = c.rows_range(0, c.n_rows).float()
        c.close()
        src = f"tiny activation cache ({c.n_rows:,} rows x {c.d_in}, {c.dtype}, BOS/sink rows dropped)"
    x *= math.sqrt(x.shape[1] / float(x.double().pow(2).sum(1).mean()))
    return x.contiguous(), src


def schedule(n_steps):
    "dmsae's lr multiplier (warm-up min(1000, T/10) steps, linear decay over the last 20%), used by both trainers."
    from dmsae.config import DMSAEConfig
    from dmsae.train import lr_factor

    c = DMSAEConfig()
    return lambda t: lr_factor(t, n_steps, c.warmup_steps, c.decay_fraction)


class DM:
    (
        "`dmsae.train.train_step` with the state `train_sae` builds (`make_state`); batches are pre-scaled, so the "
        "scale is 1."
    )

    name = "dmsae"

    def __init__(self, F, x0, n_steps, batch_size=B, seed=0):
        from dmsae.config import DMSAEConfig
        from dmsae.train import init_sae, make_state

        cfg = DMSAEConfig(d_sae=F, k=K, batch_size=batch_size, seed=seed).validate()
        self.sae = init_sae(cfg, x0.shape[1], None, x0[:batch_size])  # b_dec: geometric median of the first batch
        self.state = make_state(self.sae, cfg, n_steps)  # Adam (fused) and the schedule, as train_sae
        self.lr, self.warm = self.state.sched.base_lrs[0], self.state.warm

    def step(self, x):
        from dmsae.train import train_step

        st = train_step(self.state, x)
        return dict(loss=st["loss"], mse=st["mse"][-1])

    @torch.no_grad()
    def evaluate(self, x):
        "Per-level MSE (sum over d, mean over tokens) of the BatchTopK reconstruction, and latents firing on `x`."
        out = self.sae.training_loss(x, update=False)
        rows, cols, _, _ = self.sae.select_active(self.sae.pre_acts(x))
        return out["level_mse"].tolist(), cols.unique().numel() / self.sae.cfg.d_sae, rows.numel() / x.shape[0]


class SL:
    (
        "SAELens `SAETrainer` around a `MatryoshkaBatchTopKTrainingSAE`; one step = what `SAETrainer.fit` does per "
        "batch, minus logging."
    )

    name = "SAELens"

    def __init__(self, F, n_steps, batch_size=B, seed=0):
        warnings.filterwarnings("ignore")
        from sae_lens.saes.matryoshka_batchtopk_sae import (
            MatryoshkaBatchTopKTrainingSAE,
            MatryoshkaBatchTopKTrainingSAEConfig,
        )
        from sae_lens.training.sae_trainer import SAETrainer
        from sae_lens.config import SAETrainerConfig
        from dmsae.sae import matryoshka_prefixes
        from dmsae.train import default_lr

        torch.manual_seed(seed)
        cfg = MatryoshkaBatchTopKTrainingSAEConfig(
            d_in=576, d_sae=F, k=K, matryoshka_widths=list(matryoshka_prefixes(F)), dtype="float32", device="cpu"
        )
        self.sae = MatryoshkaBatchTopKTrainingSAE(cfg)
        self.lr = default_lr(F)
        tcfg = SAETrainerConfig(
            total_training_samples=n_steps * batch_size,
            train_batch_size_samples=batch_size,
            lr=self.lr,
            lr_end=self.lr,
            adam_beta1=0.9,
            adam_beta2=0.999,
            device="cpu",
        )
        self.tr = SAETrainer(tcfg, self.sae, iter(()))
        self.tr.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.tr.optimizer, schedule(n_steps)
        )  # same schedule as dmsae

    def step(self, x):
        tr = self.tr
        tr.maybe_reset_sparsity()
        out = tr.step(x)
        tr.n_training_steps += 1
        return dict(loss=float(out.loss), mse=float(out.losses["mse_loss"]))

    @torch.no_grad()
    def evaluate(self, x):
        acts, _ = self.sae.encode_with_hidden_pre(x)
        lm = [
            float((rec - x).pow(2).sum(-1).mean())
            for _, rec in self.sae._iterable_decode(acts, include_outer_loss=True)
        ]
        return lm, float((acts > 0).any(0).float().mean()), float((acts > 0).sum() / x.shape[0])


class Bound:
    (
        "The dense encoder matmuls of one step: H = X[B,d] @ W_enc[d,F] (forward) and G_W = X^T @ G[B,F] (W_enc "
        "gradient); 2 B d F FLOPs each."
    )

    def __init__(self, F, d=576, n=B):
        self.W = torch.randn(d, F) / math.sqrt(d)
        self.H = torch.empty(n, F)
        self.G = torch.empty(d, F)

    def fwd(self, x):
        torch.mm(x, self.W, out=self.H)

    def pair(self, x):
        torch.mm(x, self.W, out=self.H)
        torch.mm(x.t(), self.H, out=self.G)


def interleaved(fns, batches, rounds, block):
    "Per-call seconds of each fn, alternating blocks of `block` calls (order reversed every round)."
    times = {n: [] for n in fns}
    names = list(fns)
    i = 0
    for r in range(rounds):
        for n in names if r % 2 == 0 else names[::-1]:
            for _ in range(block):
                x = batches[i % len(batches)]
                i += 1
                t0 = time.perf_counter()
                fns[n](x)
                times[n].append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------- peak memory (child process)
MEM_STEPS = 2


def mem_child(lib, F, synthetic, k):
    global K
    K = k
    rss = lambda k: int(next(l for l in open("/proc/self/status") if l.startswith(k)).split()[1]) / 1024
    data, _ = load_data(synthetic)
    if lib == "SAELens":
        import sae_lens.training.sae_trainer  # noqa: F401  (import before the baseline)
    import dmsae.train  # noqa: F401

    base = rss("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
    tr = DM(F, data, 1000) if lib == "dmsae" else SL(F, 1000)
    for i in range(MEM_STEPS):
        tr.step(data[i * B : (i + 1) * B])
    print(json.dumps(dict(base=base, peak=rss("VmHWM"))))


def peak_memory(lib, F, synthetic, k):
    cmd = [sys.executable, __file__, "--_mem", lib, str(F), str(k)] + (["--synthetic"] if synthetic else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[-1:] or ["failed"]
    return json.loads(r.stdout.strip().splitlines()[-1]), None


# ---------------------------------------------------------------- memory guard and loss-curve plot
def avail_GB():
    return int(next(l for l in open("/proc/meminfo") if l.startswith("MemAvailable")).split()[1]) / 2**20


def need_GB(F, k):
    (
        "Rough upper estimate of the larger of the two trainers' peaks (SAELens measured ~0.17 MB per latent at batch "
        "4096, k 32)."
    )
    return (F * B * 4 * 10 + 8 * F * 576 * 4) / 2**30 * (1 + k / 256)


def fits(F, k):
    return need_GB(F, k) < 0.8 * avail_GB()


def loss_png(curve, var, name, LB):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for n, c in curve.items():
        ax.plot(range(1, len(c) + 1), [o["mse"] / var for o in c], label=n, lw=1.2)
    ax.set_xlabel(f"step ({LB} tokens each, same batches)")
    ax.set_ylabel("training-batch FVU (full width)")
    ax.set_title(f"dmsae vs SAELens, F=4096, k={K}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    from common import RESULTS

    p = RESULTS / f"{name}_loss.png"
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


# ---------------------------------------------------------------- profile of our step
def profile_dm(F, data, steps):
    from torch.profiler import profile, ProfilerActivity

    dm = DM(F, data, 1000)
    batches = [data[i * B : (i + 1) * B] for i in range(steps + 1)]
    dm.step(batches[-1])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for x in batches[:steps]:
            dm.step(x)
    ev = prof.key_averages()
    phases = [e for e in ev if e.key.startswith(PHASE)]
    tot = sum(e.cpu_time_total for e in phases)
    ph = [
        dict(
            phase=e.key[len(PHASE) :],
            ms_per_step=e.cpu_time_total / 1e3 / steps,
            share=f"{100 * e.cpu_time_total / tot:.0f}%",
        )
        for e in sorted(phases, key=lambda e: -e.cpu_time_total)
    ]
    ops = sorted([e for e in ev if not e.key.startswith(PHASE)], key=lambda e: -e.self_cpu_time_total)[:12]
    tot_self = sum(e.self_cpu_time_total for e in ev)
    op = [
        dict(
            op=f"`{e.key}`",
            calls_per_step=e.count // steps,
            self_ms_per_step=e.self_cpu_time_total / 1e3 / steps,
            share=f"{100 * e.self_cpu_time_total / tot_self:.0f}%",
        )
        for e in ops
    ]
    return ph, op


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="width 4096 only, few rounds, 30 equal-loss steps")
    ap.add_argument("--full", action="store_true", help="also width 65536; equal-loss check at batch 4096")
    ap.add_argument("--synthetic", action="store_true", help="N(0, I) rows instead of the tiny activation cache")
    ap.add_argument("--loss-steps", type=int, default=None)
    ap.add_argument("--loss-batch", type=int, default=None)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--ks", type=int, nargs="+", default=[32, 128], help="k values of the throughput and memory tables")
    ap.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=None,
        help="widths of the throughput and memory tables (overrides --quick/--full)",
    )
    ap.add_argument("--name", default=None, help="result file name (default: train, or train-quick with --quick)")
    ap.add_argument("--_mem", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    global K
    if a._mem:
        return mem_child(a._mem[0], int(a._mem[1]), a.synthetic, int(a._mem[2]))
    out_name = a.name or ("train-quick" if a.quick else "train")
    k_loss = K
    T0 = time.perf_counter()
    widths = a.widths or ([4096] if a.quick else [4096, 16384] + ([65536] if a.full else []))
    plan = {4096: (2 if a.quick else 4, 2), 16384: (4, 1), 65536: (2, 1)}
    plan = {F: plan.get(F, (2, 1)) for F in widths}  # (rounds, block) per width
    loss_steps = a.loss_steps or (30 if a.quick else 150)
    loss_batch = a.loss_batch or (B if a.full else 1024)
    data, src = load_data(a.synthetic)
    d = data.shape[1]
    print(f"data: {src}; d={d}; threads {torch.get_num_threads()}", flush=True)
    hold = data[-4096:]
    train = data[:-4096]  # held-out rows for the equal-loss check
    batches = [data[i * B : (i + 1) * B] for i in range(data.shape[0] // B)]

    # 1 + 2: throughput and distance to the matmul bound
    rows, bound_rows, skipped = [], [], []
    grid = [(F, k) for F in widths for k in a.ks]
    for F, k in grid:
        K = k
        if not fits(F, k):
            skipped.append(
                f"F={F}, k={k}: estimated peak {need_GB(F, k):.1f} GB > 80% of MemAvailable {avail_GB():.1f} GB"
            )
            continue
        rounds, block = plan[F]
        dm, sl, bd = DM(F, data, 10_000), SL(F, 10_000), Bound(F, d)
        for f in (dm.step, sl.step, bd.pair, bd.fwd):
            f(batches[0])  # warm-up (allocations, Adam state)
        t = interleaved({"dmsae": dm.step, "SAELens": sl.step, "pair": bd.pair, "fwd": bd.fwd}, batches, rounds, block)
        m = {n: statistics.median(v) for n, v in t.items()}
        del dm, sl, bd
        rows.append(
            dict(
                d_sae=F,
                k=k,
                dmsae_tok_per_s=B / m["dmsae"],
                SAELens_tok_per_s=B / m["SAELens"],
                dmsae_s_per_step=m["dmsae"],
                SAELens_s_per_step=m["SAELens"],
                speedup=m["SAELens"] / m["dmsae"],
                steps_each=len(t["dmsae"]),
            )
        )
        fl = 2 * B * d * F
        bound_rows.append(
            dict(
                d_sae=F,
                k=k,
                fwd_matmul_s=m["fwd"],
                fwd_GFLOP_per_s=fl / m["fwd"] / 1e9,
                bound_pair_s=m["pair"],
                dmsae_x_bound=m["dmsae"] / m["pair"],
                dmsae_x_fwd=m["dmsae"] / m["fwd"],
                SAELens_x_bound=m["SAELens"] / m["pair"],
            )
        )
        print(rows[-1], bound_rows[-1], f"[{time.perf_counter() - T0:.0f}s]", flush=True)

    # peak memory, a fresh process per (library, width)
    mem_rows = []
    if not a.no_memory:
        for F, k in grid:
            if not fits(F, k):
                continue
            r = dict(d_sae=F, k=k, params_grads_adam_MB=8 * F * d * 4 / 2**20)
            for lib in ("dmsae", "SAELens"):
                res, err = peak_memory(lib, F, a.synthetic, k)
                r[f"{lib}_peak_MB"] = res["peak"] - res["base"] if res else f"failed: {err[0][:60]}"
            if all(isinstance(r[f"{l}_peak_MB"], float) for l in ("dmsae", "SAELens")):
                r["ratio_SAELens_over_dmsae"] = r["SAELens_peak_MB"] / r["dmsae_peak_MB"]
            mem_rows.append(r)
            print(r, f"[{time.perf_counter() - T0:.0f}s]", flush=True)

    # 3: equal-loss check at width 4096, same batches in the same order, steps interleaved
    F = 4096
    LB = loss_batch
    K = k_loss
    g = torch.Generator().manual_seed(0)
    order = []
    while len(order) < loss_steps * LB:
        order += torch.randperm(train.shape[0], generator=g)[: train.shape[0] // LB * LB].tolist()
    order = torch.tensor(order[: loss_steps * LB]).view(loss_steps, LB)
    dm, sl = DM(F, train, loss_steps, LB), SL(F, loss_steps, LB)
    assert abs(dm.lr - sl.lr) < 1e-15
    var = float((hold - hold.mean(0)).pow(2).sum(1).mean())
    curve = {n: [] for n in ("dmsae", "SAELens")}
    lt = {n: [] for n in curve}
    for s in range(loss_steps):
        x = train[order[s]]
        for tr in (dm, sl) if s % 2 == 0 else (sl, dm):
            t0 = time.perf_counter()
            o = tr.step(x)
            lt[tr.name].append(time.perf_counter() - t0)
            curve[tr.name].append(o)
    every = 10 if loss_steps >= 20 else 1
    cur = []
    for e in range(every, loss_steps + 1, every):
        w = slice(e - every, e)
        r = dict(step=e)
        for n in curve:
            r[f"{n}_fvu"] = statistics.fmean(o["mse"] for o in curve[n][w]) / var
            r[f"{n}_own_loss"] = statistics.fmean(o["loss"] for o in curve[n][w])
        cur.append(r)
    ev = {n: tr.evaluate(hold) for n, tr in (("dmsae", dm), ("SAELens", sl))}
    final = [
        dict(
            trainer=n,
            **{f"fvu_level{j}_w{w}": lm[j] / var for j, w in enumerate(dm.sae.cfg.level_widths)},
            mse_full=lm[-1],
            l0=l0,
            latents_firing=f"{100 * alive:.0f}%",
            median_step_s=statistics.median(lt[n]),
        )
        for n, (lm, alive, l0) in ev.items()
    ]
    print(table(cur), "\n", table(final), f"[{time.perf_counter() - T0:.0f}s]", flush=True)
    png = loss_png(curve, var, out_name, LB)

    # profile of our step
    PF = 16384 if not a.quick else 4096
    psteps = 3 if not a.quick else 2
    ph, op = profile_dm(PF, data, psteps)
    print(table(ph), "\n", table(op), flush=True)

    # ---- write
    sp = {(r["d_sae"], r["k"]): r["speedup"] for r in rows}
    body = (
        f"Data: {src}, scaled to mean squared norm d={d}. d_in {d}, k {a.ks} (equal-loss check: k {k_loss}), batch "
        f"{B} tokens; Matryoshka groups = dmsae's default fractions (1/32, 1/16, 1/8, 1/4, rest), i.e. SAELens "
        f"`matryoshka_widths` = dmsae's cumulative prefixes. Adam(0.9, 0.999), lr 2e-4/sqrt(F/2^14), grad clip 1, "
        f"same schedule. Each trainer keeps its own initialisation and decoder-norm handling.\n\n"
        f"### Training-step throughput\n\n"
        + table(rows)
        + f"\n\nOne step = dmsae: `dmsae.train.train_step` (`training_loss`, backward, core/parallel-gradient "
        f"removal, clip, Adam, schedule, decoder renormalisation, statistics); SAELens: "
        f"`SAETrainer.maybe_reset_sparsity` + `SAETrainer.step` (`training_forward_pass`, firing statistics, "
        f"backward, clip, Adam, schedule). Median seconds per step over alternating blocks (dmsae / SAELens / bound, "
        f"order reversed each round) in one process; the machine was shared with other jobs. No latent is dead during "
        f"these steps (dmsae: 10M tokens, SAELens: 1000 steps), so neither runs its AuxK path. **Speed-up dmsae vs "
        f"SAELens: "
        + ", ".join(f"{v:.1f}x at F={f}, k={kk}" for (f, kk), v in sp.items())
        + "** (target >= 3x on CPU).\n\n"
        + ("Skipped by the memory guard: " + "; ".join(skipped) + ".\n\n" if skipped else "")
        + f"### Distance to the hardware limit\n\n"
        + table(bound_rows)
        + f"\n\n`fwd_matmul` = H = X[B,d] @ W_enc[d,F] alone (2·B·d·F FLOPs, preallocated output), the one dense "
        f"product any exact BatchTopK step needs (every pre-activation is a candidate). `bound_pair` = that forward "
        f"plus the dense W_enc-gradient product X^T @ G[B,F] (another 2·B·d·F FLOPs): the matmul cost of a dense SAE "
        f"step's encoder. `dmsae_x_bound` = our full step / `bound_pair`; `dmsae_x_fwd` = our full step / "
        f"`fwd_matmul`. Measured interleaved with the steps above.\n\n"
    )
    if mem_rows:
        body += (
            f"### Peak memory\n\n"
            + table(mem_rows)
            + f"\n\nPeak = VmHWM - VmRSS in a fresh process per cell: VmHWM is reset (`/proc/self/clear_refs`) after "
            f"imports and data loading, then the SAE, its optimiser and {MEM_STEPS} training steps run. "
            f"`params_grads_adam_MB` = 8·F·d float32 (W_enc, W_dec, their gradients and two Adam moments) for "
            f"reference.\n\n"
        )
    body += (
        f"### Equal-loss check (F=4096, {loss_steps} steps of {LB} tokens)\n\n"
        f"Both trainers take the same batches in the same order (seed 0; {train.shape[0]:,} training rows, steps "
        f"interleaved), batch {LB}"
        + (" (not 4096, to keep the default run under 8 minutes; `--full` uses 4096)" if LB != B else "")
        + f", same lr {dm.lr:.2e} and schedule (warm-up {dm.warm} steps, linear decay over the last 20%). `fvu` = "
        f"full-width training-batch MSE (sum over d, mean over tokens; BatchTopK reconstruction before the step's "
        f"update) divided by the held-out variance {var:.1f}, averaged over each {every}-step window; `own_loss` is "
        f"each library's objective (dmsae: mean of the 5 level MSEs; SAELens: sum of the 5 level MSEs), so it is not "
        f"comparable across libraries.\n\n"
        + table(cur)
        + f"\n\nAfter training, on {hold.shape[0]:,} held-out rows (the last rows of the cache, not trained on), "
        f"BatchTopK reconstruction at every Matryoshka level, FVU with the same denominator for both:\n\n"
        + table(final)
        + f"\n\nLoss curves (per-step full-width FVU of both trainers): [{png.name}]({png.name})\n\n"
    )
    body += (
        f"Load average (1 min) at the end of the timed sections: {os.getloadavg()[0]:.2f} on {os.cpu_count()} "
        f"cores.\n\n"
    )
    body += (
        f"### Where the time goes in a dmsae step (F={PF}, torch.profiler, {psteps} steps)\n\n"
        + table(ph)
        + "\n\nTop operators by self CPU time:\n\n"
        + table(op)
        + f"\n\nWhole script: {time.perf_counter() - T0:.0f}s."
    )
    write(
        out_name,
        "SAE training step: dmsae vs SAELens (Matryoshka BatchTopK)",
        body,
        "python bench/bench_train.py " + " ".join(sys.argv[1:]),
    )


if __name__ == "__main__":
    main()
