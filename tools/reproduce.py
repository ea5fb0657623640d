#!/usr/bin/env python
"""Run the paper notebooks (nbs/paper/*.ipynb, in name order) with papermill on one profile.

Before any stage that reads the corpus, the embedded corpus is built (if needed) and compared with the corpus that made
the profile's committed figures (pins/corpus.json): when they differ, the run stops and says what differs, unless
--allow-corpus-change is given (`make reproduce ALLOW_CORPUS_CHANGE=1`). Profiles without committed figures (tiny)
are not checked.

While a stage runs, each code cell is announced with the stage's elapsed time, and the cells' own output (prints,
progress bars, at most one progress line per 15 s) is streamed, indented.

Each stage's wall time goes into its stamp (with the earlier runs' times under the same config: a changed profile or
override starts a new history) and into
figures/<profile>/table_stage_times.md: a rerun reuses finished work (caches, trained SAEs, evaluations),
so the longest run of a stage is the one from scratch. A stage that was interrupted (killed, machine gone) and
resumed later counts the time of its interrupted attempts too: while it runs, executed/<stage>.partial.json holds
the time spent so far, and the attempt that finishes adds it to its own (`carried` in the stamp).

Figures carry no run date (SOURCE_DATE_EPOCH=0, fixed SVG ids), so a rerun rewrites them byte for byte.
figures/<profile>/machine.json records which machine ran each stage (CPU, vector units, threads, versions): on the
same kind of machine a fresh clone's tables are byte-identical; across kinds they agree to a few digits
(tools/compare_figures.py prints both machines).

Executed copies go to figures/<profile>/executed/, with the machine's paths made relative to the repository or
$DMSAE_HOME (tools/relpaths.py); a stage whose notebook, parameters and library are unchanged since its last
successful run is skipped (delete figures/<profile>/executed/ to force a rerun)."""
import argparse, hashlib, json, logging, os, re, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from pins import figures_corpus_check, load_pins, mismatch_message, save_pins, PINS  # noqa: E402
from relpaths import fix_file  # noqa: E402
from machine import kind, load_record, machine_info  # noqa: E402

def digest(*paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        for f in sorted(Path(p).rglob("*.py")) if Path(p).is_dir() else [Path(p)]:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]

def config_id(profile: str, params: dict) -> str:
    "Hash of the profile's config with the parameter file's overrides; stage times are compared within one only."
    from dmsae.config import config_hash, get_config
    return config_hash(get_config(profile, **(params.get("config") or {})).to_dict())

def new_stamp(prev: dict, key: str, cfg_id: str, seconds: float, finished: str, carried: float = 0.0) -> dict:
    """A stage's stamp after a run: its key, config and time (`carried`: seconds of interrupted earlier attempts of
    this run, included in `seconds`), with the earlier runs' times under the same config."""
    if prev.get("config") != cfg_id: prev = {}  # another config: its times say nothing about this one
    last = [dict(seconds=prev["seconds"], finished=prev.get("finished", ""))] if "seconds" in prev else []
    history = (prev.get("history", []) + last)[-10:]
    return dict(key=key, config=cfg_id, seconds=round(seconds + carried, 1), carried=round(carried, 1),
                finished=finished, history=history)

def carried_time(partial: Path, cfg_id: str) -> float:
    "Seconds that interrupted attempts of a stage spent under this config (its `.partial.json`), else 0."
    try: d = json.loads(partial.read_text()) if partial.exists() else {}
    except ValueError: d = {}                      # cut short by the kill that interrupted the attempt
    return float(d.get("seconds", 0.0)) if d.get("config") == cfg_id else 0.0

