#!/usr/bin/env python
"""One-command check of dmsae on a GPU: correctness against the CPU, a tiny end-to-end pipeline, NCCL, and the speed and
memory of a paper-width SAE step.

    python tools/gpu_check.py OUT_DIR                    # on a CUDA machine (about 3-5 minutes on one H100)
    python tools/gpu_check.py OUT_DIR --device cpu --tiny  # the same checks at toy sizes (seconds; make test)

It needs only torch, transformers (with tokenizers and safetensors), numpy, tqdm and PyYAML, the packages of a stock GPU
machine, plus this working tree: nothing is downloaded (the model is random, the corpus synthetic, the tokenizer built
here), and sae_lens / sae_bench are never imported (the evaluation runs without SAEBench). Where `fastcore` is missing,
a minimal stand-in for `fastcore.basics.patch` (the only part dmsae imports) is installed in `sys.modules`.

Checks (each a row of `OUT_DIR/gpu_check.md` and an entry of `OUT_DIR/gpu_check.json`):

1. `train_step` on the device against the CPU, same SAE and batch: float32 (`preact_dtype=float32`) and mixed precision
   (`preact_dtype=bfloat16`, the [B, F] pre-activations in bf16) against the CPU float32 step. Compared: the loss
   (relative difference), the update of W_enc (norm of the difference of the two updates over the norm of the CPU
   update) and the chosen entries (Jaccard index of the (token, latent) pairs BatchTopK keeps). Tolerances in `TOL`.
2. Attribution scores (`dmsae.attribution.attribute`) of the same SAE and held-out contexts on the device, with the
   language model in float32 and in bfloat16 (`model_dtype`), against the CPU float32 scores: relative L2 difference of
   the score vectors and overlap of the top 10% latents by score.
3. A tiny random-model pipeline on the device: activation caches -> distillation (2 cycles) -> transfer -> evaluation
   (`dmsae.evaluate.evaluate_run`, no SAEBench), with finite FVU checked.
4. torch.distributed with one process: NCCL on CUDA (gloo on the CPU), init, all_reduce, broadcast, destroy.
5. Throughput and peak memory of one training step at paper width (d_sae 65,536, d_in 2,304, k 320, batch 4,096) on
   synthetic N(0, I) activations, float32 and bf16 pre-activations, against the bf16 (and float32) matmul bound: the
   time of the encoder's dense product X[B, d] @ W_enc[d, F] alone (`--tiny`: d_sae 2,048, d_in 64, k 16, batch 512).
"""
from __future__ import annotations
import argparse, inspect, json, math, os, platform, shutil, socket, statistics, sys, tempfile, time, traceback, types
from pathlib import Path

for _k, _v in dict(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled",
                   TOKENIZERS_PARALLELISM="false").items():
    os.environ.setdefault(_k, _v)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this working tree's dmsae, whatever is installed

# tolerances, device result against the CPU float32 result on the same input
TOL = dict(
    step_f32_loss_rel=1e-4,       # |loss_dev - loss_cpu| / loss_cpu, float32 step
    step_f32_update_rel=2e-2,     # |dW_dev - dW_cpu| / |dW_cpu| of W_enc after one Adam step (Adam's first step is
                                  # sign-like, so entries with tiny gradients flip; 2% of the update's norm)
    step_f32_jaccard=0.99,        # chosen (token, latent) pairs
    step_bf16_loss_rel=2e-2,      # bf16 pre-activations choose some different entries near the cut
    step_bf16_update_rel=0.35,
    step_bf16_jaccard=0.85,
    attr_f32_rel=1e-3,            # |s_dev - s_cpu| / |s_cpu| of the attribution scores (float32 model and SAE)
    attr_f32_top_overlap=0.95,    # overlap of the top 10% latents by score
    attr_bf16_rel=0.1,            # the language model in bf16 (`model_dtype`), the SAE in float32
    attr_bf16_top_overlap=0.7,
)


