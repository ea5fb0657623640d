#!/usr/bin/env python
"""Index of the result files (`results/*.md`): for each, the command that made it, its date and the machine kind, so
the tables of bench/README.md can be checked against (and updated from) the latest files. Run by `make bench` after
the scripts; it prints and changes nothing (bench/README.md holds one current table per benchmark, edited by hand from
these files, each captioned with its date, commit and machine kind)."""
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine_kind(text: str) -> str:
    "AMX, AVX-512 (BF16), AVX-512 or AVX2, from the `Machine:` line a result file records."
    m = re.search(r"^Machine: .*$", text, re.M)
    line = m.group(0) if m else ""
    if "amx" in line: return "AMX"
    if "avx512_bf16" in line: return "AVX-512 (BF16)"
    if "avx512" in line: return "AVX-512"
    if "avx2" in line: return "AVX2"
    return line.removeprefix("Machine: ").split(",")[0] + " (vector units not recorded)" if line else "not recorded"


def index() -> list[dict]:
    "One row per result file: name, command, date, machine kind."
    rows = []
    for p in sorted((HERE / "results").glob("*.md")):
        text = p.read_text()
        m = re.search(r"`(python [^`]*)` on (\d{4}-\d{2}-\d{2})", text)
        rows.append(dict(file=p.name, command=m.group(1) if m else "?", date=m.group(2) if m else "?",
                         machine=machine_kind(text)))
    return rows


def main():
    rows = index()
    print("| file | date | machine | command |\n|---|---|---|---|")
    for r in rows: print(f"| {r['file']} | {r['date']} | {r['machine']} | `{r['command']}` |")


if __name__ == "__main__": main()
