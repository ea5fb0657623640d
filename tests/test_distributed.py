"""Two processes (torchrun, gloo on CPU) against one process: the same activation cache byte for byte, the same SAE
weights after data-parallel training (within float tolerance, the frozen core bit-identical on every rank), and the same
attribution scores. The worker below runs unchanged in both settings: `python worker.py` is the single process,
`torchrun --nproc_per_node 2 --standalone worker.py` the distributed run."""
import json, os, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]

WORKER = r'''
import json, sys, time, torch
from pathlib import Path
from dmsae.distributed import init_distributed
rank, world, device = init_distributed("cpu")
torch.set_num_threads(1)
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
from dmsae.config import get_config
from dmsae.model import load_lm
from dmsae.activations import build_activation_cache
from dmsae.data import Contexts
from dmsae.train import TensorSource, train_sae
from dmsae.attribution import attribute
from dmsae.sae import SAE
times = {}
# a small random model (argv[2]): what is compared does not depend on the model
cfg = get_config("tiny", model_name=sys.argv[2], hook_layer=2, n_train_tokens=4096, n_heldout_tokens=1024,
                 shard_tokens=512)
lm = load_lm(cfg.model_name)
t0 = time.time()
train = build_activation_cache(cfg, "train", lm, progress=False)
held = build_activation_cache(cfg, "heldout", lm, progress=False)
times["cache_s"] = time.time() - t0

# data-parallel training on synthetic data: a core, both Matryoshka levels, AuxK switched on (dead_tokens is small)
g = torch.Generator().manual_seed(0)
D = torch.nn.functional.normalize(torch.randn(40, 24, generator=g), dim=1)
codes = (torch.rand(4096, 40, generator=g) < 0.08) * torch.rand(4096, 40, generator=g) * 2
x = codes @ D + 0.05 * torch.randn(4096, 24, generator=g) + 0.3
core = torch.nn.functional.normalize(torch.randn(3, 24, generator=g), dim=1)
res = {}
t0 = time.time()
for name, over, kw in (("total", {}, {}), ("core_exempt", dict(core_budget="core_exempt"), {}),
                       ("batchtopk_core", {}, dict(core_act="batchtopk"))):
    c = get_config("tiny", d_sae=192, k=4, batch_size=128, group_fractions=(1/8, 1/4), warmup_steps=5, lr=2e-3,
                   dead_tokens=256, checkpoint_every=20, seed=1, **over)
    sae, hist = train_sae(c, TensorSource(x), out / f"sae_{name}", n_steps=40, core=core, progress=False, sae_kwargs=kw)
    res[name] = dict(state={k: v.clone() for k, v in sae.state_dict().items()}, hist=hist)
# and on the activation cache (reads the global batch, keeps its slice)
sae, hist = train_sae(cfg.replace(batch_size=256), train, out / "sae_cache", n_steps=10, progress=False)
res["cache"] = dict(state={k: v.clone() for k, v in sae.state_dict().items()}, hist=hist)
times["train_s"] = time.time() - t0

# attribution of a fixed random SAE over the held-out cache, with the quantile scores
t0 = time.time()
sae = SAE(lm.d_model, 256, 16, hook_layer=cfg.hook_layer, seed=0, group_fractions=(1/8,))
sae.update_threshold(0.0)    # every positive pre-activation fires (the small model's residuals are small)
htok = Contexts.load(held.root / "tokens.npz").tokens
att = attribute(lm, sae, held, htok, batch_contexts=4, score="quantile", progress=False)
res["attribution"] = dict(mean_abs=att.mean_abs, signed=att.signed, quantile=att.quantile, freq=att.freq,
                          n_tokens=att.n_tokens, loss_spliced=att.loss_spliced, loss_clean=att.loss_clean)
times["attribution_s"] = time.time() - t0
res["caches"] = dict(train=str(train.root), heldout=str(held.root))
res["times"] = times
res["world"] = world
torch.save(res, out / f"rank{rank}.pt")
'''