def ensure_fastcore():
    "Install a minimal `fastcore.basics.patch` where fastcore is missing (dmsae imports nothing else from it)."
    try:
        import fastcore.basics  # noqa: F401
        return "fastcore " + __import__("fastcore").__version__
    except ImportError:
        pass
    def patch(f=None, *, as_prop=False, cls_method=False):
        "Add `f` to the class of its first argument's annotation (as fastcore's `patch` does)."
        if f is None:
            return lambda g: patch(g, as_prop=as_prop, cls_method=cls_method)
        g = inspect.unwrap(f)  # through decorators such as `torch.no_grad()`
        ann = g.__annotations__.get(g.__code__.co_varnames[0])
        if isinstance(ann, str):
            ann = eval(ann, g.__globals__)
        for c in (getattr(ann, "__args__", None) or (ann,)):
            setattr(c, f.__name__, property(f) if as_prop else classmethod(f) if cls_method else f)
        return f

    pkg, basics = types.ModuleType("fastcore"), types.ModuleType("fastcore.basics")
    basics.patch = patch
    pkg.basics = basics
    pkg.__version__ = "stand-in (tools/gpu_check.py)"
    sys.modules["fastcore"], sys.modules["fastcore.basics"] = pkg, basics
    return "fastcore stand-in"


def sync(dev):
    import torch
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, dev, reps, warm=1):
    "Median seconds of `fn()` over `reps` calls after `warm` warm-up calls."
    for _ in range(warm):
        fn()
    sync(dev)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync(dev)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


# ------------------------------------------------------------------------------------------------ 1. training step
def _state(cfg, sae, n_steps=1000):
    from dmsae.train import make_state
    return make_state(sae, cfg, n_steps)


def check_step(dev, tiny):
    "One `train_step` on the CPU (float32) and on `dev` (float32, bf16 pre-activations) from the same SAE and batch."
    import copy, torch
    from dmsae.config import DMSAEConfig
    from dmsae.train import init_sae, train_step
    d, F, k, B = (64, 1024, 16, 512) if tiny else (576, 16384, 64, 4096)
    if dev.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 (TF32 would be a third precision)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, d, generator=g) @ (torch.randn(d, d, generator=g) / d ** 0.5) + torch.randn(d, generator=g)
    cfg = DMSAEConfig(d_sae=F, k=k, batch_size=B, seed=0, warmup_steps=0, device="cpu").validate()
    torch.manual_seed(0)
    base = init_sae(cfg, d, None, x)
    w0 = base.W_enc.detach().clone()

    def run(device, preact):
        sae = copy.deepcopy(base).to(device)
        st = _state(cfg.replace(preact_dtype=preact, device=device), sae)
        with torch.no_grad():
            xd = x.to(device)
            if preact == "float32":
                pre = sae.pre_acts(xd)
            else:  # the entries a bf16 step ranks
                bf = torch.bfloat16
                pre = torch.addmm(sae.b_enc.to(bf), (xd - sae.b_dec).to(bf), sae.W_enc.to(bf))
            rows, cols, _, _ = sae.select_active(pre)
        pairs = set(zip(rows.tolist(), cols.tolist()))
        out = train_step(st, x)
        sync(device)
        return out["loss"], sae.W_enc.detach().cpu() - w0, pairs

    l0, u0, p0 = run("cpu", "float32")
    res = {}
    for preact, tag in (("float32", "f32"), ("bfloat16", "bf16")):
        l1, u1, p1 = run(dev, preact)
        res[tag] = dict(loss_cpu=l0, loss_dev=l1, loss_rel=abs(l1 - l0) / abs(l0),
                        update_rel=float((u1 - u0).norm() / u0.norm()),
                        jaccard=len(p0 & p1) / len(p0 | p1))
    ok = all(res[t]["loss_rel"] <= TOL[f"step_{t}_loss_rel"] and res[t]["update_rel"] <= TOL[f"step_{t}_update_rel"]
             and res[t]["jaccard"] >= TOL[f"step_{t}_jaccard"] for t in res)
    detail = "; ".join(f"{t}: loss rel {r['loss_rel']:.1e}, W_enc update rel {r['update_rel']:.1e}, "
                       f"Jaccard {r['jaccard']:.4f}" for t, r in res.items())
    return ok, dict(shape=dict(d_in=d, d_sae=F, k=k, batch=B), **res), detail


# ------------------------------------------------------------------------------------------------ 3. pipeline assets
WORDS = [f"w{i}" for i in range(200)]


