"""The repository's record of the corpus (pins/corpus.json) and the checks against it.

pins/corpus.json holds, per corpus version (`dmsae.data.CORPUS_VERSION`), what the built corpus must contain (per
source: archive and JSONL SHA-256, documents, characters; the corpus hash), and, per profile with committed figures,
which corpus version made them. Used by tools/reproduce.py (before caching), tools/pin_corpus.py and tests/test_pins.py.
"""
import csv, json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "pins" / "corpus.json"
FIELDS = ("archive_sha256", "jsonl_sha256", "n_docs", "n_chars")  # what is pinned of each source

def load_pins(path: Path = PINS) -> dict:
    return json.loads(Path(path).read_text())

def save_pins(pins: dict, path: Path = PINS):
    Path(path).write_text(json.dumps(pins, indent=2, ensure_ascii=False) + "\n")

def corpus_record(man: dict) -> dict:
    "The pins of a built corpus, from its manifest (`dmsae.data.read_manifest`)."
    sources = {n: {k: man["sources"][n][k] for k in FIELDS} for n in sorted(man["sources"])}
    return dict(sha256=man.get("sha256"), sources=sources)

def _is_hash(v, full: bool = False) -> bool:
    return isinstance(v, str) and bool(re.fullmatch("[0-9a-f]{64}" if full else "[0-9a-f]{16,64}", v))

def pins_problems(pins: dict) -> list[str]:
    "What is malformed in a pins file (empty if it is well-formed)."
    out = []
    if set(pins) != {"about", "figures", "corpus"}:
        return [f"top-level keys {sorted(pins)}, expected ['about', 'corpus', 'figures']"]
    for version, rec in pins["corpus"].items():
        if not re.fullmatch(r"embedded-v\d+", version): out.append(f"{version}: not a corpus version name")
        if not rec.get("sources"): out.append(f"{version}: no sources")
        for name, s in rec.get("sources", {}).items():
            if set(s) != set(FIELDS): out.append(f"{version}/{name}: fields {sorted(s)}, expected {sorted(FIELDS)}")
            for k in ("n_docs", "n_chars"):
                if not (isinstance(s.get(k), int) and s[k] > 0): out.append(f"{version}/{name}: {k} {s.get(k)!r}")
            for k in ("archive_sha256", "jsonl_sha256"):
                if s.get(k) is not None and not _is_hash(s[k]): out.append(f"{version}/{name}: {k} {s.get(k)!r}")
        if rec.get("sha256") is not None and not _is_hash(rec["sha256"], full=True):
            out.append(f"{version}: corpus sha256 {rec['sha256']!r}")
    for profile, version in pins["figures"].items():
        if version not in pins["corpus"]: out.append(f"figures of {profile}: unknown corpus version {version!r}")
    return out

def figures_table_problems(profile: str, pins: dict, figs: Path = ROOT / "figures") -> list[str]:
    "Where the corpus table that `profile`'s committed figures hold disagrees with their pins (empty if it agrees)."
    version = pins["figures"][profile]
    pinned = pins["corpus"][version]["sources"]
    f = figs / profile / "table_corpus.csv"
    if not f.exists(): return [f"{f.relative_to(ROOT)} is missing"]
    rows = {r["source"]: r for r in csv.DictReader(f.open())}
    if set(rows) != set(pinned):
        return [f"{profile}: the table lists sources {sorted(rows)}, {version} pins {sorted(pinned)}"]
    def same_hash(a, b): return bool(a) and bool(b) and (a.startswith(b) or b.startswith(a))
    out = []
    for name, r in rows.items():
        p = pinned[name]
        if int(r["documents"]) != p["n_docs"]:
            out.append(f"{profile}/{name}: documents {r['documents']} != {p['n_docs']}")
        if int(r["characters"]) != p["n_chars"]:
            out.append(f"{profile}/{name}: characters {r['characters']} != {p['n_chars']}")
        archive = r.get("archive_sha256") or r.get("sha256")  # the first tables called the archive hash `sha256`
        if not same_hash(archive, p["archive_sha256"]):
            out.append(f"{profile}/{name}: archive hash {archive} != {p['archive_sha256']}")
        if r.get("jsonl_sha256") and p["jsonl_sha256"] and not same_hash(r["jsonl_sha256"], p["jsonl_sha256"]):
            out.append(f"{profile}/{name}: JSONL hash {r['jsonl_sha256']} != {p['jsonl_sha256']}")
    return out

def figures_corpus_check(profile: str, man: dict, pins: dict) -> list[str] | None:
    """How the built corpus (manifest `man`) differs from the one that made `profile`'s committed figures;
    None if the profile has no committed figures (nothing to compare with), [] if they agree."""
    from dmsae.data import corpus_differences
    version = pins["figures"].get(profile)
    if version is None: return None
    diffs = corpus_differences(man["sources"], pins["corpus"][version]["sources"])
    if man.get("version") != version and not diffs: diffs = [f"corpus version {man.get('version')} != {version}"]
    return diffs

def mismatch_message(profile: str, man: dict, pins: dict, diffs: list[str]) -> str:
    "The plain message `make reproduce` stops with when the corpus is not the one of the committed figures."
    version = pins["figures"][profile]
    built = man.get("version")
    lines = [f"the corpus differs from the one that made the committed figures of profile {profile!r}.",
             f"  The figures in figures/{profile}/ came from corpus {version} (recorded in pins/corpus.json); "
             f"this checkout builds {built} ($DMSAE_HOME/corpus/{built}). What differs:"]
    lines += [f"    {d}" for d in diffs]
    lines += ["  A run now would not reproduce the committed figures: it would make new figures from another corpus.",
              "  To do that on purpose: make reproduce ALLOW_CORPUS_CHANGE=1 "
              "(tools/reproduce.py --allow-corpus-change);",
              f"  the run then records in pins/corpus.json that the figures of {profile!r} come from {built}."]
    return "\n".join(lines)
