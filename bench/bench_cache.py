#!/usr/bin/env python
"""Activation caching: tokens/s of `build_activation_cache` vs a plain forward to the same hook in the same run,
and peak memory while streaming shuffled batches from a cache larger than the loader's buffer.

    python bench/bench_cache.py [--tokens 32768] [--ram-budget-gb 1] [--quick]

The streaming cache is twice the RAM budget; peak RSS is recorded after 1/8, 1/4, 1/2 and all of it has been read, to
show it stays flat. `--quick` (used by `make bench`: 16,384 tokens) writes `results/cache-quick.md`, otherwise
`results/cache.md`.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import reset_peak, rss, shared_home, table, write_result

def plain_forward(lm, tokens, layer, bs):
    "Tokens/s of running the model to the hook in batches of `bs` contexts."
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in range(0, len(tokens), bs): lm.run_to_hook(tokens[b:b + bs], layer)
    return tokens.numel() / (time.perf_counter() - t0)

def full_forward(lm, tokens, bs):
    "Tokens/s of the whole model with logits, in batches of `bs` contexts."
    with torch.inference_mode():
        t0 = time.perf_counter()
        for b in range(0, len(tokens), bs): lm.logits(tokens[b:b + bs])
        return tokens.numel() / (time.perf_counter() - t0)

STREAM = r"""
import sys, time, torch
from dmsae.activations import ActivationCache
rss = lambda k: int([l for l in open('/proc/self/status') if l.startswith(k)][0].split()[1]) / 1024
c = ActivationCache(sys.argv[1])
it = c.batches(4096, seed=0, buffer_rows=65536)
base = rss('VmRSS')
t0 = time.perf_counter()
n = 0
marks = [c.n_rows // 8, c.n_rows // 4, c.n_rows // 2, c.n_rows]
hwm = []
for b in it:
    if n == 0: first = rss('VmHWM')
    n += len(b)
    while marks and n >= marks[0]:
        hwm.append(rss('VmHWM'))
        marks.pop(0)
    if n >= c.n_rows: break
dt = time.perf_counter() - t0
print(base, first, *hwm, n / dt, c.n_rows)
"""

CACHE_RSS = r"""
import sys, json
rss = lambda k: int([l for l in open('/proc/self/status') if l.startswith(k)][0].split()[1]) / 1024
from dmsae.config import get_config
from dmsae.model import load_lm
from dmsae.activations import build_activation_cache, load_contexts
lm = load_lm()
cfg = get_config("small", n_train_tokens=int(sys.argv[1]), context_size=int(sys.argv[2]), shard_tokens=8192)
load_contexts(cfg, lm.tokenizer, "train")
r0 = rss('VmRSS')
open('/proc/self/clear_refs', 'w').write('5')
build_activation_cache(cfg, "train", lm, progress=False)
print(json.dumps(dict(start=r0, peak_above_start=rss('VmHWM') - r0)))
"""

def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--ram-budget-gb", type=float, default=1.0)
    ap.add_argument("--context-size", type=int, default=128)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rss-tokens", type=int, nargs="*", default=None,
                    help="cache sizes for the caching-RSS table (default 8192 32768 65536; none with --quick)")
    a = ap.parse_args()
    if a.rss_tokens is None: a.rss_tokens = [] if a.quick else [8192, 32768, 65536]
    if a.quick: a.tokens = min(a.tokens, 16384)
    a.stream_gb = 2 * a.ram_budget_gb
    return a

def caching_speed(a) -> str:
    "Caching vs a plain forward to the hook (before and after) and a full forward, in the current DMSAE_HOME."
    from dmsae.config import get_config
    from dmsae.model import load_lm
    from dmsae.activations import build_activation_cache, load_contexts
    cfg = get_config("small", n_train_tokens=a.tokens, context_size=a.context_size, shard_tokens=8192)
    lm = load_lm(cfg.model_name)
    bs = cfg.cache_batch_contexts
    tokens = torch.from_numpy(load_contexts(cfg, lm.tokenizer, "train").tokens).long()
    plain_forward(lm, tokens[:bs], cfg.hook_layer, bs)  # warm-up
    p1 = plain_forward(lm, tokens, cfg.hook_layer, bs)
    rss0 = rss("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    c = build_activation_cache(cfg, "train", lm, progress=False)
    t_cache = time.perf_counter() - t0
    cache_peak = rss("VmHWM") - rss0
    cache_tps = c.meta["tokens_per_s"]
    p2 = plain_forward(lm, tokens, cfg.hook_layer, bs)
    full = full_forward(lm, tokens, bs)
    plain = (p1 + p2) / 2
    rows = [dict(what="plain forward to blocks.14 (mean of before/after)", tokens_per_s=plain, ratio=1.0),
            dict(what="build_activation_cache (forward + fp16 shards + hashes)", tokens_per_s=cache_tps,
                 ratio=cache_tps / plain),
            dict(what="full forward with logits (for reference)", tokens_per_s=full, ratio=full / plain)]
    return table(rows) + (
        f"\n\n{a.tokens:,} tokens in contexts of {a.context_size}, batches of {bs} contexts; "
        f"whole cache call {t_cache:.1f}s (tokenising included). Target: caching >= 0.9 x plain forward. "
        f"Peak RSS while caching: {cache_peak:,.0f} MB above the RSS before the call ({rss0:,.0f} MB, model loaded; "
        f"shards of {cfg.shard_tokens:,} rows). Load average (1 min): "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores.")

def caching_rss(a, tmp: Path, real: Path) -> str:
    "Peak RSS while caching vs cache size, a fresh process and home per size (model loaded before the reset)."
    rr = []
    for n in a.rss_tokens:
        h2 = shared_home(tmp / f"home-rss-{n}", real)           # a fresh home: the cache is really built
        r = subprocess.run([sys.executable, "-c", CACHE_RSS, str(n), str(a.context_size)], capture_output=True,
                           text=True, check=True, env={**os.environ, "DMSAE_HOME": str(h2)})
        v = json.loads(r.stdout.strip().splitlines()[-1])
        rr.append(dict(tokens_cached=n, rss_before_MB=v["start"], peak_above_before_MB=v["peak_above_start"]))
        print(rr[-1], flush=True)
    return ("\n\nPeak RSS while caching vs the number of tokens cached (a fresh process per size; VmHWM reset after "
            "the model is loaded and the contexts tokenised):\n\n" + table(rr))

def streaming(a, tmp: Path) -> str:
    "A synthetic float16 cache of `stream_gb` GB, read once through in shuffled batches by a fresh process."
    from dmsae.activations import CacheWriter
    d = 576
    rows_per = 262_144
    n_sh = max(1, int(a.stream_gb * 2**30 / (rows_per * d * 2)))
    w = CacheWriter(tmp / "big", d_in=d, dtype="float16", meta=dict(key="bench"))
    x = torch.randn(rows_per, d)
    for i in range(n_sh): w.write_shard(i, x)
    w.finish()
    del x
    r = subprocess.run([sys.executable, "-c", STREAM, str(tmp / "big")], capture_output=True, text=True, check=True)
    v = list(map(float, r.stdout.split()))
    base, first, hw, rps, n = v[0], v[1], v[2:6], v[6], v[7]
    gb = n * d * 2 / 2**30
    rows = [dict(GB_read=gb * f, rows_read=int(n * f), peak_rss_MB=h, growth_since_first_batch_MB=h - first)
            for f, h in zip((1 / 8, 1 / 4, 1 / 2, 1), hw)]
    return ("\n\n" + table(rows) +
            f"\n\nStreaming one shuffled epoch of a {gb:.2f} GB float16 cache ({int(n):,} rows x {d}) = twice the RAM "
            f"budget of {a.ram_budget_gb:g} GB, with `ActivationCache.batches(4096, buffer_rows=65536)` (float32 "
            f"batches), {rps:,.0f} rows/s. RSS before the first batch {base:.0f} MB (imports and the open cache), peak "
            f"after the first batch {first:.0f} MB. Peak RSS is the process's VmHWM. Target: under the budget and flat "
            f"in the amount read.")

def main():
    a = parse_args()
    from dmsae.config import dmsae_home
    real = dmsae_home()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DMSAE_HOME"] = str(shared_home(Path(tmp) / "home", real))
        body = caching_speed(a)
        if a.rss_tokens: body += caching_rss(a, Path(tmp), real)
        body += streaming(a, Path(tmp))
    write_result("cache", a.quick, "Activation caching and streaming", body)

if __name__ == "__main__": main()
