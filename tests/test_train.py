"""Kill a training run mid-way (a real process exit, no cleanup), resume it, compare bitwise with a whole run."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r'''
import os, sys, torch
from dmsae.config import get_config
from dmsae.train import TensorSource, train_sae
g = torch.Generator().manual_seed(0)
D = torch.nn.functional.normalize(torch.randn(40, 24, generator=g), dim=1)
codes = (torch.rand(4096, 40, generator=g) < 0.08) * torch.rand(4096, 40, generator=g) * 2
x = codes @ D + 0.05 * torch.randn(4096, 24, generator=g) + 0.3
core = torch.nn.functional.normalize(torch.randn(3, 24, generator=g), dim=1)
cfg = get_config("tiny", d_sae=96, k=4, batch_size=128, group_fractions=(1/8, 1/4), warmup_steps=5, lr=2e-3,
                 dead_tokens=1024, checkpoint_every=5, seed=1)
kill = int(os.environ.get("KILL_AT", "0"))
def cb(step, sae):
    if step == kill: os._exit(9)          # dies like a killed process: no cleanup, no final save
# 4096 rows / 128 = 32 batches per epoch: 50 steps cross an epoch boundary
train_sae(cfg, TensorSource(x), sys.argv[1], n_steps=50, core=core, core_ids=["a", "b", "c"], resume=True,
          progress=False, callback=cb if kill else None)
'''


def _run(out: Path, kill_at: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "KILL_AT": str(kill_at), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "WANDB_MODE": "disabled",
           "OMP_WAIT_POLICY": "PASSIVE"}  # idle OpenMP threads sleep instead of spinning (faster on a busy 2-core box)
    return subprocess.run([sys.executable, "-c", SCRIPT, str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def _files(d: Path) -> dict:
    """The result files of an SAE folder and their bytes (the empty `.lock` that resumable trainings take is no result;
    `dmsae.json` without its one wall-clock field, `train_seconds`)."""
    assert not (d / ".lock").exists() or (d / ".lock").read_bytes() == b""
    out = {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file() and p.name != ".lock"}
    if "dmsae.json" in out:
        meta = json.loads(out["dmsae.json"])
        assert meta.pop("train_seconds") > 0
        out["dmsae.json"] = json.dumps(meta).encode()
    return out


def test_kill_and_resume_is_bitwise_identical(tmp_path):
    full = _run(tmp_path / "full")
    assert full.returncode == 0, full.stderr
    out = tmp_path / "killed"
    r = _run(out, kill_at=13)                      # last checkpoint at step 10
    assert r.returncode == 9, r.stderr
    assert (out / "checkpoint.pt").exists() and not (out / "sae_weights.safetensors").exists()
    r = _run(out, kill_at=37)                      # resumes at 10, killed after the checkpoint at 35 (second epoch)
    assert r.returncode == 9, r.stderr
    r = _run(out)                                  # resumes at 35 and finishes
    assert r.returncode == 0, r.stderr
    a, b = _files(tmp_path / "full"), _files(out)
    assert sorted(a) == sorted(b) == ["cfg.json", "dmsae.json", "history.csv", "history.json",
                                      "sae_weights.safetensors"]
    for name in a: assert a[name] == b[name], f"{name} differs after kill + resume"


def test_sigkill_at_an_arbitrary_moment(tmp_path):
    "SIGKILL as soon as the first checkpoint exists (mid-step or mid-write), resume, compare bitwise."
    import signal, time
    ref = _run(tmp_path / "full")
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    env = {**os.environ, "KILL_AT": "0", "OMP_WAIT_POLICY": "PASSIVE"}
    p = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out)], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while p.poll() is None and not (out / "checkpoint.pt").exists() and time.time() - t0 < 300: time.sleep(0.002)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = _run(out)
    assert r.returncode == 0, r.stderr
    a, b = _files(tmp_path / "full"), _files(out)
    assert sorted(a) == sorted(b)
    for name in a: assert a[name] == b[name], f"{name} differs after SIGKILL + resume"


def test_resume_refuses_a_different_run(tmp_path):
    import torch
    from dmsae.config import get_config
    from dmsae.train import TensorSource, train_sae
    x = torch.randn(1024, 8, generator=torch.Generator().manual_seed(0))
    cfg = get_config("tiny", d_sae=32, k=2, batch_size=64, checkpoint_every=3, group_fractions=(1/4,))
    def crash(step, sae):
        if step == 4: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_sae(cfg, TensorSource(x), tmp_path, n_steps=8, progress=False, callback=crash)
    with pytest.raises(ValueError, match="different run"):
        train_sae(cfg.replace(k=3), TensorSource(x), tmp_path, n_steps=8, progress=False, resume=True)
    sae, hist = train_sae(cfg, TensorSource(x), tmp_path, n_steps=8, progress=False, resume=True)
    assert hist[-1]["step"] == 8 and not (tmp_path / "checkpoint.pt").exists()


def test_train_steps_sets_the_length_and_passes_over_the_data(tmp_path):
    "`train_steps=None` is one pass (as before the field existed); a larger value runs more passes of the stream."
    import torch
    from dmsae.config import get_config
    from dmsae.train import TensorSource, train_sae
    torch.set_num_threads(1)
    x = torch.randn(1024, 8, generator=torch.Generator().manual_seed(0))
    cfg = get_config("tiny", d_sae=32, k=2, batch_size=64, n_train_tokens=512, group_fractions=(1/4,), seed=2,
                     dead_tokens=256, train_steps=None)
    one, h1 = train_sae(cfg, TensorSource(x), tmp_path / "one", progress=False, log_every=1)
    ref, _ = train_sae(cfg, TensorSource(x), tmp_path / "ref", n_steps=512 // 64, progress=False, log_every=1)
    assert [h["step"] for h in h1] == list(range(1, 9)) and one.meta["n_steps"] == 8
    for n, t in ref.state_dict().items(): assert torch.equal(one.state_dict()[n], t), n
    many, hm = train_sae(cfg.replace(train_steps=40), TensorSource(x), tmp_path / "many", progress=False, log_every=1)
    ref, _ = train_sae(cfg, TensorSource(x), tmp_path / "ref40", n_steps=40, progress=False, log_every=1)
    assert hm[-1]["step"] == 40 and many.meta["n_steps"] == 40   # 40 steps of 64 rows: 2.5 passes over 1,024 rows
    for n, t in ref.state_dict().items(): assert torch.equal(many.state_dict()[n], t), n
