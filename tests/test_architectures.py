"""Any causal LM by configuration alone: small random models of six families (no download) through caching, one
distillation cycle, transfer, evaluation and SAEBench's `core` eval through the TransformerLens bridge; a model whose
BOS activations overflow float16; the whole pipeline of one of them from the shell."""
import json, math, os
import pytest, torch
from conftest import FAMILIES, ROOT, make_model

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RUN = dict(hook_layer=2, context_size=32, n_train_tokens=4096, n_heldout_tokens=512, shard_tokens=2048, d_sae=64, k=4,
           batch_size=256, train_steps=8, n_cycles=1, dead_tokens=1024, transfer_ks=[4], eval_contexts=8,
           saebench_contexts=8, checkpoint_every=100)


def pipeline(cfg, run):
    "Distil (one cycle), transfer, evaluate and run SAEBench core; returns (our rows, SAEBench rows)."
    from dmsae.distill import distill, transfer
    from dmsae.evaluate import evaluate_run
    from dmsae.model import load_lm
    from dmsae.saebench import saebench_run
    lm = load_lm(cfg.model_name)
    distill(cfg, lm, run_dir=run, progress=False)
    transfer(cfg, methods=("dmsae", "matryoshka"), lm=lm, run_dir=run, progress=False)
    rows = evaluate_run(run / "transfer", cfg, lm, levels=False, n_contexts=cfg.eval_contexts, progress=False)
    sb = saebench_run(run / "transfer", cfg, evals=("core",), n_contexts=cfg.saebench_contexts, progress=False)
    return lm, rows, sb


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_runs_the_whole_pipeline(family, home, tmp_path):
    from dmsae.config import get_config
    from dmsae.saebench import load_hooked_transformer
    tl_name = FAMILIES[family][2]
    cfg = get_config("tiny", model_name=make_model(tmp_path / family, family), tl_model_name=tl_name, **RUN)
    lm, rows, sb = pipeline(cfg, tmp_path / "run")
    # run-to-hook then run-from-hook is the full forward; TransformerLens computes the same logits
    tk = torch.randint(0, 1000, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = lm.logits(tk)
        assert (lm.run_from_hook(lm.run_to_hook(tk, cfg.hook_layer), cfg.hook_layer, tk) - full).abs().max() < 1e-4
        tl = load_hooked_transformer(cfg.model_name, tl_name=tl_name)
        assert (tl(tk) - full).abs().max() < 1e-3, family
    assert {r["method"] for r in rows} == {"dmsae", "matryoshka"}
    for r in rows:
        assert all(math.isfinite(r[m]) for m in ("fvu", "l0", "ce_spliced", "ce_recovered", "kl_spliced")), r
        assert 0 < r["fvu"] < 1.5, r                  # (random models: clean and ablated losses are both near log V)
    ce_score = "core/model_performance_preservation/ce_loss_score"
    assert len(sb) == 2 and all(math.isfinite(float(s["core/sparsity/l0"])) and ce_score in s for s in sb), sb


def test_float16_overflow_is_refused_at_caching_and_bfloat16_runs(home, tmp_path):
    "A model whose BOS residual exceeds float16's range: one clear error at caching, a working run in bfloat16."
    from dmsae.activations import build_activation_cache
    from dmsae.config import get_config
    from dmsae.model import load_lm
    cfg = get_config("tiny", model_name=make_model(tmp_path / "big", "llama", bos_norm=3e5), **RUN)
    lm = load_lm(cfg.model_name)
    with torch.no_grad(): bos_row = lm.run_to_hook(torch.tensor([[lm.bos_id, 5, 6]]), cfg.hook_layer)[0, 0]
    assert bos_row.abs().max() > 65504                                   # beyond float16, finite in float32
    with pytest.raises(ValueError, match="cache_dtype='bfloat16'"):
        build_activation_cache(cfg, "heldout", lm, progress=False)       # the held-out cache keeps BOS rows
    _, rows, sb = pipeline(cfg.replace(cache_dtype="bfloat16"), tmp_path / "run")
    assert all(math.isfinite(r["ce_recovered"]) and math.isfinite(r["fvu"]) for r in rows), rows


def test_the_small_profile_speed_settings_run_the_pipeline(home, tmp_path):
    "The language model and AuxK's decode in bfloat16 (as in `small`): own caches, a whole run with finite metrics."
    from dmsae.activations import cache_dir
    from dmsae.config import get_config
    from dmsae.distill import distill, transfer
    from dmsae.evaluate import evaluate_run
    from dmsae.model import lm_for
    cfg = get_config("tiny", model_name=make_model(tmp_path / "llama", "llama"), **RUN, model_dtype="bfloat16",
                     aux_dtype="bfloat16", preact_dtype="bfloat16")
    assert cache_dir(cfg) != cache_dir(cfg.replace(model_dtype="float32"))      # a bf16 cache is another cache
    lm = lm_for(cfg)
    assert {p.dtype for p in lm.model.parameters()} == {torch.bfloat16}
    distill(cfg, lm, run_dir=tmp_path / "run", progress=False)
    transfer(cfg, methods=("dmsae", "matryoshka"), lm=lm, run_dir=tmp_path / "run", progress=False)
    rows = evaluate_run(tmp_path / "run" / "transfer", cfg, lm, levels=False, n_contexts=cfg.eval_contexts,
                        progress=False)
    assert len(rows) == 2 and all(math.isfinite(r[m]) for r in rows for m in ("fvu", "l0", "ce_recovered")), rows
    assert all(0 < r["fvu"] < 1.5 for r in rows), rows


def test_a_new_model_from_the_shell(home, tmp_path):
    "cache -> distill -> transfer -> evaluate (with SAEBench core) with `dmsae` commands alone, on a local Gemma-2."
    import subprocess, sys
    folder = make_model(tmp_path / "g2", "gemma2")
    sets = [a for k, v in {**RUN, "model_name": folder, "tl_model_name": "google/gemma-2-2b",
                           "run_dir": str(tmp_path / "run")}.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    env = {**os.environ, "DMSAE_HOME": str(home)}
    def dmsae(*args):
        r = subprocess.run([sys.executable, "-m", "dmsae.cli", *args, *sets], cwd=ROOT, env=env, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout
    dmsae("cache")
    dmsae("distill")
    dmsae("transfer", "--methods", "dmsae", "matryoshka")
    out = dmsae("evaluate", "--saebench", "--target-l0", "k")
    assert out.count("CE recovered=") == 2 and "nan" not in out.split("table:")[0], out
    assert (tmp_path / "run" / "transfer" / "saebench" / "saebench.csv").exists()
    assert (tmp_path / "run" / "transfer" / "eval_at_k.md").exists()
