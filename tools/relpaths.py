#!/usr/bin/env python
"""Replace the machine's absolute paths in result files by paths relative to the repository, $DMSAE_HOME or the venv.

A path under the repository becomes relative to it (`/tmp/clone/runs/small` -> `runs/small`, the repository itself
`.`); a path under DMSAE_HOME becomes `$DMSAE_HOME/...`; a path inside the running virtual environment becomes
`$PYTHON_ENV/...` (a library's warning names its file, and `.venv` may be a link to a folder outside the repository).
Only those path strings change. tools/reproduce.py applies it to each executed notebook; by hand, for files written
elsewhere:

    python tools/relpaths.py figures/small/*.json figures/small/executed/*.ipynb
    python tools/relpaths.py --root /tmp/quiet_clone --home /tmp/quiet_home figures/small/*.json   # another machine's
"""
import argparse, os, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def default_home() -> str:
    return str(Path(os.environ.get("DMSAE_HOME", Path.home() / ".cache" / "dmsae")).expanduser())

def default_env() -> str:
    "The running virtual environment's real folder, or '' outside one (a system Python's files are not the machine's)."
    return os.path.realpath(sys.prefix) if sys.prefix != sys.base_prefix else ""

def relativise(text: str, root: str = str(ROOT), home: str | None = None, env: str | None = None) -> str:
    "`text` with paths under `root` made relative, under `home` as `$DMSAE_HOME/...`, under `env` as `$PYTHON_ENV/...`."
    home = home or default_home()
    env = default_env() if env is None else env
    subs = [(home.rstrip("/"), "$DMSAE_HOME/", "$DMSAE_HOME"), (root.rstrip("/"), "", ".")]
    if env: subs.append((env.rstrip("/"), "$PYTHON_ENV/", "$PYTHON_ENV"))
    for base, under, itself in sorted(subs, key=lambda s: -len(s[0])):  # the longer first: one may hold the other
        start = r"(?<![\w.$~/-])" + re.escape(base)  # a whole path, not the tail of a longer one or of a URL
        text = re.sub(start + r"/(?=[\w.$-])", under.replace("\\", r"\\"), text)
        text = re.sub(start + r"(?![\w./-])", itself.replace("\\", r"\\"), text)
    return text

def fix_file(path: Path, root: str = str(ROOT), home: str | None = None, env: str | None = None) -> bool:
    "Rewrite `path` with `relativise`; whether it changed."
    old = path.read_text()
    new = relativise(old, root, home, env)
    if new != old: path.write_text(new)
    return new != old

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--root", default=str(ROOT), help="the repository path to strip (default: this one)")
    ap.add_argument("--home", default=None, help="the DMSAE_HOME path to replace (default: this machine's)")
    ap.add_argument("--env", default=None, help="the virtual environment's real path (default: the running one's)")
    a = ap.parse_args()
    for f in a.files:
        if fix_file(f, a.root, a.home, a.env): print(f"fixed {f}")

if __name__ == "__main__": main()
