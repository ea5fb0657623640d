#!/usr/bin/env python
"""Run the paper notebooks (nbs/paper/*.ipynb, in name order) with papermill on one profile.

Each stage's wall time goes into its stamp (with the earlier runs' times) and into figures/<profile>/table_stage_times.md:
a rerun reuses finished work (caches, trained SAEs, evaluations), so the longest run of a stage is the one from scratch.

Executed copies go to figures/<profile>/executed/; a stage whose notebook, parameters and library are unchanged since
its last successful run is skipped (delete figures/<profile>/executed/ to force a rerun)."""
import argparse, hashlib, json, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def digest(*paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        for f in sorted(Path(p).rglob("*.py")) if Path(p).is_dir() else [Path(p)]:
            h.update(f.name.encode()); h.update(f.read_bytes())
    return h.hexdigest()[:16]

def write_stage_times(executed: Path, figs: Path):
    "table_stage_times.{md,csv}: each stage's last and longest (= from scratch) wall time, from the stamps and their history."
    rows = []
    for st in sorted(executed.glob("*.done.json")):
        d = json.loads(st.read_text())
        longest = max([d] + d.get("history", []), key=lambda r: r["seconds"])  # a rerun reuses finished work and is shorter
        rows.append((st.name.replace(".done.json", ""), d["seconds"], longest["seconds"], longest.get("finished", "")))
    if not rows: return
    tot, tot_long = sum(r[1] for r in rows), sum(r[2] for r in rows)
    md = ["| stage | last run (s) | longest run (s) | longest run (min) | longest run finished |", "|---|---|---|---|---|"]
    md += [f"| {n} | {s:.0f} | {l:.0f} | {l / 60:.1f} | {f} |" for n, s, l, f in rows]
    md += [f"| **total** | {tot:.0f} | {tot_long:.0f} | {tot_long / 60:.1f} | |"]
    (figs / "table_stage_times.md").write_text("\n".join(md) + "\n")
    (figs / "table_stage_times.csv").write_text("stage,last_s,longest_s,longest_finished\n" + "".join(f"{n},{s},{l},{f}\n" for n, s, l, f in rows))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="small"); ap.add_argument("--params", default=None)
    ap.add_argument("--kernel", default="dmsae"); ap.add_argument("--force", action="store_true")
    ap.add_argument("--stages", nargs="*", default=None, help="only these stage numbers (e.g. 0 1 2); default: all")
    a = ap.parse_args()
    import papermill as pm, yaml
    params_file = Path(a.params or ROOT / "params" / f"{a.profile}.yaml")
    if not params_file.exists(): sys.exit(f"no parameter file {params_file}; choose a profile from {sorted(p.stem for p in (ROOT / 'params').glob('*.yaml'))}")
    params = yaml.safe_load(params_file.read_text()) or {}
    out = ROOT / "figures" / params.get("profile", a.profile) / "executed"; out.mkdir(parents=True, exist_ok=True)
    stages = sorted((ROOT / "nbs" / "paper").glob("[0-9]*.ipynb"))
    if a.stages is not None: stages = [nb for nb in stages if int(nb.name.split("_")[0]) in {int(x) for x in a.stages}]
    times, t_all = {}, time.time()
    for nb in stages:
        key = digest(nb, params_file, ROOT / "dmsae")
        stamp = out / f"{nb.stem}.done.json"
        if not a.force and stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
            print(f"[reproduce] {nb.name}: unchanged since its last run, skipped"); continue
        print(f"[reproduce] {nb.name} (profile {params.get('profile')}) ...", flush=True)
        t0 = time.time()
        pm.execute_notebook(str(nb), str(out / nb.name), parameters=params, kernel_name=a.kernel, cwd=str(ROOT),
                            progress_bar=False, log_output=True)
        times[nb.name] = round(time.time() - t0, 1)
        prev = json.loads(stamp.read_text()) if stamp.exists() else {}
        history = prev.get("history", []) + ([dict(seconds=prev["seconds"], finished=prev.get("finished", ""))] if "seconds" in prev else [])
        stamp.write_text(json.dumps(dict(key=key, seconds=times[nb.name], finished=time.strftime("%Y-%m-%d %H:%M:%S"),
                                         history=history[-10:])))
        print(f"[reproduce] {nb.name} done in {times[nb.name]}s", flush=True)
    figs = out.parent
    write_stage_times(out, figs)
    if (ROOT / "README.md").exists() and any(f"include: figures/{figs.name}/" in l for l in (ROOT / "README.md").read_text().splitlines()):
        import subprocess; subprocess.run([sys.executable, str(ROOT / "tools" / "make_readme.py")], check=False)  # README quotes these files
    print(f"\n[reproduce] finished in {time.time() - t_all:.0f}s; figures and tables in {figs}:")
    for f in sorted(figs.glob("*")):
        if f.is_file(): print("   ", f.relative_to(ROOT))

if __name__ == "__main__": main()
