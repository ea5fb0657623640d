"""Fault tests for the activation cache: a build killed mid-way resumes to the same bytes; streaming stays flat."""
import json, subprocess, sys
from pathlib import Path
import pytest, torch
from conftest import kill_when, run_py, shared_home, start_py

BUILD = """
import json, sys
from dmsae.config import get_config
from dmsae.activations import build_activation_cache
over = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}   # e.g. a small random model instead of SmolLM2
cfg = get_config("tiny", **{**dict(n_train_tokens=8192, shard_tokens=1024, cache_batch_contexts=4), **over})
c = build_activation_cache(cfg, "train", progress=False)
print(c.root)
"""

def build(home: Path, **over) -> Path:
    "Run `BUILD` (config overrides `over`) in a subprocess with `home` as DMSAE_HOME; the cache's folder."
    r = run_py(BUILD, json.dumps(over), env={"DMSAE_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip().splitlines()[-1])

def test_killed_build_resumes_to_identical_bytes(home, tmp_path, tiny_model):
    # a small random model and many small shards: the build lasts long enough to be killed between two shards
    over = dict(model_name=tiny_model, hook_layer=2, n_train_tokens=32768, shard_tokens=256, cache_batch_contexts=1)
    # an uninterrupted build in a second home gives the reference bytes
    ref_root = build(shared_home(tmp_path / "ref", home), **over)
    # start the same build, kill it with SIGKILL once at least one shard is done but before the end
    p = start_py(BUILD, json.dumps(over), env={"DMSAE_HOME": str(home)})
    seen = {}
    def some_shards_done():
        ms = list((home / "activations").glob("train-*/manifest.json")) if (home / "activations").exists() else []
        if not ms: return False
        try: seen["man"] = json.loads(ms[0].read_text())
        except json.JSONDecodeError: seen["man"] = None
        man = seen["man"]
        return bool(man) and 1 <= len(man["shards"]) and not man["complete"]
    kill_when(p, some_shards_done)
    man = seen.get("man")
    assert man is not None and not man["complete"], "the build finished before it could be killed"
    n_before = len(man["shards"])
    root = build(home, **over)
    final = json.loads((root / "manifest.json").read_text())
    assert final["complete"] and len(final["shards"]) > n_before
    ref = json.loads((ref_root / "manifest.json").read_text())
    assert [s["sha256"] for s in final["shards"]] == [s["sha256"] for s in ref["shards"]]
    for f in sorted(ref_root.glob("shard_*.npy")): assert (root / f.name).read_bytes() == f.read_bytes()

def test_rebuild_of_finished_cache_is_a_no_op(home, tiny_model):
    root = build(home, model_name=tiny_model, hook_layer=2)
    mt = {f: f.stat().st_mtime_ns for f in root.iterdir()}
    build(home, model_name=tiny_model, hook_layer=2)
    assert {f: f.stat().st_mtime_ns for f in root.iterdir()} == mt

def test_corrupt_manifest_names_the_fix(tmp_path):
    from dmsae.activations import ActivationCache, CacheError
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CacheError, match="corrupt.*rebuild"): ActivationCache(tmp_path)

STREAM = """
import sys, torch
from dmsae.activations import ActivationCache
def rss(k):
    return int([l for l in open('/proc/self/status') if l.startswith(k)][0].split()[1]) // 1024
c = ActivationCache(sys.argv[1])
it = c.batches(4096, seed=0, buffer_rows=65536)
next(it)
base = rss('VmRSS')
n = 0
for b in it:
    n += len(b)
    if n >= c.n_rows: break
print(base, rss('VmHWM'), n, c.n_rows)
"""

def test_streaming_a_large_cache_keeps_memory_flat(tmp_path):
    from dmsae.activations import CacheWriter
    d, rows = 576, 131_072  # 150 MB per float16 shard
    w = CacheWriter(tmp_path / "big", d_in=d, dtype="float16", meta=dict(key="big"))
    x = torch.randn(rows, d, generator=torch.Generator().manual_seed(0))
    for i in range(7): w.write_shard(i, x)  # ~1.06 GB on disk
    w.finish()
    r = subprocess.run([sys.executable, "-c", STREAM, str(tmp_path / "big")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    base, peak, n, total = map(int, r.stdout.split())
    assert n >= total
    # one buffer of 65,536 float32 rows is 151 MB; reading the whole 1 GB cache must not grow memory beyond a few
    # buffers
    assert peak - base < 600, (base, peak)
    assert peak < 1500
