#!/usr/bin/env python
"""Build the documentation site (`make docs`): Sphinx + myst-nb + furo, offline, into `_docs/html`.

The pages are staged in `_docs/src`, a tree that mirrors the repository (so every relative path of a notebook or of the
README resolves as it does in the repository): the Markdown pages of `docs/`, the chapters `nbs/NN_*.ipynb`, the paper
notebooks as executed by `make reproduce` (`figures/<profile>/executed/`), links to `figures/`, `bench/` and the README,
and one API page per module. A chapter's outputs come from the copy `make test` wrote while it tested it
(`_docs/executed/`, see tools/run_tests.py) when that copy ran the current source (same sha256); otherwise the page
shows the source without outputs, and the build says which pages lack them. Nothing is executed here.
nbdev's cell directives become myst-nb tags: `#| hide` and `#| default_exp` cells are removed, `#| echo: false` keeps
the output only, `#| output: false` the source only; directive lines are not shown."""
import argparse, hashlib, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXECUTED = ROOT / "_docs" / "executed"
MATHJAX = ROOT / ".venv" / "share" / "mathjax" / "es5"
MATHJAX_PARTS = ["tex-mml-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions"]
PAPER = {"small": ["00_schematic", "01_corpus_and_cache", "02_distillation", "03_transfer_evaluate", "04_probing",
                   "06_latents"], "study": ["05_study"]}
LATENTS = ROOT / "figures" / "small" / "latents"
DIRECTIVE = re.compile(r"^\s*#\|\s*([\w-]+)\s*:?\s*(.*)$")


def write(path: Path, text: str):
    "Write `text` to `path` only when it differs (keeps mtimes, so Sphinx rebuilds only what changed)."
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text: path.write_text(text, encoding="utf-8")


def link(path: Path, target: Path):
    "A symbolic link `path` -> `target` (relative), replacing whatever is there."
    path.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(target, path.parent)
    if path.is_symlink() and os.readlink(path) == rel: return
    if path.is_symlink() or path.is_file(): path.unlink()
    elif path.is_dir(): shutil.rmtree(path)
    path.symlink_to(rel)


def directives(src: str) -> tuple[dict, str]:
    "The nbdev directives (`#| key: value` lines at the top) of a code cell's source, and the source without them."
    lines, found = src.splitlines(), {}
    i = 0
    while i < len(lines) and (m := DIRECTIVE.match(lines[i])):
        found[m.group(1).lower()] = m.group(2).strip().lower()
        i += 1
    return found, "\n".join(lines[i:]).strip("\n")


def for_page(nb: dict) -> dict:
    "A notebook as a page: nbdev directives as myst-nb tags, directive lines and empty code cells dropped."
    cells = []
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            d, body = directives("".join(c["source"]))
            tags = set(c.get("metadata", {}).get("tags", []))
            if "hide" in d or "default_exp" in d or (not body and not c.get("outputs")): continue
            if d.get("echo") == "false": tags.add("remove-input")
            if d.get("output") == "false": tags.add("remove-output")
            c = dict(c, source=body, metadata=dict(c.get("metadata", {}), tags=sorted(tags)))
            if not tags: c["metadata"].pop("tags")
        elif c["cell_type"] == "raw": continue
        cells.append(c)
    meta = {k: v for k, v in nb.get("metadata", {}).items() if k != "dmsae_docs"}
    return dict(nb, cells=cells, metadata=meta)


def stub(nb: dict) -> dict:
    "A notebook reduced to its title cell (a quick build's stand-in, so that links to it resolve)."
    first = next((c for c in nb["cells"] if c["cell_type"] == "markdown"), None)
    title = "".join(first["source"]).splitlines()[0] if first else "# (untitled)"
    return dict(nb, cells=[{"cell_type": "markdown", "metadata": {}, "source": title + "\n\n*Not in this build.*"}],
                metadata={k: v for k, v in nb.get("metadata", {}).items() if k != "dmsae_docs"})


def chapter(src: Path) -> tuple[dict, bool]:
    "The notebook `src` with the outputs `make test` stored for this very source, if any; (notebook, has outputs)."
    text = src.read_text(encoding="utf-8")
    done = EXECUTED / src.relative_to(ROOT / "nbs")
    if done.exists():
        nb = json.loads(done.read_text(encoding="utf-8"))
        ran = nb.get("metadata", {}).get("dmsae_docs", {}).get("source_sha256")
        if ran == hashlib.sha256(text.encode()).hexdigest(): return nb, True
    return json.loads(text), False


def has_code(nb: dict) -> bool:
    "Whether any code cell is shown on the page (a page without code cells needs no outputs)."
    return any(c["cell_type"] == "code" for c in for_page(nb)["cells"])


def api_pages(src: Path) -> list[str]:
    "One page per dmsae module (autodoc of its `__all__`), and their index."
    mods = sorted(p.stem for p in (ROOT / "dmsae").glob("*.py") if not p.stem.startswith("_"))
    for m in mods:
        rst = f".. automodule:: dmsae.{m}\n   :members:"
        write(src / "api" / f"{m}.md", f"# dmsae.{m}\n\n```{{eval-rst}}\n{rst}\n```\n")
    toc = "\n".join(mods)
    write(src / "api" / "index.md", "# API reference\n\nThe docstrings of every exported name, module by module "
          "(generated from `nbs/` by `nbdev_export`).\n\n```{toctree}\n:maxdepth: 1\n\n" + toc + "\n```\n")
    return mods


