#!/usr/bin/env python
"""Kill anywhere: run the whole pipeline (caching, distillation, transfer, evaluation) on a small random model, kill it
with SIGKILL at random moments spread over its work, resume after each kill, and compare every result file with an
uninterrupted run. `python tools/faults.py --kills 30` is the full campaign (a few minutes; it writes
`figures/faults/kill_anywhere.{json,md}`); `tests/test_faults.py` runs a short one in `make test`.

Also the shared pieces of the fault tests: the pipeline as a subprocess, with an optional injected fault, and the
comparison of two run folders that ignores only wall-clock fields."""
import argparse, json, os, random, signal, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# a run of a few seconds: two trainings (cycles 0 and 1) with frequent checkpoints, all transfer methods, evaluation
RUN = dict(hook_layer=2, context_size=32, n_train_tokens=4096, n_heldout_tokens=512, shard_tokens=512, d_sae=64, k=4,
           batch_size=128, train_steps=24, checkpoint_every=3, n_cycles=1, dead_tokens=1024, transfer_ks=[2, 4],
           eval_contexts=8, cache_batch_contexts=2)

PIPELINE = r'''
import json, os, sys, time
from pathlib import Path
fault = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
if fault:   # an injected full disk: the writer of files named `fault["name"]` writes half, then fails with ENOSPC
    import errno, numpy as np, torch, safetensors.torch as st
    def failing(orig, target_of):
        def f(*a, **k):
            target = str(target_of(*a, **k))
            if fault["name"] in Path(target).name.removesuffix(".tmp") or fault["name"] in target:
                Path(target).write_bytes(b"half a file")
                raise OSError(errno.ENOSPC, "No space left on device")
            return orig(*a, **k)
        return f
    st.save_file = failing(st.save_file, lambda t, f, *a, **k: f)
    torch.save = failing(torch.save, lambda o, f, *a, **k: f)
    np.save = failing(np.save, lambda f, *a, **k: getattr(f, "name", f))
from dmsae.config import get_config
from dmsae.distill import distill, transfer
from dmsae.evaluate import evaluate_run
cfg = get_config("tiny", **json.loads(sys.argv[2]))
run = Path(sys.argv[1])
t0 = time.time()
distill(cfg, run_dir=run, progress=False)
transfer(cfg, run_dir=run, progress=False)
evaluate_run(run / "transfer", cfg, levels=False, n_contexts=cfg.eval_contexts, progress=False)
print(json.dumps(dict(work_s=time.time() - t0)))
'''


def start(home: Path, run: Path, over: dict, fault: dict | None = None) -> subprocess.Popen:
    "Start the pipeline on run folder `run` with `DMSAE_HOME=home` (and an injected fault)."
    env = {**os.environ, "DMSAE_HOME": str(home), "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-c", PIPELINE, str(run), json.dumps(over)] + ([json.dumps(fault)] if fault else [])
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_to_end(home: Path, run: Path, over: dict, fault: dict | None = None) -> subprocess.CompletedProcess:
    "Run the pipeline to its end; the completed process (stdout's last line holds the work time)."
    p = start(home, run, over, fault)
    out, err = p.communicate()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


WALL = ("seconds", "time", "_s", "tokens_per_s", "finished", "date", "elapsed")   # wall-clock fields


def _clean(v):
    "A JSON value without its wall-clock fields (keys ending or named as in `WALL`)."
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items() if not any(k == w or k.endswith(w) for w in WALL)}
    if isinstance(v, list): return [_clean(x) for x in v]
    return v


def _csv_rows(p: Path) -> list[dict]:
    import csv
    with open(p) as fh: return [_clean(r) for r in csv.DictReader(fh)]


def compare(a: Path, b: Path) -> list[str]:
    """Files that differ between run folders (or homes) `a` and `b`: every file byte for byte, except that JSON and
    CSV files are compared without their wall-clock fields and Markdown tables (which show them) are skipped."""
    diffs = []
    names = sorted({p.relative_to(a) for p in a.rglob("*") if p.is_file()} |
                   {p.relative_to(b) for p in b.rglob("*") if p.is_file()})
    for rel in names:
        pa, pb = a / rel, b / rel
        if rel.suffix == ".md" or rel.name in (".lock",) or rel.name.endswith(".lock"): continue
        if not (pa.exists() and pb.exists()): diffs.append(f"{rel} (only in {'a' if pa.exists() else 'b'})")
        elif rel.suffix == ".json":
            if _clean(json.loads(pa.read_text())) != _clean(json.loads(pb.read_text())): diffs.append(str(rel))
        elif rel.suffix == ".csv":
            if _csv_rows(pa) != _csv_rows(pb): diffs.append(str(rel))
        elif pa.read_bytes() != pb.read_bytes(): diffs.append(str(rel))
    return diffs


def fresh_home(h: Path, real: Path) -> Path:
    "A new DMSAE_HOME at `h` sharing the corpus and converted model of `real`."
    from conftest import shared_home
    return shared_home(h, real)


def reference_run(tmp: Path, model: str) -> dict:
    "An uninterrupted run in `tmp/ref` with its own home `tmp/ref_home`: its folders and its work time."
    from dmsae.config import dmsae_home
    home = fresh_home(tmp / "ref_home", dmsae_home())
    r = run_to_end(home, tmp / "ref", dict(RUN, model_name=model))
    if r.returncode != 0: raise RuntimeError(f"the reference run failed:\n{r.stderr[-3000:]}")
    return dict(run=tmp / "ref", home=home, work=json.loads(r.stdout.strip().splitlines()[-1])["work_s"])


