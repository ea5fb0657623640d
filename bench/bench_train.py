#!/usr/bin/env python
"""SAE training step: dmsae (`dmsae.sae.SAE` + `dmsae.train.train_step`) vs SAELens `MatryoshkaBatchTopKTrainingSAE` +
`SAETrainer.step`: first a learning curve (does the baseline learn on this data?), then seconds per step per width and
k in float32 against float32 (plus dmsae with bf16 pre-activations where the CPU has native bf16 units), the distance to
one encoder matmul of the same dtype, peak memory, and a profile of our step.

    python bench/bench_train.py [--quick] [--full] [--synthetic] [--ks 32 128] [--widths 4096 16384]

`--quick` (used by `make bench`) writes `results/train-quick.md` and `results/train-quick_curve.{csv,png}` (curve of 100
steps of 1024 tokens; no memory table), otherwise `results/train.md` (curve of 300 steps of 4096 tokens, memory table;
`--full` adds width 65536). Widths whose estimated peak memory exceeds 80% of MemAvailable are skipped (and said so).
Before each timed cell the script waits (at most `--max-wait` s) for the 1-minute load average to fall below
`--max-load`, and records the load average before and after the cell.

SAELens is configured as its training documentation configures (Matryoshka) BatchTopK SAEs: `normalize_activations=
"expected_average_only_in"` (the `ActivationScaler` factor sqrt(d)/E||x||, applied to every batch), `apply_b_dec_to_
input`, `decoder_init_norm=0.1` (W_enc = W_dec^T), `rescale_acts_by_decoder_norm`, AuxK coefficient 1; `b_dec` is set to
the geometric median of the first batch, as dmsae does (SAELens 6.x has no b_dec init option; the learning curve also
shows SAELens with b_dec at 0, which spends its first hundreds of steps learning the mean). Both trainers see the same
batches (real activations of the tiny cache, or N(0, I) with `--synthetic`), scaled to mean squared norm d_in, with
Adam(betas 0.9, 0.999), lr 2e-4/sqrt(F/2^14), grad-norm clip 1 and the same warm-up/decay schedule. Timings alternate
the compared steps in blocks in one process (the machine is shared), and tables report medians. Peak memory is measured
in a fresh subprocess per (library, width).
"""

import os

import os

for _k, _v in dict(
    OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled"
).items():
    os.environ.setdefault(_k, _v)  # before torch is imported (libgomp reads OMP_* when it loads)
import argparse, json, math, statistics, subprocess, sys, time, warnings
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, table, write

K, B = 32, 4096  # mean active latents per token, tokens per step
PHASE = "train_step: "  # the torch.profiler labels of the phases of `dmsae.train.train_step`


