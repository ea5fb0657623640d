import os, signal, sys, subprocess, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"): os.environ.setdefault(var, "1")

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes or the network; skipped unless DMSAE_SLOW=1 (make test-slow)")

def pytest_collection_modifyitems(config, items):
    "Tests marked `slow` are skipped unless DMSAE_SLOW=1 (`make test-slow` sets it)."
    if os.environ.get("DMSAE_SLOW") == "1": return
    skip = pytest.mark.skip(reason="slow: set DMSAE_SLOW=1 (make test-slow) to run it")
    for item in items:
        if "slow" in item.keywords: item.add_marker(skip)

def shared_home(h: Path, real: Path) -> Path:
    "A new DMSAE_HOME at `h` whose corpus and converted model are links to those of `real`."
    h.mkdir()
    for sub in ("corpus", "models"): (h / sub).symlink_to(real / sub)
    return h

@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh DMSAE_HOME that shares the (read-only) corpus and converted model of the real one, so each test
    builds its own caches and runs without touching anyone else's."""
    from dmsae.config import dmsae_home
    from dmsae.data import build_embedded_corpus
    from dmsae.model import convert_embedded_model
    build_embedded_corpus()
    convert_embedded_model()
    h = shared_home(tmp_path / "home", dmsae_home())
    monkeypatch.setenv("DMSAE_HOME", str(h))
    return h

def run_py(code: str, *args, env: dict | None = None, **kw):
    "Run python code (with command-line `args`) in a subprocess with the project's interpreter."
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, **kw)

def start_py(code: str, *args, env: dict | None = None) -> subprocess.Popen:
    "Start python code (with command-line `args`) in a subprocess, as `run_py` does, without waiting for it."
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

def kill_when(p: subprocess.Popen, ready, timeout: float = 300, poll: float = 0.02):
    "SIGKILL process `p` as soon as `ready()` is true, or once it has ended or `timeout` seconds have passed."
    t0 = time.time()
    while not ready() and p.poll() is None and time.time() - t0 < timeout: time.sleep(poll)
    p.send_signal(signal.SIGKILL)
    p.wait()
