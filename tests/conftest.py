import os, sys, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TRANSFORMERS_OFFLINE", "1"); os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh DMSAE_HOME that shares the (read-only) corpus and converted model of the real one, so each test
    builds its own caches and runs without touching anyone else's."""
    from dmsae.config import dmsae_home
    from dmsae.data import build_embedded_corpus
    from dmsae.model import convert_embedded_model
    build_embedded_corpus(); convert_embedded_model()
    real = dmsae_home()
    h = tmp_path / "home"; h.mkdir()
    for sub in ("corpus", "models"): (h / sub).symlink_to(real / sub)
    monkeypatch.setenv("DMSAE_HOME", str(h))
    return h

def run_py(code: str, env: dict | None = None, **kw):
    "Run python code in a subprocess with the project's interpreter."
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, **kw)
