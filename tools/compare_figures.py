#!/usr/bin/env python
"""Compare two figures folders (e.g. `figures/small` of two fresh clones): does the second reproduce the first?

usage: python tools/compare_figures.py A B [--rtol R] [--atol T]

Every table (`*.md`, `*.csv`, also under `latents/`) of A is compared with the same file in B. Wall times are not
results: `table_stage_times.*` is skipped, and in the other tables the columns named `*_s`, `*tok_per_s*` or
`seconds` are left out before comparing. A file is `identical` when its cells match once those columns are gone,
else `differs` with the largest relative difference of its numeric cells and the columns where they differ.
With `--rtol R [--atol T]`, a table whose numeric cells differ by at most R (relative) or T (absolute), its other
cells equal, `agrees`.
The machines that made A and B are printed from their `machine.json` (tools/machine.py): on the same kind of machine
expect identical tables; across kinds (other vector units, CPU vendor, thread count) only agreement to a few digits.
Exit status 0 when every table is identical (or agrees), 1 otherwise (2: a file is missing)."""
import argparse, csv, io, re, sys
from pathlib import Path
from machine import describe, kind, load_record

TIMING = re.compile(r"(_s|tok_per_s.*|seconds|_s_.*)$")   # column names that hold wall times

def rows_of(path: Path) -> list[list[str]]:
    "The cells of a CSV or Markdown table, without timing columns and without the Markdown separator row."
    text = path.read_text()
    if path.suffix == ".csv": rows = list(csv.reader(io.StringIO(text)))
    else:
        rows = [[c.strip() for c in l.strip().strip("|").split("|")] for l in text.splitlines() if l.startswith("|")]
        rows = [r for r in rows if not all(set(c) <= set("-: ") for c in r)]
    if not rows: return rows
    keep = [i for i, name in enumerate(rows[0]) if not TIMING.search(name.strip())]
    return [[r[i] for i in keep if i < len(r)] for r in rows]

def rel_diff(a: str, b: str, atol: float = 0.0) -> float | None:
    "Relative difference of two numeric cells, 0 when they differ by at most `atol` (None: either is not a number)."
    try: x, y = float(a), float(b)
    except ValueError: return None
    if x == y or (x != x and y != y) or abs(x - y) <= atol: return 0.0
    return abs(x - y) / max(abs(x), abs(y), 1e-300)

def compare(a: Path, b: Path, atol: float = 0.0) -> tuple[str, float, list[str]]:
    """`(verdict, largest relative difference, columns that differ)` of one table in two folders; numbers that differ
    by at most `atol` count as equal in the largest difference (but not for `identical`)."""
    ra, rb = rows_of(a), rows_of(b)
    if ra == rb: return "identical", 0.0, []
    if len(ra) != len(rb) or (ra and ra[0] != rb[0]): return "differs (shape or columns)", float("inf"), []
    worst, cols = 0.0, set()
    for ca, cb in zip(ra[1:], rb[1:]):
        for name, x, y in zip(ra[0], ca, cb):
            if x == y: continue
            d = rel_diff(x, y, atol)
            worst = max(worst, float("inf") if d is None else d)
            cols.add(name)
    return "differs", worst, sorted(cols)

def machines(folder: Path) -> str:
    "The machines that ran a figures folder's stages, one line each (from its machine.json)."
    by = {}
    for stage, infos in load_record(folder).items():
        for info in infos: by.setdefault(describe(info), []).append(stage)
    if not by: return "    (no machine.json: made before machines were recorded)"
    return "\n".join(f"    {d}: {', '.join(st)}" for d, st in by.items())

def same_kind(a: Path, b: Path) -> bool | None:
    "Whether all stages of A and B ran on one kind of machine (None when either folder does not say)."
    ra, rb = load_record(a), load_record(b)
    if not ra or not rb: return None
    return len({kind(i) for rec in (ra, rb) for infos in rec.values() for i in infos}) == 1

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("A", type=Path)
    ap.add_argument("B", type=Path)
    ap.add_argument("--rtol", type=float, default=0.0, help="tables whose numbers differ by at most this agree")
    ap.add_argument("--atol", type=float, default=0.0, help="... or by at most this much in absolute value")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    A, B = a.A, a.B
    tables = sorted(p for ext in ("*.md", "*.csv") for p in A.rglob(ext)
                    if "executed" not in p.parts and not p.name.startswith("table_stage_times"))
    if not tables: sys.exit(f"no tables in {A}")
    for name, f in (("A", A), ("B", B)): print(f"{name} = {f}, made on\n{machines(f)}")
    same = same_kind(A, B)
    if same is False: print("different kinds of machine: expect agreement to a few digits, not identical tables")
    status, n_same = 0, 0
    for p in tables:
        rel = p.relative_to(A)
        if not (B / rel).exists():
            print(f"missing    {rel}")
            status = 2
            continue
        verdict, worst, cols = compare(p, B / rel, a.atol)
        n_same += verdict == "identical"
        if verdict == "differs" and worst <= a.rtol: verdict = "agrees"
        print(f"{verdict:<10} {rel}" + (f"  (max rel. diff {worst:.2g} in {', '.join(cols)})" if cols else ""))
        if verdict.startswith("differs"): status = max(status, 1)
    print(f"{len(tables)} tables, {n_same} identical (wall times left out)" + ("" if status == 0 else "; see above"))
    return status

if __name__ == "__main__": sys.exit(main())