def load_data(synthetic: bool, seed: int = 0):
    "All rows [N, d] scaled to mean squared norm d, and a description of the source."
    if synthetic:
        x = torch.randn(65_536, 576, generator=torch.Generator().manual_seed(seed))
        src = "synthetic N(0, I) rows"
    else:
        from dmsae.activations import build_activation_cache
        from common import smollm2_tiny

        c = build_activation_cache(smollm2_tiny(), "train", progress=False)
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

    def __init__(self, F, x0, n_steps, batch_size=B, seed=0, preact="float32"):
        from dmsae.config import DMSAEConfig
        from dmsae.train import init_sae, make_state

        cfg = DMSAEConfig(d_sae=F, k=K, batch_size=batch_size, seed=seed, preact_dtype=preact).validate()
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
        "SAELens `SAETrainer` around a `MatryoshkaBatchTopKTrainingSAE`, configured as SAELens documents for "
        "(Matryoshka) BatchTopK training; one step = what `SAETrainer.fit` does per batch, minus logging."
    )

    name = "SAELens"

    def __init__(self, F, n_steps, batch_size=B, seed=0, x0=None, norm_scale=1.0):
        """`x0`: set `b_dec` to the geometric median of these rows (dmsae's init; SAELens 6.x has no b_dec init
        option and starts it at 0). `norm_scale`: SAELens' `expected_average_only_in` factor sqrt(d) / E||x||,
        applied to every batch as its `ActivationScaler` does."""
        warnings.filterwarnings("ignore")
        from sae_lens.saes.matryoshka_batchtopk_sae import (
            MatryoshkaBatchTopKTrainingSAE,
            MatryoshkaBatchTopKTrainingSAEConfig,
        )
        from sae_lens.training.sae_trainer import SAETrainer
        from sae_lens.config import SAETrainerConfig
        from dmsae.sae import matryoshka_prefixes
        from dmsae.train import default_lr, geometric_median

        torch.manual_seed(seed)
        # the documented settings: normalize_activations="expected_average_only_in" (applied here by `norm_scale`, as
        # the runner's ActivationScaler does), apply_b_dec_to_input, decoder_init_norm 0.1 with W_enc = W_dec^T,
        # rescale_acts_by_decoder_norm, the TopK AuxK loss (aux_loss_coefficient 1) -- all SAELens defaults
        cfg = MatryoshkaBatchTopKTrainingSAEConfig(
            d_in=576, d_sae=F, k=K, matryoshka_widths=list(matryoshka_prefixes(F)), dtype="float32", device="cpu",
            normalize_activations="expected_average_only_in", apply_b_dec_to_input=True, decoder_init_norm=0.1,
            rescale_acts_by_decoder_norm=True, aux_loss_coefficient=1.0,
        )
        self.sae = MatryoshkaBatchTopKTrainingSAE(cfg)
        self.norm_scale = norm_scale
        if x0 is not None:
            with torch.no_grad():
                self.sae.b_dec.copy_(geometric_median(x0.float() * norm_scale))
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
        out = tr.step(x * self.norm_scale)
        tr.n_training_steps += 1
        return dict(loss=float(out.loss), mse=float(out.losses["mse_loss"]) / self.norm_scale**2)

    @torch.no_grad()
    def evaluate(self, x):
        "Per-level MSE in the units of `x` (BatchTopK over `x`), fraction of latents firing, L0."
        xs = x * self.norm_scale
        acts, _ = self.sae.encode_with_hidden_pre(xs)
        lm = [
            float((rec - xs).pow(2).sum(-1).mean()) / self.norm_scale**2
            for _, rec in self.sae._iterable_decode(acts, include_outer_loss=True)
        ]
        return lm, float((acts > 0).any(0).float().mean()), float((acts > 0).sum() / x.shape[0])