def repo_entries() -> list[str]:
    "The top-level files and folders of the repository (tracked by git; without git, those not hidden or built)."
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return sorted({line.split("/", 1)[0] for line in out.splitlines() if line})
    except (OSError, subprocess.CalledProcessError):
        return sorted(p.name for p in ROOT.iterdir() if not p.name.startswith((".", "_")))


def stage(src: Path, pages: list[str] | None = None, api: bool = True) -> list[str]:
    """Stage the site's sources under `src`; the pages that lack outputs. With `pages` (notebook file names) only those
    notebooks are staged in full, the others as their title (a quick build whose links still resolve)."""
    src.mkdir(parents=True, exist_ok=True)
    write(src / "index.md", (DOCS / "index.md").read_text(encoding="utf-8"))
    for p in DOCS.glob("*.md"):
        if p.name != "index.md": write(src / "docs" / p.name, p.read_text(encoding="utf-8"))
    write(src / "_include" / "README.md", (ROOT / "README.md").read_text(encoding="utf-8"))
    log = ROOT / "CHANGELOG.md"
    write(src / "CHANGELOG.md", log.read_text(encoding="utf-8") if log.exists() else "# Changelog\n\n*No entries.*\n")
    # the rest of the repository by links, so that a relative link of the README or a notebook to any file of the
    # repository resolves (to a page, an image, or a download)
    for top in repo_entries():
        if top not in ("nbs", "docs", "bench", "README.md", "CHANGELOG.md"): link(src / top, ROOT / top)
    # bench/: its Markdown pages as copies (Sphinx resolves a page's links from its real path), the rest by links
    if (src / "bench").is_symlink(): (src / "bench").unlink()
    for f in sorted((ROOT / "bench").rglob("*")):
        if f.is_dir() or "__pycache__" in f.parts: continue
        to = src / f.relative_to(ROOT)
        if f.suffix == ".md": write(to, f.read_text(encoding="utf-8"))
        else: link(to, f)
    mj = src / "_static_site" / "mathjax"
    for part in MATHJAX_PARTS:
        if (MATHJAX / part).exists(): link(mj / part, MATHJAX / part)
    if not (MATHJAX / MATHJAX_PARTS[0]).exists():
        print(f"[docs] no MathJax at {MATHJAX}: formulas show as TeX source (`make install` fetches it with npm)")
    lacking, want = [], None if pages is None else {Path(p).name for p in pages}
    for f in sorted((ROOT / "nbs").glob("[0-9][0-9]_*.ipynb")):
        if want is not None and f.name not in want:   # a quick build: the other chapters as their title only
            write(src / "nbs" / f.name, json.dumps(stub(json.loads(f.read_text(encoding="utf-8")))) + "\n")
            continue
        nb, ok = chapter(f)
        if not ok and has_code(nb): lacking.append(f"nbs/{f.name}")
        write(src / "nbs" / f.name, json.dumps(for_page(nb), indent=1, ensure_ascii=False) + "\n")
    for profile, names in PAPER.items():
        for n in names:
            f = ROOT / "figures" / profile / "executed" / f"{n}.ipynb"
            if not f.exists():
                lacking.append(f"figures/{profile}/executed/{f.name} (missing: `make reproduce PROFILE={profile}`)")
                continue
            nb = json.loads(f.read_text(encoding="utf-8"))
            nb = for_page(nb) if want is None or f.name in want else stub(nb)
            write(src / "nbs" / "paper" / f.name, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    # drop staged notebooks whose source is gone
    keep = {src / "nbs" / f.name for f in (ROOT / "nbs").glob("[0-9][0-9]_*.ipynb")}
    keep |= {src / "nbs" / "paper" / f"{n}.ipynb" for ns in PAPER.values() for n in ns}
    for p in set((src / "nbs").rglob("*.ipynb")) - keep: p.unlink()
    if api: api_pages(src)
    elif (src / "api").exists(): shutil.rmtree(src / "api")
    return lacking


def build(src: Path, out: Path, pages=None, api=True, jobs="auto", quiet=True) -> list[str]:
    "Stage and build the site into `out`; the pages that lack outputs."
    t0 = time.time()
    lacking = stage(src, pages, api)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(DOCS), "-d", str(src.parent / "doctrees"),
           "-j", str(jobs), str(src), str(out)]
    if quiet: cmd.insert(3, "-q")
    env = dict(os.environ, DMSAE_DOCS_SRC=str(src), PYTHONPATH=os.pathsep.join([str(ROOT),
                                                                               os.environ.get("PYTHONPATH", "")]))
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    if rc: sys.exit(f"[docs] sphinx-build failed (exit {rc}): {' '.join(cmd)}")
    if LATENTS.exists(): shutil.copytree(LATENTS, out / "latents", dirs_exist_ok=True)
    print(f"[docs] site in {out} ({sum(1 for _ in out.rglob('*.html'))} HTML files) in {time.time() - t0:.0f} s; "
          f"open {out / 'index.html'}")
    if lacking:
        print(f"[docs] {len(lacking)} page(s) show no outputs (no executed copy of their current source; `make test` "
              "writes them to _docs/executed/):\n  " + "\n  ".join(lacking))
    return lacking


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "_docs" / "html"))
    ap.add_argument("--src", default=str(ROOT / "_docs" / "src"), help="staging folder (generated)")
    ap.add_argument("--pages", nargs="*", help="only these notebooks (file names), e.g. for a quick check")
    ap.add_argument("--no-api", action="store_true", help="skip the API reference")
    ap.add_argument("--jobs", default="auto", help="sphinx-build -j")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    build(Path(a.src), Path(a.out), a.pages, not a.no_api, a.jobs, not a.verbose)


if __name__ == "__main__": main()
