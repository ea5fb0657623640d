"""Prose lint: the README fits in 15 KB, and the prose a reader meets (README.md, the markdown cells of every notebook
under nbs/, bench/README.md) is about the project in the present tense: no dated or process words. The history of the
work goes to CHANGELOG.md (exempt) and the git log. Code cells are not checked: only the prose."""
import json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README_MAX = 15 * 1024
MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|December|"
          "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec")
BANNED = [(re.compile(p, re.I), why) for p, why in [
    (r"\bsession", "a working session"),
    (r"\bso far\b", "'so far' dates the text"),
    (r"\bis next\b", "'is next' dates the text"),
    (r"\bnext variant\b", "'next variant' dates the text"),
    (rf"\b(?:{MONTHS})\.?\s+(?:\d{{1,2}},?\s+)?(?:19|20)\d\d\b", "a month with a year (a date)"),
]]


def prose() -> list[tuple[str, str]]:
    """(`file:line`, text) of every prose line checked: README.md, bench/README.md, and the notebooks' markdown cells
    (a notebook's line is that of the .ipynb file, with the cell's index)."""
    out = []
    for f in ("README.md", "bench/README.md"):
        p = ROOT / f
        if p.exists(): out += [(f"{f}:{i}", s) for i, s in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)]
    for p in sorted((ROOT / "nbs").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in p.parts: continue
        rel, text = p.relative_to(ROOT).as_posix(), p.read_text(encoding="utf-8")
        raw, at = text.splitlines(), 0
        for k, c in enumerate(json.loads(text)["cells"]):
            if c["cell_type"] != "markdown": continue
            for s in "".join(c["source"]).splitlines():
                enc = json.dumps(s, ensure_ascii=False)[1:-1]
                at = next((j for j in range(at, len(raw)) if enc in raw[j]), at)
                out.append((f"{rel}:{at + 1} (cell {k})", s))
    return out


def findings(lines) -> list[str]:
    "`file:line: 'phrase' (why)` for every banned phrase in `lines`."
    return [f"{where}: {m.group(0)!r} ({why})" for where, s in lines for rx, why in BANNED for m in rx.finditer(s)]


def test_the_lint_catches_and_spares():
    "The patterns against hand-written lines: dated and process words are caught, look-alikes are not."
    bad = ["in a later session", "Sessions of work", "verdicts so far", "the k = 80 stage is next",
           "the next variant", "3 December 2026", "December 2026", "on Dec. 3, 2026", "in March 2025"]
    good = ["the obsession with k", "so farther", "it is nextafter", "a month of work", "December", "2026 onwards",
            "the next variants' table", "decimal 2026"]
    assert len(findings([("x:1", s) for s in bad])) == len(bad)
    assert findings([("x:1", s) for s in good]) == []


def test_readme_size():
    n = (ROOT / "README.md").stat().st_size
    assert n <= README_MAX, (f"README.md is {n:,} bytes, over {README_MAX:,} (15 KB): move detail to the docs "
                             "(nbs/, docs/) and regenerate it from nbs/index.ipynb (make readme)")


def test_no_dated_or_process_words():
    found = findings(prose())
    assert not found, (f"{len(found)} dated or process phrases (the history belongs in CHANGELOG.md):\n"
                       + "\n".join(found))
