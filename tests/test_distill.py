"""Fault tests for the distillation: a run killed at any point resumes to the same distilled core."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
from conftest import ROOT

RUN = """
import sys
from dmsae.config import get_config
from dmsae.distill import distill
cfg = get_config("tiny", n_train_tokens=16384, n_heldout_tokens=1024, d_sae=256, k=8, batch_size=512, n_cycles=1,
                 checkpoint_every=4, transfer_ks=(8,))
distill(cfg, run_dir=sys.argv[1], progress=False)
"""

def _run(run_dir, env):
    return subprocess.run([sys.executable, "-c", RUN, str(run_dir)], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)

def test_killed_distillation_resumes_to_the_same_core(home, tmp_path):
    env = {"DMSAE_HOME": str(home)}
    r = _run(tmp_path / "ref", env); assert r.returncode == 0, r.stderr
    p = subprocess.Popen([sys.executable, "-c", RUN, str(tmp_path / "run")], cwd=ROOT, env={**os.environ, **env},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    target = tmp_path / "run" / "distill" / "cycle_1" / "sae" / "checkpoint.pt"   # mid-way through the second training
    t0 = time.time()
    while not target.exists() and p.poll() is None and time.time() - t0 < 600: time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait()
    assert target.exists(), "the run ended before it could be killed mid-training"
    assert not (tmp_path / "run" / "distill" / "distilled_core.safetensors").exists()
    r = _run(tmp_path / "run", env); assert r.returncode == 0, r.stderr
    a, b = tmp_path / "ref" / "distill", tmp_path / "run" / "distill"
    assert (a / "distilled_core.safetensors").read_bytes() == (b / "distilled_core.safetensors").read_bytes()
    assert json.loads((a / "distilled_core.json").read_text()) == json.loads((b / "distilled_core.json").read_text())
    for j in (0, 1):
        assert (a / f"cycle_{j}/sae/sae_weights.safetensors").read_bytes() == (b / f"cycle_{j}/sae/sae_weights.safetensors").read_bytes()
    r = _run(tmp_path / "run", env)
    assert r.returncode == 0 and "nothing to do" in r.stdout

def test_distill_refuses_a_run_dir_with_another_config(home, tmp_path):
    env = {"DMSAE_HOME": str(home)}
    r = _run(tmp_path / "r", env); assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-c", RUN.replace("k=8,", "k=4,"), str(tmp_path / "r")], cwd=ROOT,
                       env={**os.environ, **env}, capture_output=True, text=True)
    assert r.returncode != 0 and "another config" in r.stderr
