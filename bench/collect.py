#!/usr/bin/env python
"""Copy the latest result tables (`results/*.md`, each with the command that made it) into bench/README.md, between the
`<!-- tables -->` and `<!-- /tables -->` markers. Run by `make bench` after the scripts."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["train", "train-65536", "train-quick", "attribution", "attribution-quick", "cache", "cache-quick", "scaling",
         "scaling-quick", "precision", "precision-quick", "lm_dtype",
         "lm_dtype-quick", "auxk", "auxk-quick", "parallel", "parallel-quick"]

def main():
    readme = HERE / "README.md"
    text = readme.read_text()
    start, end = "<!-- tables -->", "<!-- /tables -->"
    if start not in text or end not in text: raise SystemExit(f"{readme} lacks the {start} ... {end} markers")
    base = lambda stem: stem.removesuffix("-nobf16")      # a CPU without native bf16 units: beside its AMX table
    rank = lambda p: (ORDER.index(base(p.stem)) if base(p.stem) in ORDER else 99, p.stem)
    files = sorted((HERE / "results").glob("*.md"), key=rank)
    parts = []
    for p in files:
        body = p.read_text().strip()
        body = "\n".join(("#" + l) if l.startswith("#") else l for l in body.splitlines())  # one level down
        body = body.replace("](", "](results/").replace("](results/http", "](http")  # links relative to bench/
        parts.append(f"<!-- from results/{p.name} -->\n{body}")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(head + start + "\n\n" + "\n\n".join(parts) + "\n\n" + end + tail)
    print(f"{readme}: {len(files)} result files copied in")

if __name__ == "__main__": main()