def write_stage_times(executed: Path, figs: Path):
    """table_stage_times.{md,csv}: each stage's last and longest (= from scratch) wall time, from the stamps; a run's
    time includes its interrupted attempts."""
    rows = []
    for st in sorted(executed.glob("*.done.json")):
        d = json.loads(st.read_text())
        # a rerun reuses finished work and is shorter
        longest = max([d] + d.get("history", []), key=lambda r: r["seconds"])
        rows.append((st.name.replace(".done.json", ""), d["seconds"], longest["seconds"], longest.get("finished", "")))
    if not rows: return
    tot, tot_long = sum(r[1] for r in rows), sum(r[2] for r in rows)
    md = ["| stage | last run (s) | longest run (s) | longest run (min) | longest run finished |",
          "|---|---|---|---|---|"]
    md += [f"| {n} | {s:.0f} | {l:.0f} | {l / 60:.1f} | {f} |" for n, s, l, f in rows]
    md += [f"| **total** | {tot:.0f} | {tot_long:.0f} | {tot_long / 60:.1f} | |"]
    (figs / "table_stage_times.md").write_text("\n".join(md) + "\n")
    csv = "".join(f"{n},{s},{l},{f}\n" for n, s, l, f in rows)
    (figs / "table_stage_times.csv").write_text("stage,last_s,longest_s,longest_finished\n" + csv)

def hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"

class Progress(logging.Handler):
    """Turns papermill's log (`log_output=True`) into progress lines: which cell of the stage runs, since when, and
    the cells' output, indented; progress bars at most once per `every` seconds."""
    QUIET = ("Input Notebook", "Output Notebook", "Working directory", "Executing notebook with kernel")

    def __init__(self, stage: str, cells: list, out=sys.stdout, every: float = 15.0, max_lines: int = 20,
                 on_tick=None): # on_tick(elapsed seconds): called at most once per `every` seconds
        super().__init__(logging.INFO)
        self.stage, self.cells, self.out, self.every, self.max_lines = stage, cells, out, every, max_lines
        self.on_tick, self.t_tick = on_tick, time.time()
        self.t0 = self.t_cell = time.time()
        self.t_bar, self.last_done = 0.0, None
        self.n_code = sum(c.cell_type == "code" for c in cells)
        self.code_no = {i: n + 1 for n, i in enumerate(i for i, c in enumerate(cells) if c.cell_type == "code")}

    def say(self, text: str):
        print(f"[{self.stage} +{hms(time.time() - self.t0)}] {text}", file=self.out, flush=True)

    def emit(self, record):
        if self.on_tick is not None and time.time() - self.t_tick >= self.every:
            self.t_tick = time.time()
            self.on_tick(self.t_tick - self.t0)
        msg = record.getMessage()
        m = re.match(r"(Executing|Ending) Cell (\d+)", msg)
        if m:
            i = int(m[2]) - 1
            if i not in self.code_no: return
            if m[1] == "Executing":
                self.t_cell = time.time()
                src = [l for l in "".join(self.cells[i].source).splitlines() if l.strip() and not l.startswith("#")]
                self.say(f"cell {self.code_no[i]}/{self.n_code}: {(src[0] if src else '')[:90]}")
            elif time.time() - self.t_cell >= 10:
                self.say(f"cell {self.code_no[i]}/{self.n_code} done in {hms(time.time() - self.t_cell)}")
            return
        if msg.startswith(self.QUIET): return
        lines = [l.rsplit("\r", 1)[-1].rstrip() for l in msg.splitlines()]
        lines = [l for l in lines if l.strip()]
        bar = "\r" in msg or any(re.search(r"\d+%\|", l) for l in lines)
        done = None
        if bar:
            done = next((l.split("100%|")[0] for l in lines if "100%|" in l), None)  # the finished bar's title
            if done is None and time.time() - self.t_bar < self.every: return
            if done is not None and done == self.last_done: return  # tqdm prints a finished bar again on close
            self.t_bar, lines = time.time(), lines[-1:]
        self.last_done = done
        extra = len(lines) - self.max_lines
        for l in lines[: self.max_lines]: print(f"    | {l}", file=self.out, flush=True)
        if extra > 0: print(f"    | ... ({extra} more lines)", file=self.out, flush=True)