def differences(ref: dict, run: Path, home: Path) -> list[str]:
    "Files of run folder `run` and of the caches in `home` that differ from the reference run's."
    return compare(ref["run"], run) + [f"home: {d}" for d in compare(ref["home"] / "activations", home / "activations")]


def newest_write(run: Path, home: Path) -> float:
    "The latest modification time of a file of the run folder or of the caches in `home` (0 when there is none)."
    files = [p for d in (run, home / "activations") if d.exists() for p in d.rglob("*") if p.is_file()]
    return max((p.stat().st_mtime for p in files if p.exists()), default=0.0)


def stage_of(run: Path, home: Path) -> str:
    "The stage a run is in, from the files it has finished: the first milestone whose file is missing."
    caches = [json.loads(m.read_text()).get("complete") for m in (home / "activations").glob("*/manifest.json")
              if m.stat().st_size] if (home / "activations").exists() else []
    d, t = run / "distill", run / "transfer"
    milestones = [("caching", len(caches) == 2 and all(caches)),
                  ("cycle 0 training", (d / "cycle_0/sae/dmsae.json").exists()),
                  ("cycle 0 attribution", (d / "cycle_0/attribution/attribution.json").exists()),
                  ("cycle 0 selection", (d / "cycle_0/core.safetensors").exists()),
                  ("cycle 1 training", (d / "cycle_1/sae/dmsae.json").exists()),
                  ("cycle 1 attribution and selection", (d / "distilled_core.safetensors").exists()),
                  ("transfer", len(list(t.glob("*/transfer.json"))) == 7 if t.exists() else False),
                  ("evaluation", (t / "eval.csv").exists())]
    return next((name for name, done in milestones if not done), "finished")


def kill_anywhere(tmp: Path, model: str, kills: int, seed: int = 0, ref: dict | None = None, log=print) -> dict:
    """Runs killed `kills` times in all, each resumed after every kill and compared file by file with an uninterrupted
    reference run (`ref`, made when None). A restart is killed once it has written a new file (it has resumed and
    works on) plus a time drawn uniformly from `[0, span]`: span = 2 W / kills (W: the reference's work time) grows by
    that much while kills keep landing in the same stage (tokenising a split cannot resume), and is reset when the
    stage moves on. A run that finishes between kills is compared, and the next kill starts a fresh run."""
    from dmsae.config import dmsae_home
    ref = ref or reference_run(tmp, model)
    over, work, base = dict(RUN, model_name=model), ref["work"], 2 * ref["work"] / kills
    rng, moments, stages, runs, diffs, span = random.Random(seed), [], [], [], [], base
    for i in range(kills):
        if not runs or stages[-1] == "finished":
            if runs: diffs += _finish(ref, *runs[-1], over)
            runs.append((tmp / f"kill_run{len(runs)}", fresh_home(tmp / f"kill_home{len(runs)}", dmsae_home())))
        run, home = runs[-1]
        t_start = time.time()
        p = start(home, run, over)
        while newest_write(run, home) < t_start and p.poll() is None: time.sleep(0.01)   # resumed: new work begins
        u = rng.uniform(0, span)
        time.sleep(u)
        alive = p.poll() is None
        p.send_signal(signal.SIGKILL)
        p.communicate()
        moments.append(round(u, 2))
        stages.append(stage_of(run, home) if alive else "finished")
        span = span + base if len(stages) > 1 and stages[-1] == stages[-2] else base
        log(f"kill {i + 1}/{kills} {u:.2f}s after the restart's first write, in {stages[-1]}")
    diffs += _finish(ref, *runs[-1], over)
    return dict(kills=kills, interrupted=kills - stages.count("finished"), runs=len(runs), identical=not diffs,
                differing_files=diffs, reference_work_s=round(work, 2), kill_moments_s=moments, stages=stages,
                seed=seed)


def _finish(ref: dict, run: Path, home: Path, over: dict) -> list[str]:
    "Run a killed run to its end; the files that differ from the reference's."
    r = run_to_end(home, run, over)
    if r.returncode != 0: raise RuntimeError(f"the resumed run failed:\n{r.stderr[-3000:]}")
    return differences(ref, run, home)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "figures" / "faults"))
    a = ap.parse_args()
    import tempfile
    from conftest import make_model
    from dmsae.data import build_embedded_corpus
    from dmsae.model import convert_embedded_model
    build_embedded_corpus()
    convert_embedded_model()
    with tempfile.TemporaryDirectory() as t:
        model = make_model(Path(t) / "tiny-random", "llama")
        t0 = time.time()
        res = kill_anywhere(Path(t), model, a.kills, a.seed)
        res["campaign_s"] = round(time.time() - t0, 1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kill_anywhere.json").write_text(json.dumps(res, indent=1) + "\n")
    ok = "identical" if res["identical"] else f"DIFFERENT: {res['differing_files']}"
    hit = ", ".join(f"{s} {res['stages'].count(s)}" for s in dict.fromkeys(res["stages"]) if s != "finished")
    (out / "kill_anywhere.md").write_text(
        "| fault | tried (stage hit) | interrupted a running stage | result after resuming |\n|---|---|---|---|\n"
        f"| SIGKILL at a random moment, resumed after each ({res['runs']} runs) | {res['kills']} ({hit}) "
        f"| {res['interrupted']} "
        f"| {ok} (every file, wall-clock fields aside) |\n")
    print(json.dumps({k: v for k, v in res.items() if k not in ("kill_moments_s", "stages")}, indent=1), hit)
    sys.exit(0 if res["identical"] else 1)


if __name__ == "__main__": main()