def saelens_norm_scale(x):
    "SAELens' `expected_average_only_in` factor for rows `x`: sqrt(d_in) / mean L2 norm (`ActivationScaler`)."
    from sae_lens.training.activation_scaler import ActivationScaler

    sc = ActivationScaler()
    it = iter(x.split(4096))
    sc.estimate_scaling_factor(x.shape[1], it, n_batches_for_norm_estimate=x.shape[0] // 4096)
    return sc.scaling_factor


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
    tr = DM(F, data, 1000) if lib == "dmsae" else SL(F, 1000, x0=data[:B])
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


def curve_png(rows, name, title):
    "Held-out FVU vs step of each trainer (rows of the curve CSV)."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for n in dict.fromkeys(r["trainer"] for r in rows):
        rr = [r for r in rows if r["trainer"] == n]
        ax.plot([r["step"] for r in rr], [r["heldout_fvu"] for r in rr], marker="o", ms=3, lw=1.2, label=n)
    ax.axhline(1, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("step (same batches, same order)")
    ax.set_ylabel("held-out FVU (full width)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    p = RESULTS / f"{name}.png"
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def wait_quiet(limit, max_wait):
    "Wait until the 1-minute load average is below `limit` (at most `max_wait` s); the load average then."
    t0 = time.time()
    while os.getloadavg()[0] >= limit and time.time() - t0 < max_wait:
        time.sleep(10)
    return os.getloadavg()[0]


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
def learning_curve(train, hold, F, k, steps, LB, every, norm_scale):
    """Held-out FVU every `every` steps of dmsae, SAELens as documented with dmsae's b_dec init, and SAELens as
    documented alone (b_dec at 0), all on the same batches in the same order; rows for the CSV."""
    global K
    K = k
    g = torch.Generator().manual_seed(0)
    order = []
    while len(order) < steps * LB:
        order += torch.randperm(train.shape[0], generator=g)[: train.shape[0] // LB * LB].tolist()
    order = torch.tensor(order[: steps * LB]).view(steps, LB)
    x0 = train[order[0]]
    trainers = {
        "dmsae": DM(F, x0, steps, LB),
        "SAELens (b_dec = geometric median)": SL(F, steps, LB, x0=x0, norm_scale=norm_scale),
        "SAELens (b_dec = 0)": SL(F, steps, LB, norm_scale=norm_scale),
    }
    var = float((hold - hold.mean(0)).pow(2).sum(1).mean())
    rows, secs = [], {n: [] for n in trainers}

    def evaluate(step):
        for n, tr in trainers.items():
            lm, alive, l0 = tr.evaluate(hold)
            rows.append(dict(step=step, trainer=n, heldout_fvu=lm[-1] / var, heldout_fvu_level0=lm[0] / var,
                             latents_firing=alive, l0=l0))

    evaluate(0)
    for s in range(steps):
        x = train[order[s]]
        names = list(trainers) if s % 2 == 0 else list(trainers)[::-1]
        for n in names:
            t0 = time.perf_counter()
            trainers[n].step(x)
            secs[n].append(time.perf_counter() - t0)
        if (s + 1) % every == 0:
            evaluate(s + 1)
            print(rows[-3:], flush=True)
    return rows, {n: statistics.median(v) for n, v in secs.items()}, trainers["dmsae"].lr, var


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="few rounds per cell; learning curve of 100 steps of 1024")
    ap.add_argument("--full", action="store_true", help="also width 65536")
    ap.add_argument("--synthetic", action="store_true", help="N(0, I) rows instead of the tiny activation cache")
    ap.add_argument("--curve-steps", type=int, default=None)
    ap.add_argument("--curve-batch", type=int, default=None)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-curve", action="store_true")
    ap.add_argument("--ks", type=int, nargs="+", default=[32, 128], help="k values of the throughput and memory tables")
    ap.add_argument("--widths", type=int, nargs="+", default=None, help="widths of the throughput and memory tables")
    ap.add_argument("--max-load", type=float, default=1.5, help="wait for a 1-minute load average below this ...")
    ap.add_argument("--max-wait", type=float, default=120, help="... for at most this many seconds before each cell")
    ap.add_argument("--name", default=None, help="result file name (default: train, or train-quick with --quick)")
    ap.add_argument("--_mem", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    global K
    if a._mem:
        return mem_child(a._mem[0], int(a._mem[1]), a.synthetic, int(a._mem[2]))
    from dmsae.config import native_bf16

    bf16 = native_bf16("cpu")
    out_name = a.name or ("train-quick" if a.quick else "train")
    T0 = time.perf_counter()
    widths = a.widths or ([4096, 16384] + ([65536] if a.full else []))
    plan = {4096: (2, 2) if a.quick else (4, 2), 16384: (2, 1) if a.quick else (4, 1), 65536: (2, 1)}
    plan = {F: plan.get(F, (2, 1)) for F in widths}  # (rounds, block) per width
    curve_steps = a.curve_steps or (100 if a.quick else 300)
    curve_batch = a.curve_batch or (1024 if a.quick else B)
    data, src = load_data(a.synthetic)
    d = data.shape[1]
    hold, train = data[-4096:], data[:-4096]  # held-out rows of the learning curve
    batches = [data[i * B : (i + 1) * B] for i in range(data.shape[0] // B)]
    norm_scale = saelens_norm_scale(train)
    cpu_line = (f"{machine()}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}; native bf16 "
                f"{'yes' if bf16 else 'no'}")
    print(f"data: {src}; d={d}; threads {torch.get_num_threads()}; {cpu_line}", flush=True)

    # 1: the learning curve (is the baseline learning?), before any speed is compared
    curve, curve_s = [], {}
    if not a.no_curve:
        load0 = wait_quiet(a.max_load, a.max_wait)
        curve, curve_s, lr, var = learning_curve(train, hold, 4096, 32, curve_steps, curve_batch,
                                                 max(1, curve_steps // 10), norm_scale)
        import csv
        RESULTS.mkdir(exist_ok=True)
        with open(RESULTS / f"{out_name}_curve.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(curve[0]))
            w.writeheader()
            w.writerows(curve)
        png = curve_png(curve, f"{out_name}_curve", f"d_sae 4096, k 32, {curve_batch} tokens/step, lr {lr:.1e}; "
                        f"held-out {hold.shape[0]:,} rows")
        curve_load = (load0, os.getloadavg()[0])
        print(f"[{time.perf_counter() - T0:.0f}s]", flush=True)

    # 2: throughput, float32 vs float32 (and dmsae with bf16 pre-activations where the CPU has native bf16)
    rows, skipped = [], []
    for F in widths:
        for k in a.ks:
            K = k
            if not fits(F, k):
                skipped.append(f"F={F}, k={k}: estimated peak {need_GB(F, k):.1f} GB > 80% of MemAvailable "
                               f"{avail_GB():.1f} GB")
                continue
            rounds, block = plan[F]
            load0 = wait_quiet(a.max_load, a.max_wait)
            dm, sl, bd = DM(F, data, 10_000), SL(F, 10_000, x0=batches[0], norm_scale=norm_scale), Bound(F, d)
            fns = {"dmsae": dm.step, "SAELens": sl.step, "fwd": bd.fwd}
            if bf16:
                dmb = DM(F, data, 10_000, preact="bfloat16")
                Wb, Hb = bd.W.bfloat16(), torch.empty(B, F, dtype=torch.bfloat16)
                fns["dmsae_bf16"] = dmb.step
                fns["fwd_bf16"] = lambda x: torch.mm(x.bfloat16(), Wb, out=Hb)
            for f in fns.values():
                f(batches[0])  # warm-up (allocations, Adam state)
            t = interleaved(fns, batches, rounds, block)
            m = {n: statistics.median(v) for n, v in t.items()}
            r = dict(d_sae=F, k=k, dmsae_f32_s=m["dmsae"], SAELens_f32_s=m["SAELens"],
                     speedup_f32=m["SAELens"] / m["dmsae"])
            r["ge_3x"] = "yes" if r["speedup_f32"] >= 3 else "no"
            r["dmsae_f32_x_matmul_f32"] = m["dmsae"] / m["fwd"]
            if bf16:
                r["dmsae_bf16_s"] = m["dmsae_bf16"]
                r["speedup_bf16_vs_SAELens_f32"] = m["SAELens"] / m["dmsae_bf16"]
                r["dmsae_bf16_x_matmul_bf16"] = m["dmsae_bf16"] / m["fwd_bf16"]
                r["matmul_bf16_over_f32"] = m["fwd_bf16"] / m["fwd"]
            r["steps_each"] = len(t["dmsae"])
            r["load_1min"] = f"{load0:.1f}-{os.getloadavg()[0]:.1f}"
            rows.append(r)
            del dm, sl, bd, fns
            print(r, f"[{time.perf_counter() - T0:.0f}s]", flush=True)

    # peak memory, a fresh process per (library, width)
    mem_rows = []
    if not (a.no_memory or a.quick):
        for F in widths:
            for k in a.ks:
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

    # profile of our step
    PF = 4096 if a.quick else 16384
    psteps = 2 if a.quick else 3
    K = 32
    ph, op = profile_dm(PF, data, psteps)

    # ---- write
    body = (
        f"CPU: {cpu_line}.\n\nData: {src}, scaled to mean squared norm d={d}; d_in {d}, batch {B} tokens in the "
        f"throughput table. Matryoshka groups = dmsae's default fractions (1/32, 1/16, 1/8, 1/4, rest), i.e. SAELens "
        f"`matryoshka_widths` = dmsae's cumulative prefixes. Both: Adam(0.9, 0.999), lr 2e-4/sqrt(F/2^14), grad clip "
        f"1, dmsae's warm-up/decay schedule. SAELens `MatryoshkaBatchTopKTrainingSAE` + `SAETrainer.step` as its "
        f"training docs configure BatchTopK / Matryoshka BatchTopK: `normalize_activations=\"expected_average_only_"
        f"in\"` (its `ActivationScaler` factor sqrt(d)/E||x|| = {norm_scale:.4f} on these rows, applied to every "
        f"batch), `apply_b_dec_to_input`, `decoder_init_norm=0.1` with W_enc = W_dec^T, `rescale_acts_by_decoder_"
        f"norm`, AuxK coefficient 1 (all its defaults), and `b_dec` set to the geometric median of the first batch "
        f"(dmsae's init; SAELens 6.x has no `b_dec` init option and starts it at 0, see the learning curve).\n\n"
    )
    if curve:
        last = {r["trainer"]: r for r in curve if r["step"] == curve_steps}
        body += (
            f"### Learning curve (d_sae 4096, k 32, {curve_steps} steps of {curve_batch} tokens)\n\n"
            f"The same batches in the same order for all three (seed 0, {train.shape[0]:,} training rows), FVU of "
            f"the full-width BatchTopK reconstruction of {hold.shape[0]:,} held-out rows (the last rows of the cache, "
            f"never trained on; denominator {var:.1f}). Load average {curve_load[0]:.1f} at the start, "
            f"{curve_load[1]:.1f} at the end. Data: [{out_name}_curve.csv]({out_name}_curve.csv), plot: "
            f"[{png.name}]({png.name}).\n\n"
            + table([dict(step=r["step"], trainer=r["trainer"], heldout_fvu=r["heldout_fvu"],
                          latents_firing=f"{100 * r['latents_firing']:.0f}%") for r in curve
                     if r["step"] in (0, curve_steps // 2, curve_steps) or r["step"] == curve_steps // 10])
            + "\n\nMedian seconds per step in this run: "
            + ", ".join(f"{n} {v:.3f}" for n, v in curve_s.items())
            + f". Final held-out FVU: "
            + ", ".join(f"{n} {r['heldout_fvu']:.3f}" for n, r in last.items())
            + ".\n\n"
        )
    sp = {(r["d_sae"], r["k"]): r["speedup_f32"] for r in rows}
    body += (
        "### Training-step time\n\n"
        + table(rows)
        + "\n\nOne step = dmsae: `dmsae.train.train_step` (`training_loss`, backward, core/parallel-gradient removal, "
        "clip, Adam, schedule, decoder renormalisation, statistics); SAELens: `SAETrainer.maybe_reset_sparsity` + "
        "`SAETrainer.step` (`training_forward_pass`, firing statistics, backward, clip, Adam, schedule) on the "
        "normalised batch. Seconds are medians over alternating blocks (order reversed each round) in one process. "
        "`speedup_f32` = SAELens float32 / dmsae float32; `dmsae_bf16` = dmsae with `preact_dtype=\"bfloat16\"` "
        "(the [B, F] pre-activations that BatchTopK ranks in bf16; weights, gradients and Adam in float32), "
        "`speedup_bf16_vs_SAELens_f32` = SAELens float32 / dmsae bf16 (SAELens has no bf16 CPU path to compare). "
        "`x_matmul` = the step over one encoder matmul X[B,d] @ W_enc[d,F] of the same dtype (2 B d F FLOPs, "
        "preallocated output), the one dense product any exact BatchTopK step needs. `load_1min` = the load average "
        "before and after the cell. No latent is dead during these steps, so neither runs its AuxK path. "
        "**dmsae vs SAELens, float32: "
        + ", ".join(f"{v:.1f}x at F={f}, k={kk}" for (f, kk), v in sp.items())
        + "** (target >= 3x in every cell).\n\n"
        + ("Skipped by the memory guard: " + "; ".join(skipped) + ".\n\n" if skipped else "")
    )
    if mem_rows:
        body += (
            "### Peak memory\n\n"
            + table(mem_rows)
            + f"\n\nPeak = VmHWM - VmRSS in a fresh process per cell: VmHWM is reset (`/proc/self/clear_refs`) after "
            f"imports and data loading, then the SAE, its optimiser and {MEM_STEPS} training steps run. "
            f"`params_grads_adam_MB` = 8·F·d float32 (W_enc, W_dec, their gradients and two Adam moments).\n\n"
        )
    body += (
        f"### Where the time goes in a dmsae step (F={PF}, k 32, float32, torch.profiler, {psteps} steps)\n\n"
        + table(ph)
        + "\n\nTop operators by self CPU time:\n\n"
        + table(op)
        + f"\n\nWhole script: {time.perf_counter() - T0:.0f}s."
    )
    write(out_name, "SAE training step: dmsae vs SAELens (Matryoshka BatchTopK)", body,
          "python bench/bench_train.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