def make_assets(folder: Path, n_docs=240, seed=0):
    """A synthetic corpus (`corpus.jsonl`: documents of words drawn from a Zipf law with some bigram structure), a
    word-level tokenizer over its words and a random 4-block Llama (width 64) saved with `save_pretrained`."""
    import numpy as np, torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    with open(folder / "corpus.jsonl", "w") as f:
        for i in range(n_docs):
            w = rng.choice(len(WORDS), size=int(rng.integers(60, 200)), p=p)
            w[1::2] = (w[::2][: len(w[1::2])] * 7 + 3) % len(WORDS)  # every second word follows from the one before
            f.write(json.dumps(dict(id=f"doc{i}", text=" ".join(WORDS[j] for j in w))) + "\n")
    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    model_dir = folder / "model"
    tok.save_pretrained(model_dir)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, bos_token_id=0,
                      eos_token_id=1)
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).float().save_pretrained(model_dir)
    return model_dir, folder / "corpus.jsonl"


def pipeline_config(dev, model_dir, corpus, run_dir):
    from dmsae.config import get_config
    return get_config("tiny", model_name=str(model_dir), dataset=str(corpus), hook_layer=2, device=dev,
                      context_size=32, n_train_tokens=8192, n_heldout_tokens=1024, shard_tokens=4096,
                      heldout_fraction=0.1, d_sae=256, k=8, batch_size=256, train_steps=24, n_cycles=1,
                      dead_tokens=4096, checkpoint_every=1000, transfer_ks=(8,), eval_contexts=8,
                      run_dir=str(run_dir))