def _launch(cmd, home, out, tmp, model):
    env = {**os.environ, "DMSAE_HOME": str(home), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.time()
    r = subprocess.run(cmd + [str(tmp / "worker.py"), str(out), model], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    return time.time() - t0


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    "One single-process run and one 2-process torchrun run of the worker, each in its own DMSAE_HOME."
    import torch
    from dmsae.config import dmsae_home
    from dmsae.data import build_embedded_corpus
    from dmsae.model import convert_embedded_model
    build_embedded_corpus()
    convert_embedded_model()
    tmp = tmp_path_factory.mktemp("dist")
    (tmp / "worker.py").write_text(WORKER)
    real = dmsae_home()
    homes = {}
    for name in ("one", "two"):
        h = tmp / f"home_{name}"
        h.mkdir()
        for sub in ("corpus", "models"): (h / sub).symlink_to(real / sub)
        homes[name] = h
    wall = dict(one=_launch([sys.executable], homes["one"], tmp / "one", tmp, tiny_model),
                two=_launch(TORCHRUN + ["--nproc_per_node", "2", "--standalone"], homes["two"], tmp / "two", tmp,
                            tiny_model))
    one = torch.load(tmp / "one" / "rank0.pt", weights_only=False)
    two = [torch.load(tmp / "two" / f"rank{r}.pt", weights_only=False) for r in range(2)]
    print(f"\nwall time: 1 process {wall['one']:.1f}s, 2 processes {wall['two']:.1f}s; "
          f"stages 1 proc {one['times']}, 2 procs {two[0]['times']}")
    return dict(one=one, two=two, tmp=tmp, model=tiny_model)


def test_two_processes_ran(runs):
    assert runs["one"]["world"] == 1 and [r["world"] for r in runs["two"]] == [2, 2]


def test_cache_is_byte_identical(runs):
    one, two = runs["one"], runs["two"][0]
    for split in ("train", "heldout"):
        a, b = Path(one["caches"][split]), Path(two["caches"][split])
        assert a.name == b.name                                        # same key, same folder name
        def data_files(d):
            return sorted(p.name for p in d.iterdir()
                          if p.name not in (".lock", "manifest.json") and not p.name.startswith("clean_loss"))
        fa, fb = data_files(a), data_files(b)
        assert fa == fb and any(f.startswith("shard_") for f in fa), (fa, fb)
        n_shards = sum(f.startswith("shard_") and not f.endswith(".idx.npy") for f in fa)
        for f in fa: assert (a / f).read_bytes() == (b / f).read_bytes(), f"{split}/{f} differs"
        ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
        for m in (ma, mb):
            m.pop("tokens_per_s")
            m.pop("seconds")
        assert ma == mb
        print(f"{split}: {len(fa)} files ({n_shards} shards, one manifest) byte-identical")


def _maxdiff(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in ("W_enc", "W_dec", "b_enc", "b_dec"))


@pytest.mark.parametrize("name", ["total", "core_exempt", "batchtopk_core", "cache"])
def test_training_matches_one_process(runs, name):
    import torch
    one, (r0, r1) = runs["one"][name], [r[name] for r in runs["two"]]
    for k, v in r0["state"].items(): assert torch.equal(v, r1["state"][k]), f"ranks disagree on {k}"  # replicas agree
    diff = _maxdiff(one["state"], r0["state"])
    thr = abs(float(one["state"]["threshold_ema"]) - float(r0["state"]["threshold_ema"]))
    print(f"{name}: max |w_2proc - w_1proc| = {diff:.2e}, threshold EMA diff {thr:.2e}")
    assert diff < 1e-4 and thr < 1e-5
    assert torch.equal(one["state"]["tokens_since_fired"], r0["state"]["tokens_since_fired"])
    assert torch.equal(one["state"]["threshold_count"], r0["state"]["threshold_count"])
    h1, h2 = one["hist"][-1], r0["hist"][-1]
    for k in ("l0", "l0_core", "mse", "auxk", "dead_frac"):
        assert abs(h1[k] - h2[k]) <= 1e-4 * max(1, abs(h1[k])), (k, h1[k], h2[k])
    if name != "cache":
        c = 3                                              # the frozen core: bit-identical on every rank at the end
        for st in (r0["state"], r1["state"], one["state"]):
            assert torch.equal(st["W_enc"][:, :c], one["state"]["W_enc"][:, :c])
        assert any(h["auxk"] > 0 for h in one["hist"]), "AuxK should be active in this run"


def test_attribution_matches_one_process(runs):
    import torch
    a, b = runs["one"]["attribution"], runs["two"][0]["attribution"]
    for k in ("mean_abs", "signed", "quantile", "freq"):
        assert torch.equal(b[k], runs["two"][1]["attribution"][k])
        rel = float((a[k] - b[k]).abs().max() / a[k].abs().max())
        print(f"attribution {k}: max relative diff {rel:.2e}")
        assert rel < 1e-5, (k, rel)
    assert a["n_tokens"] == b["n_tokens"]
    assert abs(a["loss_spliced"] - b["loss_spliced"]) < 1e-5 and abs(a["loss_clean"] - b["loss_clean"]) < 1e-5


def test_cli_cache_under_torchrun(runs):
    "`torchrun ... -m dmsae.cli cache` builds the same cache as the single-process worker."
    tmp = runs["tmp"]
    home = tmp / "home_cli"
    home.mkdir()
    for sub in ("corpus", "models"): (home / sub).symlink_to(os.readlink(tmp / "home_one" / sub))
    env = {**os.environ, "DMSAE_HOME": str(home), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = TORCHRUN + ["--nproc_per_node", "2", "--standalone", "-m", "dmsae.cli", "cache", "--profile", "tiny",
                      "--set", "n_train_tokens=4096", "--set", "n_heldout_tokens=1024", "--set", "shard_tokens=512",
                      "--set", f"model_name={runs['model']}", "--set", "hook_layer=2"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-5000:]
    assert r.stdout.count("train: ActivationCache") == 1, r.stdout      # only rank 0 prints
    for split in ("train", "heldout"):
        a = Path(runs["one"]["caches"][split])
        b = home / "activations" / a.name
        for f in a.glob("shard_*"): assert f.read_bytes() == (b / f.name).read_bytes(), f"{split}/{f.name} differs"
        assert json.loads((b / "manifest.json").read_text())["complete"]


RESUME = r'''
import sys, torch
from pathlib import Path
from dmsae.distributed import init_distributed
rank, world, device = init_distributed("cpu")
torch.set_num_threads(1)
from dmsae.config import get_config
from dmsae.train import TensorSource, train_sae
g = torch.Generator().manual_seed(0)
x = torch.randn(4096, 24, generator=g) + 0.3
c = get_config("tiny", d_sae=192, k=4, batch_size=128, group_fractions=(1/8, 1/4), warmup_steps=5, lr=2e-3,
               dead_tokens=256, checkpoint_every=4, seed=1)
out = Path(sys.argv[1])
sae, hist = train_sae(c, TensorSource(x), out / "sae", n_steps=400, progress=False, resume=True)
if rank == 0: torch.save({k: v.clone() for k, v in sae.state_dict().items()}, out / "state.pt")
'''


def _start(cmd, out, tmp):
    "Start the resume worker with `cmd`."
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen(cmd + [str(tmp / "resume.py"), str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("first,then", [(2, 2), (2, 1), (1, 2)])
def test_training_killed_under_one_world_size_resumes_under_another(tmp_path, first, then):
    """Kill a training mid-way (SIGKILL to every process) under `first` processes, resume it under `then`: the result
    equals the uninterrupted single-process run within float summation tolerance (every rank streams the same global
    batches and takes its slice, so the data order does not depend on the number of processes)."""
    import signal, torch
    (tmp_path / "resume.py").write_text(RESUME)
    cmd = {1: [sys.executable], 2: TORCHRUN + ["--nproc_per_node", "2", "--standalone"]}
    ref = _start(cmd[1], tmp_path / "ref", tmp_path)
    assert ref.wait(timeout=600) == 0, ref.stderr.read()[-3000:]
    p, ckpt = _start(cmd[first], tmp_path / "run", tmp_path), tmp_path / "run" / "sae" / "checkpoint.pt"
    t0 = time.time()
    while not ckpt.exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.01)
    import psutil                                  # torchrun's workers live in their own groups: kill the whole tree
    procs = psutil.Process(p.pid).children(recursive=True) + [psutil.Process(p.pid)]
    for q in procs: q.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=30)
    p.wait()
    assert ckpt.exists() and not (tmp_path / "run" / "state.pt").exists(), "the training ended before the kill"
    step = torch.load(ckpt, weights_only=False)["step"]
    r = _start(cmd[then], tmp_path / "run", tmp_path)
    assert r.wait(timeout=600) == 0, r.stderr.read()[-3000:]
    a, b = (torch.load(tmp_path / d / "state.pt") for d in ("ref", "run"))
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in ("W_enc", "W_dec", "b_enc", "b_dec"))
    print(f"killed at step {step} of 400 under {first} process(es), resumed under {then}: max |dw| = {diff:.1e}")
    assert 0 < step < 400 and diff < 1e-4
