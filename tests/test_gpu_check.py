"""`tools/gpu_check.py` at toy sizes on the CPU, so the GPU check cannot rot between GPU sessions: every check passes,
the JSON and Markdown reports are written, and nothing the GPU machine lacks is imported (fastcore, sae_lens, sae_bench
and transformer_lens are blocked, so the fastcore stand-in and the SAEBench-free evaluation are what run)."""
import json
from conftest import run_py

RUN = """
import sys
for m in ("fastcore", "fastcore.basics", "sae_lens", "sae_bench", "transformer_lens"):
    sys.modules[m] = None   # import of any of them raises ImportError, as on the GPU machine
sys.path.insert(0, "tools")
import gpu_check
rc = gpu_check.main([sys.argv[1], "--device", "cpu", "--tiny"])
assert sys.modules["fastcore"].__version__.startswith("stand-in"), "the fastcore stand-in was not used"
sys.exit(rc)
"""

def test_gpu_check_passes_on_cpu_tiny(tmp_path):
    r = run_py(RUN, tmp_path / "out", timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert doc["passed"] and [c["check"] for c in doc["checks"]] == ["step", "attribution", "pipeline", "distributed",
                                                                     "speed"]
    assert all(c["status"] == "pass" for c in doc["checks"])
    md = (tmp_path / "out" / "gpu_check.md").read_text()
    assert md.startswith("Measured ") and "| train_step: device vs CPU" in md and "| attribution: device" in md
    step = next(c for c in doc["checks"] if c["check"] == "step")["info"]
    assert step["f32"]["loss_rel"] == 0 and step["bf16"]["jaccard"] < 1   # CPU vs CPU f32 is exact; bf16 is not
