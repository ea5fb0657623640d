#!/usr/bin/env python
"""Run the notebook tests (nbdev_test) and pytest; print one closing line `N passed, N failed` counting both.

Each notebook counts as one test (nbdev_test stops a notebook at its first failing cell); each pytest test counts as one."""
import argparse, re, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

def run(cmd):
    print("$", " ".join(cmd), flush=True)
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    for line in p.stdout:
        sys.stdout.write(line); out.append(line)
    return p.wait(), "".join(out)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flags", default="", help="nbdev test flags to run (e.g. slow)")
    ap.add_argument("--workers", default="2")
    a = ap.parse_args()
    t0 = time.time()
    from nbdev.doclinks import nbglob
    nbs = [f for f in nbglob(str(ROOT / "nbs"), as_path=True) if not any(p.startswith((".", "_")) for p in f.relative_to(ROOT).parts)]
    cmd = [str(BIN / "nbdev_test"), "--n_workers", a.workers, "--timing", "--do_print"]
    if a.flags: cmd += ["--flags", a.flags]
    rc_nb, out = run(cmd)
    failed_nb = re.findall(r"^\t(\S+\.ipynb)\s*$", out, flags=re.M) if rc_nb else []
    if rc_nb and not failed_nb: failed_nb = ["<nbdev_test crashed>"]
    nb_pass, nb_fail = len(nbs) - len(failed_nb), len(failed_nb)
    rc_py, out = run([str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", "tests"])
    m = lambda k: sum(int(x) for x in re.findall(rf"(\d+) {k}", out.strip().splitlines()[-1] if out.strip() else ""))
    py_pass, py_fail, py_err, py_skip = m("passed"), m("failed"), m("error"), m("skipped")
    if rc_py not in (0, 5) and py_fail + py_err == 0: py_err = 1  # pytest crashed before counting
    print(f"\nnotebooks: {nb_pass} passed, {nb_fail} failed {failed_nb or ''}; pytest: {py_pass} passed, {py_fail + py_err} failed, {py_skip} skipped; {time.time() - t0:.0f}s")
    passed, failed = nb_pass + py_pass, nb_fail + py_fail + py_err
    print(f"{passed} passed, {failed} failed" + (f", {py_skip} skipped" if py_skip else ""))
    sys.exit(1 if failed else 0)

if __name__ == "__main__": main()