# ------------------------------------------------------------------------------------------------ 2. attribution
def check_attribution(dev, assets):
    "Attribution scores of one SAE over the same held-out contexts, on the CPU and on `dev`, float32."
    import torch
    from dmsae.activations import heldout_data
    from dmsae.attribution import attribute
    from dmsae.model import load_lm
    from dmsae.train import init_sae
    model_dir, corpus, work = assets
    cfg = pipeline_config("cpu", model_dir, corpus, work / "attr_run")
    lm, held, ctx = heldout_data(cfg, load_lm(str(model_dir), "cpu"))
    x0 = held.rows_range(0, min(held.n_rows, 512)).float()
    torch.manual_seed(0)
    sae = init_sae(cfg.replace(d_sae=512, k=16), held.d_in, None, x0)
    with torch.no_grad():  # a spread of encoder directions and biases, so scores differ across latents
        sae.W_enc.normal_(0, 1 / held.d_in ** 0.5)
        sae.W_dec.copy_(sae.W_enc.t() / sae.W_enc.t().norm(dim=1, keepdim=True))
    a_cpu = attribute(lm, sae, held, ctx.tokens, progress=False)
    s0 = a_cpu.scores().double().cpu()
    n = max(1, len(s0) // 10)
    res, ok = {}, True
    for dtype, tag in (("float32", "f32"), ("bfloat16", "bf16")):
        lm_d = load_lm(str(model_dir), dev, dtype)
        s1 = attribute(lm_d, sae.to(dev), held, ctx.tokens, progress=False).scores().double().cpu()
        rel = float((s1 - s0).norm() / s0.norm().clamp_min(1e-30))
        top = len(set(s0.topk(n).indices.tolist()) & set(s1.topk(n).indices.tolist())) / n
        res[tag] = dict(rel=rel, top10pct_overlap=top)
        ok &= rel <= TOL[f"attr_{tag}_rel"] and top >= TOL[f"attr_{tag}_top_overlap"]
        del lm_d
    detail = "; ".join(f"{t} model: scores rel diff {r['rel']:.1e}, top-10% overlap {r['top10pct_overlap']:.2f}"
                       for t, r in res.items())
    return ok, dict(n_latents=len(s0), **res), detail


# ------------------------------------------------------------------------------------------------ 3. pipeline
def check_pipeline(dev, assets):
    "Caches, distillation (cycle 0 + 1), transfer (dmsae and plain Matryoshka at k 8) and evaluation on `dev`."
    import math
    from dmsae.activations import build_activation_cache
    from dmsae.distill import distill, transfer
    from dmsae.evaluate import evaluate_run
    from dmsae.model import load_lm
    model_dir, corpus, work = assets
    cfg = pipeline_config(dev, model_dir, corpus, work / "run")
    lm = load_lm(str(model_dir), dev)
    t = {}
    t0 = time.perf_counter()
    build_activation_cache(cfg, "train", lm, progress=False)
    build_activation_cache(cfg, "heldout", lm, progress=False)
    t["cache_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = distill(cfg, lm=lm, progress=False)
    t["distill_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    transfer(cfg, methods=("dmsae", "matryoshka"), lm=lm, progress=False)
    t["transfer_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = evaluate_run(cfg.run_dir, cfg, lm=lm, progress=False)
    t["evaluate_s"] = time.perf_counter() - t0
    fvus = [r.get("fvu") for r in rows if r.get("fvu") is not None]
    ok = bool(fvus) and all(math.isfinite(v) and 0 <= v < 2 for v in fvus)
    core = getattr(res, "core_ids", None)
    info = dict(n_rows=len(rows), fvu_min=min(fvus) if fvus else None, fvu_max=max(fvus) if fvus else None,
                core_size=len(core) if core is not None else None, **{k: round(v, 2) for k, v in t.items()})
    return ok, info, (f"{len(rows)} evaluation rows, FVU {info['fvu_min']:.3f}-{info['fvu_max']:.3f}; "
                      + ", ".join(f"{k} {v:.1f}" for k, v in t.items()))


# ------------------------------------------------------------------------------------------------ 4. distributed
def check_distributed(dev):
    "torch.distributed with world size 1: NCCL on CUDA, gloo on the CPU."
    import torch
    import torch.distributed as dist
    backend = "nccl" if dev.startswith("cuda") else "gloo"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kw = {}
    if dev.startswith("cuda"):
        kw["device_id"] = torch.device("cuda", torch.device(dev).index or 0)  # NCCL wants an indexed device
        torch.cuda.set_device(kw["device_id"])
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1, **kw)
    try:
        x = torch.arange(4, dtype=torch.float32, device=dev)
        dist.all_reduce(x)
        y = x.clone()
        dist.broadcast(y, 0)
        objs = [None]
        dist.all_gather_object(objs, dict(rank=0))
        sync(dev)
        ok = x.tolist() == [0.0, 1.0, 2.0, 3.0] and y.tolist() == x.tolist() and objs == [dict(rank=0)]
        v = torch.cuda.nccl.version() if backend == "nccl" else None
        nccl = None if v is None else ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
    finally:
        dist.destroy_process_group()
    detail = f"{backend}{' ' + nccl if nccl else ''}: all_reduce, broadcast, all_gather_object"
    return ok, dict(backend=backend, nccl=nccl), detail


# ------------------------------------------------------------------------------------------------ 5. paper-width step
def check_speed(dev, tiny):
    "Tokens/s and peak memory of `train_step` at paper width, float32 and bf16 pre-activations, vs the matmul bound."
    import torch
    from dmsae.config import DMSAEConfig
    from dmsae.train import init_sae, train_step
    d, F, k, B = (64, 2048, 16, 512) if tiny else (2304, 65536, 320, 4096)
    reps = 3 if tiny else 10
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(B, d, generator=g).to(dev) for _ in range(4)]
    out, rows = {}, []
    for preact in ("float32", "bfloat16"):
        cfg = DMSAEConfig(d_sae=F, k=k, batch_size=B, seed=0, warmup_steps=0, preact_dtype=preact,
                          device=dev).validate()
        torch.manual_seed(0)
        sae = init_sae(cfg, d, None, xs[0].cpu()).to(dev)
        st = _state(cfg, sae)
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        i = [0]

        def step():
            train_step(st, xs[i[0] % len(xs)])
            i[0] += 1
        s = timed(step, dev, reps, warm=2)
        peak = torch.cuda.max_memory_allocated() / 2**30 if dev.startswith("cuda") else None
        out[preact] = dict(s_per_step=s, tok_per_s=B / s, peak_GiB=peak)
        del st, sae
    for dt in (torch.float32, torch.bfloat16):
        X = torch.randn(B, d, device=dev, dtype=dt)
        W = torch.randn(d, F, device=dev, dtype=dt) / d ** 0.5
        H = torch.empty(B, F, device=dev, dtype=dt)
        s = timed(lambda: torch.mm(X, W, out=H), dev, reps * 3, warm=2)
        out[f"matmul_{str(dt)[6:]}"] = dict(s=s, TFLOP_per_s=2 * B * d * F / s / 1e12)
        del X, W, H
    bound = out["matmul_bfloat16"]["s"]
    for preact in ("float32", "bfloat16"):
        out[preact]["x_bf16_matmul"] = out[preact]["s_per_step"] / bound
    info = dict(shape=dict(d_in=d, d_sae=F, k=k, batch=B), **out)
    detail = (f"F={F}, d={d}, k={k}, B={B}: f32 step {out['float32']['s_per_step'] * 1e3:.1f} ms "
              f"({out['float32']['tok_per_s']:,.0f} tok/s, {out['float32']['x_bf16_matmul']:.1f}x the bf16 matmul), "
              f"bf16 step {out['bfloat16']['s_per_step'] * 1e3:.1f} ms ({out['bfloat16']['tok_per_s']:,.0f} tok/s, "
              f"{out['bfloat16']['x_bf16_matmul']:.1f}x); bf16 matmul {bound * 1e3:.2f} ms "
              f"({out['matmul_bfloat16']['TFLOP_per_s']:.3g} TFLOP/s)")
    if out["float32"]["peak_GiB"] is not None:
        detail += f"; peak {out['float32']['peak_GiB']:.1f} / {out['bfloat16']['peak_GiB']:.1f} GiB"
    return True, info, detail


# ------------------------------------------------------------------------------------------------ main
def environment(dev):
    import torch
    env = dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
               device=dev, gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
               cpu_capability=torch.backends.cpu.get_cpu_capability(), date=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                            time.gmtime()))
    import importlib.util
    for mod in ("transformers", "numpy", "tokenizers", "safetensors"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:
            env[mod] = None
    for mod in ("sae_lens", "sae_bench"):  # never imported here: only whether they exist
        try:
            env[mod] = "present (not used)" if importlib.util.find_spec(mod) else None
        except (ImportError, ValueError):
            env[mod] = None
    return env


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="folder for gpu_check.json and gpu_check.md")
    ap.add_argument("--device", default="cuda", help="`cuda` (default), `cuda:1`, or `cpu`")
    ap.add_argument("--tiny", action="store_true", help="toy sizes (seconds on a CPU; what make test runs)")
    ap.add_argument("--only", nargs="+", default=None, help="run only these checks (step, attribution, pipeline, "
                                                            "distributed, speed)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fc = ensure_fastcore()
    import torch
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {a.device}: CUDA is not available here; use --device cpu --tiny")
    work = Path(tempfile.mkdtemp(prefix="dmsae_gpu_check_"))
    os.environ["DMSAE_HOME"] = str(work / "home")  # caches of this check only, removed at the end
    env = dict(environment(a.device), fastcore=fc, tiny=a.tiny)
    results, T0 = [], time.perf_counter()
    assets = None
    checks = [("step", "train_step: device vs CPU (f32, bf16 pre-acts)", lambda: check_step(a.device, a.tiny)),
              ("attribution", "attribution: device (f32, bf16 LM) vs CPU", lambda: check_attribution(a.device, assets)),
              ("pipeline", "pipeline cache->distill->transfer->evaluate", lambda: check_pipeline(a.device, assets)),
              ("distributed", "torch.distributed, world size 1", lambda: check_distributed(a.device)),
              ("speed", "paper-width SAE step vs matmul bound", lambda: check_speed(a.device, a.tiny))]
    try:
        for name, title, fn in checks:
            if a.only and name not in a.only:
                continue
            if name in ("attribution", "pipeline") and assets is None:
                assets = (*make_assets(work / "assets"), work)
            t0 = time.perf_counter()
            try:
                ok, info, detail = fn()
                status = "pass" if ok else "FAIL"
            except Exception as e:  # one failing check does not hide the others
                ok, info, status = False, dict(error=traceback.format_exc()), "ERROR"
                detail = f"{type(e).__name__}: {e}"
            results.append(dict(check=name, title=title, status=status, seconds=round(time.perf_counter() - t0, 2),
                                detail=detail, info=info))
            print(f"[{status}] {title} ({results[-1]['seconds']:.1f}s): {detail}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - T0
    doc = dict(environment=env, tolerances=TOL, seconds=round(total, 1), passed=all(r["status"] == "pass"
                                                                                    for r in results), checks=results)
    (out / "gpu_check.json").write_text(json.dumps(doc, indent=2, default=str))
    md = [f"Measured {env['date'][:10]}, {env['gpu'] or 'CPU'} (device {a.device}{', tiny sizes' if a.tiny else ''}), "
          f"torch {env['torch']}, CUDA {env['cuda']}, transformers {env['transformers']}; {total:.0f} s in all.", "",
          "| check | status | seconds | result |", "|---|---|---|---|"]
    md += [f"| {r['title']} | {r['status']} | {r['seconds']:.1f} | {r['detail'].replace('|', '/')} |" for r in results]
    md += ["", "Tolerances (device vs CPU float32, same input): " + ", ".join(f"{k} {v:g}" for k, v in TOL.items())]
    (out / "gpu_check.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if doc["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
