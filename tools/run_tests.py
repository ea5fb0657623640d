#!/usr/bin/env python
"""Run the lint (ruff), the notebook tests (nbdev_test) and pytest; print one closing line `N passed, N failed`.

The lint counts as one test, each notebook as one (nbdev_test stops a notebook at its first failing cell),
and each pytest test as one.

The notebook tests also feed the documentation site (`make docs`): `python tools/run_tests.py nbdev_test ARGS` is
nbdev's own `nbdev_test` (same command line, flags, parallel workers, output and exit status), except that every
notebook that passes is written with its outputs to `_docs/executed/<path under nbs>.ipynb`, with the sha256 of the
source it ran in its metadata. The notebooks in nbs/ stay output-free; nothing runs twice."""
import argparse, hashlib, json, os, re, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXECUTED = Path(os.environ.get("DMSAE_DOCS_EXECUTED", ROOT / "_docs" / "executed"))

# Notebooks and pytest each run in two worker processes on the 2-core machines this project is sized for, so each
# process computes on one thread: two processes of two OpenMP threads each spin-wait for a core the other holds, and a
# 64-step tiny training then takes 20x longer (32 s against 1.7 s, measured beside one other busy process).
def worker_env(workers: str) -> dict | None:
    "One compute thread per process where `workers` processes share the cores, else None (the environment as it is)."
    if int(workers) < 2: return None
    return {var: "1" for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}

def run(cmd, env: dict | None = None):
    print("$", " ".join(cmd), flush=True)
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, **(env or {})})
    out = []
    for line in p.stdout:
        sys.stdout.write(line)
        out.append(line)
    return p.wait(), "".join(out)

def lint() -> int:
    "Run `ruff check` with the repository's ruff.toml (line shape); 1 if it fails, else 0."
    ruff = BIN / "ruff"
    if not ruff.exists():
        print(f"ruff not found at {ruff}: run `make install`")
        return 1
    rc, _ = run([str(ruff), "check", "."])
    return int(rc != 0)

def save_executed(src: Path, text: str, nb, flags: str = ""):
    "Write the source notebook `text` of `src` with the outputs of the executed `nb` (cells matched by id) to EXECUTED."
    raw = json.loads(text)
    ran = {c.get("id"): c for c in nb.cells if c.get("id")}
    for c in raw["cells"]:
        if c["cell_type"] != "code": continue
        done = ran.get(c.get("id"))
        c["outputs"] = [_plain(o) for o in (done.get("outputs") or [])] if done else []
        c["execution_count"] = done.get("execution_count") if done else None
    raw.setdefault("metadata", {})["dmsae_docs"] = {"source_sha256": hashlib.sha256(text.encode()).hexdigest(),
                                                    "flags": flags}
    nbs = (ROOT / "nbs").resolve()
    out = EXECUTED / (src.resolve().relative_to(nbs) if src.resolve().is_relative_to(nbs) else src.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(out)

def _plain(o):
    "An execnb output (AttrDict, lists) as plain JSON, without execnb's private keys (ending in `_`)."
    if isinstance(o, dict): return {k: _plain(v) for k, v in o.items() if not k.endswith("_")}
    if isinstance(o, (list, tuple)): return [_plain(v) for v in o]
    return o

def nbdev_test_saving():
    """nbdev's `nbdev_test` on this process's command line, writing each notebook that passes with its outputs.

    nbdev.test.test_nb builds one `CaptureShell` per notebook and calls its `run_all`, which raises at the first failing
    cell; the shell below saves the notebook after a `run_all` that returned. Everything else is nbdev's code, run
    in nbdev's forked workers (the patch is inherited by fork)."""
    import nbdev.test
    from execnb.shell import CaptureShell
    flags = " ".join(sys.argv[sys.argv.index("--flags") + 1:][:1]) if "--flags" in sys.argv else ""

    class SavingShell(CaptureShell):
        def run_all(self, nb, *args, **kwargs):
            src = Path(nb.path_)
            text = src.read_text(encoding="utf-8")
            res = super().run_all(nb, *args, **kwargs)
            try: save_executed(src, text, nb, flags)
            except Exception as e: print(f"[docs] could not save the executed {src.name}: {e!r}", file=sys.stderr)
            return res

    nbdev.test.CaptureShell = SavingShell
    return nbdev.test.nbdev_test()

def notebooks(flags: str, workers: str):
    "Run nbdev_test on every notebook; (passed, failed names)."
    from nbdev.doclinks import nbglob
    nbs = [f for f in nbglob(str(ROOT / "nbs"), as_path=True)
           if not any(p.startswith((".", "_")) for p in f.relative_to(ROOT).parts)]
    cmd = [sys.executable, str(Path(__file__).resolve()), "nbdev_test",   # nbdev_test, saving outputs for make docs
           "--n_workers", workers, "--timing", "--do_print"]
    if flags: cmd += ["--flags", flags]
    rc, out = run(cmd, worker_env(workers))
    failed = re.findall(r"^\t(\S+\.ipynb)\s*$", out, flags=re.M) if rc else []
    if rc and not failed: failed = ["<nbdev_test crashed>"]
    return len(nbs) - len(failed), failed

def pytests(slow: bool = False, workers: str = "2"):
    "Run pytest on tests/ in `workers` processes (with the `slow` tests too if `slow`); (passed, failed, skipped)."
    if slow: os.environ["DMSAE_SLOW"] = "1"   # tests/conftest.py skips tests marked slow unless it is set
    par = ["-n", workers] if int(workers) > 1 else []     # pytest-xdist
    rc, out = run([str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", "--durations=15", *par, "tests"],
                  worker_env(workers))
    last = out.strip().splitlines()[-1] if out.strip() else ""
    def count(k): return sum(int(x) for x in re.findall(rf"(\d+) {k}", last))
    passed, failed, skipped = count("passed"), count("failed") + count("error"), count("skipped")
    if rc not in (0, 5) and failed == 0: failed = 1  # pytest crashed before counting
    return passed, failed, skipped

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flags", default="", help="nbdev test flags to run (e.g. slow; also runs pytest's slow tests)")
    ap.add_argument("--workers", default="2")
    a = ap.parse_args()
    t0 = time.time()
    lint_fail = lint()
    nb_pass, failed_nb = notebooks(a.flags, a.workers)
    py_pass, py_fail, py_skip = pytests(slow="slow" in a.flags.split(), workers=a.workers)
    print(f"\nlint: {'failed' if lint_fail else 'passed'}; "
          f"notebooks: {nb_pass} passed, {len(failed_nb)} failed {failed_nb or ''}; "
          f"pytest: {py_pass} passed, {py_fail} failed, {py_skip} skipped; {time.time() - t0:.0f}s")
    passed = (1 - lint_fail) + nb_pass + py_pass
    failed = lint_fail + len(failed_nb) + py_fail
    print(f"{passed} passed, {failed} failed" + (f", {py_skip} skipped" if py_skip else ""))
    sys.exit(1 if failed else 0)

if __name__ == "__main__":
    if sys.argv[1:2] == ["nbdev_test"]:
        sys.argv = [str(BIN / "nbdev_test"), *sys.argv[2:]]
        nbdev_test_saving()
    else: main()
