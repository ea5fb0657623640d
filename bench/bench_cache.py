#!/usr/bin/env python
"""Activation caching: tokens/s of `build_activation_cache` vs a plain forward to the same hook in the same run,
and peak memory while streaming shuffled batches from a cache larger than the loader's buffer.

    python bench/bench_cache.py [--tokens 32768] [--stream-gb 2]
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write

def plain_forward(lm, tokens, layer, bs):
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in range(0, len(tokens), bs): lm.run_to_hook(tokens[b:b + bs], layer)
    return tokens.numel() / (time.perf_counter() - t0)

STREAM = r"""
import sys, time, torch
from dmsae.activations import ActivationCache
rss = lambda k: int([l for l in open('/proc/self/status') if l.startswith(k)][0].split()[1]) / 1024
c = ActivationCache(sys.argv[1]); it = c.batches(4096, seed=0, buffer_rows=65536)
base = rss('VmRSS'); t0 = time.perf_counter(); n = 0
for b in it:
    n += len(b)
    if n >= c.n_rows: break
dt = time.perf_counter() - t0
print(base, rss('VmHWM'), n / dt, c.n_rows)
"""

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--tokens", type=int, default=32768); ap.add_argument("--stream-gb", type=float, default=2.0)
    ap.add_argument("--context-size", type=int, default=128); a = ap.parse_args()
    from dmsae.config import get_config, dmsae_home
    from dmsae.model import load_lm
    real = dmsae_home()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"; home.mkdir()
        for sub in ("corpus", "models"): (home / sub).symlink_to(real / sub)
        os.environ["DMSAE_HOME"] = str(home)
        from dmsae.activations import build_activation_cache, load_contexts
        cfg = get_config("small", n_train_tokens=a.tokens, context_size=a.context_size, shard_tokens=8192)
        lm = load_lm(cfg.model_name)
        tokens = torch.from_numpy(load_contexts(cfg, lm.tokenizer, "train").tokens).long()
        plain_forward(lm, tokens[:cfg.cache_batch_contexts], cfg.hook_layer, cfg.cache_batch_contexts)  # warm-up
        p1 = plain_forward(lm, tokens, cfg.hook_layer, cfg.cache_batch_contexts)
        t0 = time.perf_counter(); c = build_activation_cache(cfg, "train", lm, progress=False); t_cache = time.perf_counter() - t0
        cache_tps = c.meta["tokens_per_s"]
        p2 = plain_forward(lm, tokens, cfg.hook_layer, cfg.cache_batch_contexts)
        with torch.inference_mode():
            t0 = time.perf_counter()
            for b in range(0, len(tokens), cfg.cache_batch_contexts): lm.logits(tokens[b:b + cfg.cache_batch_contexts])
            full = tokens.numel() / (time.perf_counter() - t0)
        plain = (p1 + p2) / 2
        rows = [dict(what="plain forward to blocks.14 (mean of before/after)", tokens_per_s=plain, ratio=1.0),
                dict(what="build_activation_cache (forward + fp16 shards + hashes)", tokens_per_s=cache_tps, ratio=cache_tps / plain),
                dict(what="full forward with logits (for reference)", tokens_per_s=full, ratio=full / plain)]
        body = table(rows) + (f"\n\n{a.tokens:,} tokens in contexts of {a.context_size}, batches of {cfg.cache_batch_contexts} contexts; "
                              f"whole cache call {t_cache:.1f}s (tokenising included). Target: caching >= 0.9 x plain forward.")
        # streaming: a synthetic float16 cache of stream-gb GB, read once through in shuffled batches
        from dmsae.activations import CacheWriter
        d = 576; rows_per = 262_144; n_sh = max(1, int(a.stream_gb * 2**30 / (rows_per * d * 2)))
        w = CacheWriter(Path(tmp) / "big", d_in=d, dtype="float16", meta=dict(key="bench"))
        x = torch.randn(rows_per, d)
        for i in range(n_sh): w.write_shard(i, x)
        w.finish(); del x
        r = subprocess.run([sys.executable, "-c", STREAM, str(Path(tmp) / "big")], capture_output=True, text=True, check=True)
        base, peak, rps, n = map(float, r.stdout.split())
        gb = n * d * 2 / 2**30
        body += "\n\n" + table([dict(cache_GB=gb, rows=int(n), batch=4096, buffer_rows=65536, rss_after_first_batch_MB=base,
                                     peak_rss_MB=peak, rows_per_s=rps)])
        body += "\n\nStreaming reads one shuffled epoch of a float16 cache with `ActivationCache.batches` (float32 batches); peak RSS is the process's VmHWM (torch itself is ~300 MB). Target: < 1.5 GB for a 2 GB cache, flat in the cache size."
    write("cache", "Activation caching and streaming", body, "python bench/bench_cache.py " + " ".join(sys.argv[1:]))

if __name__ == "__main__": main()
