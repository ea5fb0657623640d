#!/usr/bin/env python
"""Compare two figures folders (e.g. `figures/small` of two fresh clones): does the second reproduce the first?

usage: python tools/compare_figures.py A B

Every table (`*.md`, `*.csv`, also under `latents/`) of A is compared with the same file in B. Wall times are not
results: `table_stage_times.*` is skipped, and in the other tables the columns named `*_s`, `*tok_per_s*` or
`seconds` are left out before comparing. A file is `identical` when its cells match once those columns are gone,
else `differs` with the largest relative difference of its numeric cells and the columns where they differ.
Exit status 0 when every table is identical, 1 otherwise (2: a file is missing)."""
import csv, io, re, sys
from pathlib import Path

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

def rel_diff(a: str, b: str) -> float | None:
    "Relative difference of two numeric cells (None when either is not a number)."
    try: x, y = float(a), float(b)
    except ValueError: return None
    if x == y or (x != x and y != y): return 0.0
    return abs(x - y) / max(abs(x), abs(y), 1e-300)

def compare(a: Path, b: Path) -> tuple[str, float, list[str]]:
    "`(verdict, largest relative difference, columns that differ)` of one table in two folders."
    ra, rb = rows_of(a), rows_of(b)
    if ra == rb: return "identical", 0.0, []
    if len(ra) != len(rb) or (ra and ra[0] != rb[0]): return "differs (shape or columns)", float("inf"), []
    worst, cols = 0.0, set()
    for ca, cb in zip(ra[1:], rb[1:]):
        for name, x, y in zip(ra[0], ca, cb):
            if x == y: continue
            d = rel_diff(x, y)
            worst = max(worst, float("inf") if d is None else d)
            cols.add(name)
    return "differs", worst, sorted(cols)

def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2: sys.exit(__doc__)
    A, B = Path(argv[0]), Path(argv[1])
    tables = sorted(p for ext in ("*.md", "*.csv") for p in A.rglob(ext)
                    if "executed" not in p.parts and not p.name.startswith("table_stage_times"))
    if not tables: sys.exit(f"no tables in {A}")
    status = 0
    for p in tables:
        rel = p.relative_to(A)
        if not (B / rel).exists():
            print(f"missing    {rel}")
            status = 2
            continue
        verdict, worst, cols = compare(p, B / rel)
        print(f"{verdict:<10} {rel}" + (f"  (max rel. diff {worst:.2g} in {', '.join(cols)})" if cols else ""))
        if verdict != "identical": status = max(status, 1)
    print(f"{len(tables)} tables: " + ("all identical (wall times left out)" if status == 0 else "see above"))
    return status

if __name__ == "__main__": sys.exit(main())
