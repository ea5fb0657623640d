"""Fault tests for the distillation: a run killed at any point resumes to the same distilled core."""
import json
from conftest import kill_when, run_py, start_py

RUN = """
import json, sys
from dmsae.config import get_config
from dmsae.distill import distill
over = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}   # e.g. a small random model instead of SmolLM2
cfg = get_config("tiny", n_train_tokens=16384, n_heldout_tokens=1024, d_sae=256, k=8, batch_size=512, n_cycles=1,
                 checkpoint_every=4, transfer_ks=(8,), **over)
distill(cfg, run_dir=sys.argv[1], progress=False)
"""

def test_killed_distillation_resumes_to_the_same_core(home, tmp_path, tiny_model):
    # a small random model, and trainings long enough (400 steps) to be killed mid-way
    over = json.dumps(dict(model_name=tiny_model, hook_layer=2, train_steps=400))
    r = run_py(RUN, tmp_path / "ref", over)
    assert r.returncode == 0, r.stderr
    p = start_py(RUN, tmp_path / "run", over)
    target = tmp_path / "run" / "distill" / "cycle_1" / "sae" / "checkpoint.pt"   # mid-way through the second training
    kill_when(p, target.exists, timeout=600)
    assert target.exists(), "the run ended before it could be killed mid-training"
    assert not (tmp_path / "run" / "distill" / "distilled_core.safetensors").exists()
    r = run_py(RUN, tmp_path / "run", over)
    assert r.returncode == 0, r.stderr
    a, b = tmp_path / "ref" / "distill", tmp_path / "run" / "distill"
    assert (a / "distilled_core.safetensors").read_bytes() == (b / "distilled_core.safetensors").read_bytes()
    assert json.loads((a / "distilled_core.json").read_text()) == json.loads((b / "distilled_core.json").read_text())
    for j in (0, 1):
        weights = f"cycle_{j}/sae/sae_weights.safetensors"
        assert (a / weights).read_bytes() == (b / weights).read_bytes()
    r = run_py(RUN, tmp_path / "run", over)
    assert r.returncode == 0 and "nothing to do" in r.stdout

def test_distill_refuses_a_run_dir_with_another_config(home, tmp_path, tiny_model):
    small = json.dumps(dict(model_name=tiny_model, hook_layer=2))
    r = run_py(RUN, tmp_path / "r", small)
    assert r.returncode == 0, r.stderr
    r = run_py(RUN.replace("k=8,", "k=4,"), tmp_path / "r", small)
    assert r.returncode != 0 and "another config" in r.stderr
    assert "(k: 8 -> 4)" in r.stderr, r.stderr[-2000:]                 # the message names the field and both values
    # the cache dtype changes the activations, so it is part of the run's identity too (issue: fix, then rerun)
    r = run_py(RUN, tmp_path / "r", json.dumps(dict(json.loads(small), cache_dtype="bfloat16")))
    assert r.returncode != 0 and "another config" in r.stderr
    assert "(cache_dtype: 'float16' -> 'bfloat16')" in r.stderr, r.stderr[-2000:]

SMALLEST = ["n_train_tokens=4096", "n_heldout_tokens=512", "d_sae=128", "k=8", "batch_size=512", "n_cycles=1",
            "transfer_ks=[8]"]

def _cli(*args, home):
    "Run the `dmsae` command with `DMSAE_HOME=home`."
    import os, subprocess, sys
    from conftest import ROOT
    env = {**os.environ, "DMSAE_HOME": str(home), "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run([sys.executable, "-m", "dmsae.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True)

def _sets(*fields):
    return [a for f in (*SMALLEST, *fields) for a in ("--set", f)]

def test_readings_of_the_core_run_through_distill_and_transfer(home, tmp_path, tiny_model):
    "`core_act=batchtopk`, `core_budget=core_exempt` and `train_steps` reach every training from the command line."
    model = (f"model_name={tiny_model}", "hook_layer=2")
    btk = _sets(*model, "core_act=batchtopk", f"run_dir={tmp_path / 'btk'}")
    for cmd in (["distill", *btk], ["transfer", "--methods", "dmsae", *btk]):
        r = _cli(*cmd, home=home)
        assert r.returncode == 0, r.stderr
    for folder in ("distill/cycle_1/sae", "transfer/dmsae_k8_s0"):
        meta = json.loads((tmp_path / "btk" / folder / "dmsae.json").read_text())
        assert meta["sae"]["core_act"] == "batchtopk" and meta["sae"]["n_core"] > 0, folder
        hist = json.loads((tmp_path / "btk" / folder / "history.json").read_text())
        assert hist[-1]["l0"] <= 8 + 1e-6                      # the core competes: the total L0 is at most k
    ex = _sets(*model, "core_budget=core_exempt", "train_steps=6", f"run_dir={tmp_path / 'ex'}")
    for cmd in (["distill", *ex], ["transfer", "--methods", "compute_matched", *ex]):
        r = _cli(*cmd, home=home)
        assert r.returncode == 0, r.stderr
    sae = tmp_path / "ex" / "distill" / "cycle_1" / "sae"
    meta = json.loads((sae / "dmsae.json").read_text())
    assert (meta["sae"]["core_budget"], meta["sae"]["n_core"] > 0, meta["n_steps"]) == ("core_exempt", True, 6)
    hist = json.loads((sae / "history.json").read_text())
    assert abs(hist[-1]["l0_noncore"] - 8) < 0.5              # the non-core latents keep the whole budget k
    cm = json.loads((tmp_path / "ex" / "transfer" / "compute_matched_k8_s0" / "transfer.json").read_text())
    assert cm["steps"] == 6 * 2                                # (n_cycles + 1) trainings of train_steps