def run_stage(nb: Path, out: Path, params: dict, key: str, kernel: str, cfg_id: str):
    "Execute one paper notebook with papermill into `out`, streaming its progress, and write its stamp."
    import papermill as pm
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    rel_nb, rel_out = nb.relative_to(ROOT), (out / nb.name).relative_to(ROOT)  # no machine path in the metadata
    cells = parameterize_notebook(load_notebook_node(str(nb)), params, kernel_name=kernel).cells
    print(f"[reproduce] {nb.name} (profile {params.get('profile')}): {sum(c.cell_type == 'code' for c in cells)} "
          f"code cells, executed copy in {rel_out}", flush=True)
    partial = out / f"{nb.stem}.partial.json"
    carried = carried_time(partial, cfg_id)        # interrupted attempts of this stage under this config
    if carried: print(f"[reproduce] {nb.name}: interrupted attempts so far took {hms(carried)}", flush=True)
    def tick(elapsed): partial.write_text(json.dumps(dict(config=cfg_id, seconds=round(carried + elapsed, 1))))
    log = logging.getLogger("papermill")
    handler, level, propagate = Progress(nb.stem, cells, on_tick=tick), log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    t0 = time.time()
    try:
        pm.execute_notebook(str(rel_nb), str(rel_out), parameters=params, kernel_name=kernel, cwd=".",
                            progress_bar=False, log_output=True,
                            coalesce_streams=True)   # the executed copy keeps each progress bar's last state only
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate
        if (out / nb.name).exists(): fix_file(out / nb.name)
    seconds = round(time.time() - t0, 1)
    stamp = out / f"{nb.stem}.done.json"
    prev = json.loads(stamp.read_text()) if stamp.exists() else {}
    stamp.write_text(json.dumps(new_stamp(prev, key, cfg_id, seconds, time.strftime("%Y-%m-%d %H:%M:%S"), carried)))
    partial.unlink(missing_ok=True)
    record_machine(out.parent, nb.stem)
    also = f", plus {hms(carried)} in interrupted attempts" if carried else ""
    print(f"[reproduce] {nb.name} done in {hms(seconds)} ({seconds}s{also})", flush=True)

def record_machine(figs: Path, stage: str):
    """Note in `figs/machine.json` the machines that ran `stage` (CPU, vector units, threads, versions; a stage resumed
    or rerun on another machine lists both, the latest last): tables made on different kinds of machine agree to a
    few digits, not bit for bit (tools/machine.py)."""
    rec, info = load_record(figs), machine_info()
    seen = [i for i in rec.get(stage, []) if (i.get("cpu"), kind(i)) != (info["cpu"], kind(info))]
    rec[stage] = seen + [info]
    (figs / "machine.json").write_text(json.dumps(dict(sorted(rec.items())), indent=1) + "\n")

def refresh_readme(figs: Path):
    "Regenerate README.md when it quotes files of this profile's figures folder, and the results chapter of the study."
    import subprocess
    if figs.name == "study":   # docs/results.md is generated from figures/study/
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_results.py")], check=False)
    readme = ROOT / "README.md"
    if not readme.exists(): return
    if any(f"include: figures/{figs.name}/" in l for l in readme.read_text().splitlines()):
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_readme.py")], check=False)

def check_corpus(profile: str, allow: bool) -> tuple[dict, list[str] | None]:
    """Build the embedded corpus if needed and compare it with the one of `profile`'s committed figures; exit with
    the differences unless `allow`. The manifest and the differences (None: the profile has no committed figures)."""
    pins = load_pins()
    if profile not in pins["figures"]:
        print(f"[reproduce] profile {profile!r} has no committed figures: its corpus is not compared with any")
        return {}, None
    from dmsae.data import build_embedded_corpus
    man = build_embedded_corpus()
    diffs = figures_corpus_check(profile, man, pins)
    if not diffs:
        print(f"[reproduce] corpus {man['version']} is the one of the committed figures of {profile!r} "
              f"(corpus sha256 {man['sha256'][:16]})")
    elif allow:
        print("[reproduce] warning (--allow-corpus-change): " + mismatch_message(profile, man, pins, diffs), flush=True)
    else:
        sys.exit("[reproduce] stopped: " + mismatch_message(profile, man, pins, diffs))
    return man, diffs

