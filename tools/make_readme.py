#!/usr/bin/env python
"""README.md from nbs/index.ipynb (nbdev_readme needs quarto, which no registry here ships).

Markdown cells are copied; code cells become fenced Python blocks without their `#|` directives; the front matter
(`# title` + `> summary`) stays as it is. A Markdown line `<!-- include: figures/small/table_cycles.md -->` is
followed in the README by that file's text, so every table the README quotes is the file `make reproduce` wrote.
`--check` exits 1 when README.md is out of date."""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def expand_includes(md: str) -> str:
    "Put the text of each `<!-- include: PATH -->` file (relative to the repository root) after its marker."
    def sub(m):
        f = ROOT / m.group(1)
        missing = f"*(not written yet: `{m.group(1)}`; `make reproduce` or `make study` writes it)*"
        body = f.read_text().strip("\n") if f.exists() else missing
        return m.group(0) + "\n\n" + body
    return re.sub(r"^<!-- include: (\S+) -->$", sub, md, flags=re.M)

def render(nb_path=ROOT / "nbs" / "index.ipynb") -> str:
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for c in nb["cells"]:
        src = "".join(c["source"]).strip("\n")
        if c["cell_type"] == "markdown": parts.append(expand_includes(src))
        elif c["cell_type"] == "code":
            lines = [l for l in src.splitlines() if not l.startswith("#|")]
            if any(l.strip() for l in lines): parts.append("```python\n" + "\n".join(lines).strip("\n") + "\n```")
    head = "<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook -->\n\n"
    return head + "\n\n".join(parts) + "\n"

if __name__ == "__main__":
    text, out = render(), ROOT / "README.md"
    if "--check" in sys.argv:
        ok = out.exists() and out.read_text() == text
        print("README.md is " + ("up to date" if ok else "out of date: run `python tools/make_readme.py`"))
        sys.exit(0 if ok else 1)
    out.write_text(text)
    print(f"wrote {out}")
