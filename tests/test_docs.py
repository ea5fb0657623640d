"""The documentation site in a real browser: a subset of the site (the home page with the README, the method chapter,
the attribution chapter, one executed paper notebook, the results, reproducibility, benchmark and changelog pages) is
built by docs/build.py into a temporary folder, and headless Chromium, driven by Selenium through Debian's chromium
driver, opens every page: every internal link resolves (file and anchor), every image loads, the console logs no
error, formulas are typeset by the MathJax shipped with the site (no raw `$...$` left), and the search page finds the
attribution chapter. Skips, naming the install command, where there is no browser."""
import importlib.util, os, re, time
from pathlib import Path
from urllib.parse import unquote, urlparse
import pytest
from test_dashboards import browser

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["00_method.ipynb", "09_attribution.ipynb", "02_distillation.ipynb"]
os.environ.setdefault("SE_OFFLINE", "true")


def docs_build():
    "docs/build.py as a module."
    spec = importlib.util.spec_from_file_location("docs_build", ROOT / "docs" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "A subset of the site, built offline into a temporary folder; (html folder, pages without outputs)."
    pytest.importorskip("sphinx", reason="Sphinx is not installed: `make install`")
    pytest.importorskip("myst_nb", reason="myst-nb is not installed: `make install`")
    tmp = tmp_path_factory.mktemp("docs")
    lacking = docs_build().build(tmp / "src", tmp / "html", pages=PAGES, api=False, jobs=1)
    return tmp / "html", lacking


def local(href: str) -> tuple[Path, str] | None:
    "The file and the anchor a `file://` link points at; None for other schemes."
    u = urlparse(href)
    if u.scheme != "file": return None
    return Path(unquote(u.path)), unquote(u.fragment)


def wait(drv, js: str, timeout: float = 15.0):
    "Poll the JavaScript expression `js` until it is true; its last value."
    t0 = time.time()
    while True:
        v = drv.execute_script(f"return {js}")
        if v or time.time() - t0 > timeout: return v
        time.sleep(0.2)


FACTS = """const a = document.querySelector('article') || document.body;
const c = a.cloneNode(true);
c.querySelectorAll('pre, code, script, style, mjx-container, .highlight, .cell_output').forEach(e => e.remove());
return {prose: c.textContent, hrefs: [...document.querySelectorAll('a[href]')].map(e => e.href),
        imgs: [...document.images].map(i => [i.src, i.complete && i.naturalWidth > 0])};"""


def check_page(drv, path: Path, html: Path, ids: dict) -> list[str]:
    "Open `path`; the problems found on it (`ids` caches the anchors of each target file)."
    rel, bad = path.relative_to(html), []
    drv.get(path.as_uri())
    wait(drv, "document.readyState === 'complete'")
    n_math = drv.execute_script("return document.querySelectorAll('.math').length")
    if n_math:
        done = wait(drv, "[...document.querySelectorAll('.math')].every(e => e.querySelector('mjx-container'))")
        if not done: bad.append(f"{rel}: {n_math} formulas, not all typeset by MathJax")
    facts = drv.execute_script(FACTS)
    raw = re.findall(r"\$[^$\s][^$]{0,80}?\$|\\\(.{1,80}?\\\)", facts["prose"])
    if raw: bad.append(f"{rel}: raw TeX in the text: {raw[:3]}")
    for href in set(facts["hrefs"]):
        t = local(href)
        if t is None: continue
        f, frag = t
        if f.is_dir(): f = f / "index.html"
        if not f.exists():
            bad.append(f"{rel}: link to missing {f}")
        elif frag and f.suffix == ".html":
            if f not in ids: ids[f] = set(re.findall(r'\bid="([^"]+)"', f.read_text(encoding="utf-8")))
            if frag not in ids[f]: bad.append(f"{rel}: link to missing anchor {f.relative_to(html)}#{frag}")
    bad += [f"{rel}: image does not load: {src}" for src, ok in facts["imgs"] if not ok]
    bad += [f"{rel}: console: {e['message'][:200]}" for e in drv.get_log("browser") if e["level"] == "SEVERE"]
    return bad


def test_site_in_a_browser(site):
    html, lacking = site
    pages = sorted(p for p in html.rglob("*.html") if p.relative_to(html).parts[0] not in ("latents", "_modules"))
    names = {p.relative_to(html).as_posix() for p in pages}
    assert {"index.html", "nbs/00_method.html", "nbs/09_attribution.html", "nbs/paper/02_distillation.html",
            "docs/results.html", "docs/reproducibility.html", "CHANGELOG.html", "bench/README.html",
            "search.html"} <= names
    assert (html / "latents" / "index.html").exists()
    drv = browser()
    try:
        assert (html / "_static" / "mathjax" / "tex-mml-chtml.js").exists(), \
            "MathJax is not shipped with the site: `make install` fetches it (npm pack mathjax@3.2.2)"
        ids = {}
        problems = [b for p in pages for b in check_page(drv, p, html, ids)]
        assert not problems, "\n".join(problems)
        drv.get((html / "nbs" / "00_method.html").as_uri())
        typeset = wait(drv, "document.querySelectorAll('mjx-container').length")
        assert typeset, "the method chapter has no typeset formula"
        # a chapter whose executed copy is current shows its outputs
        if "nbs/09_attribution.ipynb" not in lacking:
            drv.get((html / "nbs" / "09_attribution.html").as_uri())
            wait(drv, "document.readyState === 'complete'")   # a loaded machine can return before the DOM is read
            shown = wait(drv, "document.querySelectorAll('.cell_output').length")
            assert shown, "the attribution chapter shows no outputs"
        drv.get((html / "search.html").as_uri() + "?q=attribution")
        found = wait(drv, "[...document.querySelectorAll('#search-results a')].map(a => a.href)"
                          ".filter(h => h.includes('nbs/09_attribution.html')).length")
        assert found, "the search for 'attribution' does not list the attribution chapter"
        errors = [e["message"][:200] for e in drv.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, "search page console:\n" + "\n".join(errors)
    finally:
        drv.quit()


def test_nbdev_test_saves_outputs(tmp_path):
    "tools/run_tests.py's nbdev_test: nbdev's run, report and exit status; a passing notebook is saved with outputs."
    import hashlib, json, subprocess, sys
    def nb(*cells):
        return json.dumps({"cells": [{"cell_type": t, "id": f"c{i}", "metadata": {}, "source": s,
                                      **({"outputs": [], "execution_count": None} if t == "code" else {})}
                                     for i, (t, s) in enumerate(cells)],
                           "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                                       "display_name": "python3"}},
                           "nbformat": 4, "nbformat_minor": 5})
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    good.write_text(nb(("markdown", "# Good\n\n> A notebook"), ("code", "#| hide\nx = 6 * 7"), ("code", "print(x)"),
                       ("code", "#| slow\nprint('slow')")))
    bad.write_text(nb(("markdown", "# Bad"), ("code", "print('before')"), ("code", "assert 1 == 2")))
    out = tmp_path / "executed"
    env = {**os.environ, "DMSAE_DOCS_EXECUTED": str(out)}
    def run(f):
        return subprocess.run([sys.executable, "tools/run_tests.py", "nbdev_test", "--path", str(f), "--do_print"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    r = run(good)
    assert r.returncode == 0 and "Success." in r.stdout, r.stdout + r.stderr
    saved = json.loads((out / "good.ipynb").read_text())
    assert saved["metadata"]["dmsae_docs"]["source_sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()
    outs = [c["outputs"] for c in saved["cells"] if c["cell_type"] == "code"]
    assert outs[1] == [{"name": "stdout", "output_type": "stream", "text": ["42\n"]}] and outs[2] == [], outs
    assert [c["source"] for c in saved["cells"]] == [c["source"] for c in json.loads(good.read_text())["cells"]]
    r = run(bad)
    assert r.returncode == 1 and "nbdev Tests Failed On The Following Notebooks" in r.stderr, r.stdout + r.stderr
    assert re.search(r"^\tbad\.ipynb\s*$", r.stderr, re.M) and not (out / "bad.ipynb").exists()