def record_figures_corpus(profile: str, man: dict):
    "After the corpus stage ran on a changed corpus: record that `profile`'s figures now come from it."
    from dmsae.data import corpus_differences
    pins, version = load_pins(), man["version"]
    pinned = pins["corpus"].get(version)
    if pinned is None or corpus_differences(man["sources"], pinned["sources"]):
        print(f"[reproduce] the built corpus {version} does not match pins recorded for {version}: record them "
              f"(python tools/pin_corpus.py --record), then set figures.{profile} to {version} in {PINS.name}")
        return
    pins["figures"][profile] = version
    save_pins(pins)
    print(f"[reproduce] recorded in pins/corpus.json: the figures of {profile!r} now come from corpus {version}")

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="small")
    ap.add_argument("--params", default=None)
    ap.add_argument("--kernel", default="dmsae")
    ap.add_argument("--force", action="store_true", help="rerun stages even if unchanged since their last run")
    ap.add_argument("--stages", nargs="*", default=None,
                    help="only these stage numbers (e.g. 0 1 2); default: the parameter file's `stages`, else all")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=YAML",
                    help="override notebook parameters, e.g. max_chunks=1 (make study CHUNKS=1)")
    ap.add_argument("--allow-corpus-change", action="store_true",
                    help="run even if the corpus differs from the one of the profile's committed figures")
    ap.add_argument("--check-corpus", action="store_true",
                    help="only compare the corpus with the one of the profile's committed figures, then exit")
    a = ap.parse_args()
    os.chdir(ROOT)
    os.environ.setdefault("SOURCE_DATE_EPOCH", "0")  # SVG figures carry this date, not the run's: same bytes every run
    import yaml
    params_file = Path(a.params or ROOT / "params" / f"{a.profile}.yaml").resolve()
    if not params_file.exists():
        profiles = sorted(p.stem for p in (ROOT / "params").glob("*.yaml"))
        sys.exit(f"no parameter file {params_file}; choose a profile from {profiles}")
    params = yaml.safe_load(params_file.read_text()) or {}
    profile = params.get("profile", a.profile)
    stages = sorted((ROOT / "nbs" / "paper").glob("[0-9]*.ipynb"))
    wanted = a.stages if a.stages is not None else params.pop("stages", None)  # the parameter file's own stages
    params.pop("stages", None)                                                 # (not a notebook parameter)
    if wanted is not None:
        wanted = {int(x) for x in wanted}
        stages = [nb for nb in stages if int(nb.name.split("_")[0]) in wanted]
    for kv in a.set:
        name, _, val = kv.partition("=")
        params[name] = yaml.safe_load(val)
    if a.check_corpus:
        check_corpus(profile, allow=False)
        return
    man, diffs = {}, None
    if any(int(nb.name.split("_")[0]) >= 1 for nb in stages):  # stage 0 draws the schematic only
        man, diffs = check_corpus(profile, a.allow_corpus_change)
    out = ROOT / "figures" / profile / "executed"
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    cfg_id = config_id(profile, params)
    for nb in stages:
        key = digest(nb, params_file, ROOT / "dmsae")
        stamp = out / f"{nb.stem}.done.json"
        done = json.loads(stamp.read_text()) if stamp.exists() else {}
        if not a.force and (done.get("key"), done.get("config")) == (key, cfg_id):
            print(f"[reproduce] {nb.name}: unchanged since its last run, skipped")
            continue
        run_stage(nb, out, params, key, a.kernel, cfg_id)
        if diffs and nb.name.startswith("01_"): record_figures_corpus(profile, man)
    figs = out.parent
    write_stage_times(out, figs)
    refresh_readme(figs)  # README quotes these files
    print(f"\n[reproduce] finished in {hms(time.time() - t_all)}; figures and tables in {figs.relative_to(ROOT)}:")
    for f in sorted(figs.glob("*")):
        if f.is_file(): print("   ", f.relative_to(ROOT))

if __name__ == "__main__": main()
