"""Fault tests for the activation cache: a build killed mid-way resumes to the same bytes; streaming stays flat in memory."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pytest, torch
from conftest import ROOT, run_py

BUILD = """
from dmsae.config import get_config
from dmsae.activations import build_activation_cache
cfg = get_config("tiny", n_train_tokens=8192, shard_tokens=1024, cache_batch_contexts=4)
c = build_activation_cache(cfg, "train", progress=False)
print(c.root)
"""

def test_killed_build_resumes_to_identical_bytes(home, tmp_path):
    # an uninterrupted build in a second home gives the reference bytes
    ref_home = tmp_path / "ref"; ref_home.mkdir()
    for sub in ("corpus", "models"): (ref_home / sub).symlink_to(home / sub)
    r = run_py(BUILD, env={"DMSAE_HOME": str(ref_home)}); assert r.returncode == 0, r.stderr
    ref_root = Path(r.stdout.strip().splitlines()[-1])
    # start the same build, kill it with SIGKILL once at least one shard is done but before the end
    p = subprocess.Popen([sys.executable, "-c", BUILD], cwd=ROOT, env={**os.environ, "DMSAE_HOME": str(home)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    man = None; t0 = time.time()
    while time.time() - t0 < 300:
        ms = list((home / "activations").glob("train-*/manifest.json")) if (home / "activations").exists() else []
        if ms:
            try: man = json.loads(ms[0].read_text())
            except json.JSONDecodeError: man = None
            if man and 1 <= len(man["shards"]) and not man["complete"]: break
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait()
    assert man is not None and not man["complete"], "the build finished before it could be killed"
    n_before = len(man["shards"])
    r = run_py(BUILD, env={"DMSAE_HOME": str(home)}); assert r.returncode == 0, r.stderr
    root = Path(r.stdout.strip().splitlines()[-1])
    final = json.loads((root / "manifest.json").read_text())
    assert final["complete"] and len(final["shards"]) > n_before
    assert [s["sha256"] for s in final["shards"]] == [s["sha256"] for s in json.loads((ref_root / "manifest.json").read_text())["shards"]]
    for f in sorted(ref_root.glob("shard_*.npy")): assert (root / f.name).read_bytes() == f.read_bytes()

def test_rebuild_of_finished_cache_is_a_no_op(home):
    r1 = run_py(BUILD, env={"DMSAE_HOME": str(home)}); assert r1.returncode == 0, r1.stderr
    root = Path(r1.stdout.strip().splitlines()[-1]); mt = {f: f.stat().st_mtime_ns for f in root.iterdir()}
    r2 = run_py(BUILD, env={"DMSAE_HOME": str(home)}); assert r2.returncode == 0, r2.stderr
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
c = ActivationCache(sys.argv[1]); it = c.batches(4096, seed=0, buffer_rows=65536)
next(it); base = rss('VmRSS')
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
    g = torch.Generator().manual_seed(0); x = torch.randn(rows, d, generator=g)
    for i in range(7): w.write_shard(i, x)  # ~1.06 GB on disk
    w.finish()
    r = subprocess.run([sys.executable, "-c", STREAM, str(tmp_path / "big")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    base, peak, n, total = map(int, r.stdout.split())
    assert n >= total
    # one buffer of 65,536 float32 rows is 151 MB; reading the whole 1 GB cache must not grow memory beyond a few buffers
    assert peak - base < 600, (base, peak)
    assert peak < 1500
