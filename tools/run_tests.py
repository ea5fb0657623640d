#!/usr/bin/env python
"""Run the lint (ruff), the notebook tests (nbdev_test) and pytest; print one closing line `N passed, N failed`.

The lint counts as one test, each notebook as one (nbdev_test stops a notebook at its first failing cell),
and each pytest test as one."""
import argparse, os, re, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

def run(cmd):
    print("$", " ".join(cmd), flush=True)
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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

def notebooks(flags: str, workers: str):
    "Run nbdev_test on every notebook; (passed, failed names)."
    from nbdev.doclinks import nbglob
    nbs = [f for f in nbglob(str(ROOT / "nbs"), as_path=True)
           if not any(p.startswith((".", "_")) for p in f.relative_to(ROOT).parts)]
    cmd = [str(BIN / "nbdev_test"), "--n_workers", workers, "--timing", "--do_print"]
    if flags: cmd += ["--flags", flags]
    rc, out = run(cmd)
    failed = re.findall(r"^\t(\S+\.ipynb)\s*$", out, flags=re.M) if rc else []
    if rc and not failed: failed = ["<nbdev_test crashed>"]
    return len(nbs) - len(failed), failed

def pytests(slow: bool = False):
    "Run pytest on tests/ (with the `slow` tests too if `slow`); (passed, failed, skipped)."
    if slow: os.environ["DMSAE_SLOW"] = "1"   # tests/conftest.py skips tests marked slow unless it is set
    rc, out = run([str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", "--durations=15", "tests"])
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
    py_pass, py_fail, py_skip = pytests(slow="slow" in a.flags.split())
    print(f"\nlint: {'failed' if lint_fail else 'passed'}; "
          f"notebooks: {nb_pass} passed, {len(failed_nb)} failed {failed_nb or ''}; "
          f"pytest: {py_pass} passed, {py_fail} failed, {py_skip} skipped; {time.time() - t0:.0f}s")
    passed = (1 - lint_fail) + nb_pass + py_pass
    failed = lint_fail + len(failed_nb) + py_fail
    print(f"{passed} passed, {failed} failed" + (f", {py_skip} skipped" if py_skip else ""))
    sys.exit(1 if failed else 0)

if __name__ == "__main__": main()
