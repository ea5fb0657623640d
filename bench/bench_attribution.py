#!/usr/bin/env python
"""Attribution tokens/s: `dmsae.attribution` from cached residuals (only the blocks above the hook run) vs a full-model
forward + backward on the same tokens with the same SAE spliced in, and a profile of our batch.

    python bench/bench_attribution.py [--profile small] [--rounds 4] [--quick]

`--quick` (used by `make bench`) writes `results/attribution-quick.md`, otherwise `results/attribution.md`.

Three ways to get the same gradient x activation scores of one batch of held-out contexts (`attribution_batch_contexts`):
- `cached` (ours): the body of `attribute`'s loop: read the rows from the held-out cache, `splice_and_score`, mask, accumulate.
- `full fwd+bwd`: the whole model from the token ids, the reconstruction spliced in at the hook by a forward hook, and the
  backward pass through all blocks (gradient w.r.t. the input embeddings; weights frozen, so no weight gradients).
  This is a "full-model forward + backward", the cost the issue's 1.7x target is stated against.
- `full fwd, upper bwd`: the best one can do without a cache: blocks 0..L under no_grad, then `splice_and_score`.
Timings alternate the three per batch (order reversed each round) in one process; tables report medians.
"""
import os
for _k, _v in dict(OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled").items():
    os.environ.setdefault(_k, _v)
import argparse, statistics, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write

def make_sae(cfg, x, seed=0):
    "A freshly initialised SAE of the profile's width whose inference threshold gives about k active latents per token."
    from dmsae.train import init_sae
    sae = init_sae(cfg.replace(seed=seed), x.shape[-1], None, x[:1024])
    with torch.no_grad():
        h = sae.pre_acts(x[:1024]); kth = h.flatten().kthvalue(h.numel() - cfg.k * h.shape[0]).values
        sae.update_threshold(float(kth))
    return sae.requires_grad_(False)

def cached_batch(lm, sae, cache, tokens, b, e, n0, thr):
    "One iteration of `attribute`'s loop (cache read included)."
    from dmsae.attribution import splice_and_score, score_mask
    T = tokens.shape[1]
    x = cache.rows_range(b * T, (e - b) * T).float().view(e - b, T, -1)
    tk = torch.from_numpy(tokens[b:e]).long()
    a, loss, npred = splice_and_score(lm, sae, x, tk, n0, thr)
    m = score_mask(tk, lm.bos_id, x, thr)
    am = a[m].double()
    return am.abs().sum(0), am.sum(0), float(loss)

def full_batch(lm, sae, tokens, b, e, n0, thr, layer):
    "Whole model from the token ids, reconstruction spliced in by a hook, backward through every block."
    from dmsae.attribution import score_mask
    from dmsae.model import per_token_loss
    tk = torch.from_numpy(tokens[b:e]).long()
    st = {}
    def splice(mod, inp, out):
        x = out[0] if isinstance(out, tuple) else out
        mask = score_mask(tk, lm.bos_id, x.detach(), thr)
        f = sae.encode(x)[..., :n0]; f.retain_grad()
        x_hat = sae.b_dec + f @ sae.W_dec[:n0]
        st.update(f=f, mask=mask)
        r = torch.where(mask[..., None], x_hat, x)
        return (r, *out[1:]) if isinstance(out, tuple) else r
    emb = lm.model.get_input_embeddings()(tk).detach().requires_grad_(True)
    h = lm.layers[layer].register_forward_hook(splice)
    try: logits = lm.model(inputs_embeds=emb, use_cache=False).logits
    finally: h.remove()
    lt = per_token_loss(logits, tk)
    loss = (lt * st["mask"][:, :-1]).sum(); loss.backward(); loss = loss.detach()
    a = (st["f"] * st["f"].grad).detach() * st["mask"][..., None]
    am = a[st["mask"]].double()
    return am.abs().sum(0), am.sum(0), float(loss)

def nocache_batch(lm, sae, tokens, b, e, n0, thr, layer):
    "Blocks 0..L under no_grad from the token ids, then the same `splice_and_score` as the cached path."
    from dmsae.attribution import splice_and_score, score_mask
    tk = torch.from_numpy(tokens[b:e]).long()
    with torch.no_grad(): x = lm.run_to_hook(tk, layer).float()
    a, loss, npred = splice_and_score(lm, sae, x, tk, n0, thr)
    am = a[score_mask(tk, lm.bos_id, x, thr)].double()
    return am.abs().sum(0), am.sum(0), float(loss)

def profile_cached(lm, sae, cache, tokens, bc, n0, thr, n_batches):
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(n_batches): cached_batch(lm, sae, cache, tokens, i * bc, (i + 1) * bc, n0, thr)
    ev = prof.key_averages()
    tot = sum(e.self_cpu_time_total for e in ev)
    bwd = sum(e.self_cpu_time_total for e in ev if "Backward" in e.key or e.key.startswith("autograd::"))
    # attribute every op's self time to forward or backward: ops run under autograd::engine are backward
    ops = sorted(ev, key=lambda e: -e.self_cpu_time_total)[:14]
    rows = [dict(op=f"`{e.key}`", calls_per_batch=e.count // n_batches, self_ms_per_batch=e.self_cpu_time_total / 1e3 / n_batches,
                 share=f"{100 * e.self_cpu_time_total / tot:.0f}%") for e in ops]
    return rows, tot / 1e3 / n_batches, prof

def phase_split(prof, n_batches):
    "Self CPU time under the backward engine vs outside it (forward), from the profiler's event tree."
    fwd = bwd = 0.0
    def walk(e, in_bwd):
        nonlocal fwd, bwd
        in_bwd = in_bwd or e.name.startswith("autograd::engine::evaluate_function")
        if in_bwd: bwd += e.self_cpu_time_total
        else: fwd += e.self_cpu_time_total
        for c in e.cpu_children: walk(c, in_bwd)
    for e in prof.events():
        if e.cpu_parent is None: walk(e, False)
    return fwd / 1e3 / n_batches, bwd / 1e3 / n_batches

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="small", help="config profile whose held-out cache, width and batch are used")
    ap.add_argument("--rounds", type=int, default=4, help="batches per method (interleaved)")
    ap.add_argument("--quick", action="store_true", help="2 rounds, 1 profiled batch")
    a = ap.parse_args()
    if a.quick: a.rounds = min(a.rounds, 2)
    T0 = time.perf_counter()
    torch.manual_seed(0)
    from dmsae.config import get_config
    from dmsae.model import load_lm
    from dmsae.activations import build_activation_cache
    from dmsae.data import Contexts
    cfg = get_config(a.profile)
    lm = load_lm(cfg.model_name, cfg.device, cfg.model_dtype)
    held = build_activation_cache(cfg, "heldout", lm, progress=False)     # existing cache is reused (read-only)
    tokens = Contexts.load(held.root / "tokens.npz").tokens
    N, T = tokens.shape; L = cfg.hook_layer; bc = cfg.attribution_batch_contexts; thr = held.meta.get("norm_threshold")
    sae = make_sae(cfg, held.rows_range(0, 8 * T).float())
    n0 = sae.cfg.level_widths[0]
    print(f"{held}; {N}x{T} tokens; layer {L} of {lm.n_layers}; SAE {sae}; batch {bc} contexts", flush=True)

    # correctness: the three paths give the same scores on batch 0 (the cache is float16, so not bit-equal)
    r_c, r_f, r_n = (cached_batch(lm, sae, held, tokens, 0, bc, n0, thr), full_batch(lm, sae, tokens, 0, bc, n0, thr, L),
                     nocache_batch(lm, sae, tokens, 0, bc, n0, thr, L))
    rel = lambda p, q: float((p[0] - q[0]).norm() / q[0].norm())
    agree = dict(full_vs_cached_rel_err=rel(r_c, r_f), nocache_vs_full_rel_err=rel(r_n, r_f),
                 loss_cached=r_c[2], loss_full=r_f[2])
    print(agree, flush=True)

    fns = {"cached (ours)": lambda b, e: cached_batch(lm, sae, held, tokens, b, e, n0, thr),
           "full fwd+bwd": lambda b, e: full_batch(lm, sae, tokens, b, e, n0, thr, L),
           "full fwd, upper bwd": lambda b, e: nocache_batch(lm, sae, tokens, b, e, n0, thr, L)}
    names = list(fns); times = {n: [] for n in names}; nb = N // bc; loads = []
    for r in range(a.rounds):
        i = (r + 1) % nb; b, e = i * bc, (i + 1) * bc
        for n in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter(); fns[n](b, e); times[n].append(time.perf_counter() - t0)
        loads.append(os.getloadavg()[0]); print(r, {n: round(v[-1], 2) for n, v in times.items()}, f"load {loads[-1]:.2f}", flush=True)
    ntok = bc * T
    med = {n: statistics.median(v) for n, v in times.items()}
    rows = [dict(method=n, s_per_batch=med[n], tokens_per_s=ntok / med[n], ours_speedup=med[n] / med[names[0]], batches=len(times[n]))
            for n in names]
    sp_full = med["full fwd+bwd"] / med[names[0]]; sp_nc = med["full fwd, upper bwd"] / med[names[0]]

    # profile of our batch
    nprof = 1 if a.quick else 2
    ops, tot_ms, prof = profile_cached(lm, sae, held, tokens, bc, n0, thr, nprof)
    fwd_ms, bwd_ms = phase_split(prof, nprof)
    print(table(rows), "\n", table(ops), flush=True)

    nl = lm.n_layers; d = lm.d_model; V = lm.vocab_size
    blk = sum(p.numel() for p in lm.layers[0].parameters())
    body = (f"Held-out cache `{held.root.name}` ({N} contexts x {T} tokens, {held.dtype}); {lm.name}, hook after block {L} "
            f"of {nl} (blocks {L + 1}..{nl - 1} run from the cache); SAE width {sae.cfg.d_sae} (random init, threshold set for "
            f"~{cfg.k} active latents/token), candidates = the most nested level ({n0} latents); batch {bc} contexts = {ntok} "
            f"tokens; float32; torch threads {torch.get_num_threads()}. Load average (1 min) during the timed rounds: "
            f"{min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} cores (shared machine).\n\n" + table(rows) +
            f"\n\n**Cached attribution is {sp_full:.2f}x a full-model forward+backward** (target >= 1.7x) and {sp_nc:.2f}x the best "
            f"cache-free path (lower blocks forward-only). Agreement on one batch: relative L2 difference of the summed |a| "
            f"between the cached and full paths {agree['full_vs_cached_rel_err']:.1e} (the cache stores float16), between the "
            f"two full paths {agree['nocache_vs_full_rel_err']:.1e}; spliced loss {agree['loss_cached']:.2f} vs "
            f"{agree['loss_full']:.2f} (summed over the batch).\n\n"
            f"Why not 2x: per token a block costs ~2·{blk / 1e6:.1f}M FLOPs forward, the tied LM head ~2·{d * V / 1e6:.1f}M "
            f"({d} x {V}); with frozen weights the backward computes input gradients only (about the forward's cost). The cached "
            f"path runs {nl - L - 1} blocks + head forward and backward, the full path {nl} blocks + head: the FLOP ratio is "
            f"({nl}·{blk / 1e6:.1f} + {d * V / 1e6:.1f}) / ({nl - L - 1}·{blk / 1e6:.1f} + {d * V / 1e6:.1f}) = "
            f"{(nl * blk + d * V) / ((nl - L - 1) * blk + d * V):.2f}, because the head is as large as {d * V / blk:.0f} blocks.\n\n"
            f"### Where the time goes in a cached batch (torch.profiler, {nprof} batch{'es' if nprof > 1 else ''})\n\n"
            f"Total self CPU {tot_ms:,.0f} ms per batch: forward {fwd_ms:,.0f} ms ({100 * fwd_ms / (fwd_ms + bwd_ms):.0f}%), "
            f"backward {bwd_ms:,.0f} ms ({100 * bwd_ms / (fwd_ms + bwd_ms):.0f}%). Top operators by self CPU time:\n\n" + table(ops) +
            f"\n\nWhole script: {time.perf_counter() - T0:.0f}s.")
    write("attribution-quick" if a.quick else "attribution", "Attribution from cached residuals vs full-model forward+backward", body,
          "python bench/bench_attribution.py " + " ".join(sys.argv[1:]))

if __name__ == "__main__": main()
