#!/usr/bin/env python
"""README.md from nbs/index.ipynb (nbdev_readme needs quarto, which no registry here ships).

Markdown cells are copied; code cells become fenced Python blocks without their `#|` directives; the front matter
(`# title` + `> summary`) stays as it is. `--check` exits 1 when README.md is out of date."""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def render(nb_path=ROOT / "nbs" / "index.ipynb") -> str:
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for c in nb["cells"]:
        src = "".join(c["source"]).strip("\n")
        if c["cell_type"] == "markdown": parts.append(src)
        elif c["cell_type"] == "code":
            lines = [l for l in src.splitlines() if not l.startswith("#|")]
            if any(l.strip() for l in lines): parts.append("```python\n" + "\n".join(lines).strip("\n") + "\n```")
    return "<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook -->\n\n" + "\n\n".join(parts) + "\n"

if __name__ == "__main__":
    text, out = render(), ROOT / "README.md"
    if "--check" in sys.argv:
        ok = out.exists() and out.read_text() == text
        print("README.md is " + ("up to date" if ok else "out of date: run `python tools/make_readme.py`")); sys.exit(0 if ok else 1)
    out.write_text(text); print(f"wrote {out}")
