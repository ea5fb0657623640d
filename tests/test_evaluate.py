"""End to end: train tiny SAEs (plain and with a frozen random core), save them in the transfer layout, evaluate the
run."""

import csv, os
from pathlib import Path
import pytest, torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="module")
def tiny():
    from dmsae.config import get_config
    from dmsae.model import load_lm
    from dmsae.activations import build_activation_cache

    cfg = get_config("tiny")
    lm = load_lm(cfg.model_name)
    return cfg, lm, build_activation_cache(cfg, "train", lm, progress=False)


def test_evaluate_run_end_to_end(tmp_path, tiny):
    from dmsae.train import train_sae
    from dmsae.evaluate import evaluate_run

    cfg, lm, train = tiny
    run = tmp_path / "run"
    train_sae(cfg, train, run / "transfer" / f"matryoshka_k{cfg.k}_s0", n_steps=40, progress=False)
    core = torch.nn.functional.normalize(torch.randn(8, train.d_in, generator=torch.Generator().manual_seed(0)), dim=1)
    train_sae(cfg, train, run / "transfer" / f"random_k{cfg.k}_s0", n_steps=40, core=core, progress=False)
    rows = evaluate_run(run, cfg, lm, n_contexts=16, progress=False)

    assert (run / "eval.csv").exists() and (run / "eval.md").exists()
    with open(run / "eval.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(rows) == 5 + 6  # 5 Matryoshka levels (tiny profile), plus a core row with a core
    assert [r["level"] for r in rows if r["method"] == "random"] == ["core", "0", "1", "2", "3", "full"]
    full = {r["method"]: r for r in rows if r["level"] == "full"}
    assert set(full) == {"matryoshka", "random"}
    for r in full.values():
        assert r["k"] == cfg.k and r["seed"] == 0
        assert 0 < r["fvu"] < 1, r
        assert 0 < r["ce_recovered"] <= 1.05, r
        assert abs(r["l0"] - cfg.k) < 0.5 * cfg.k, r  # L0 (core counted) close to k
        assert r["ce_clean"] < r["ce_spliced"] < r["ce_ablated"]
        assert 0 <= r["dead_frac"] < 1 and 0 <= r["dense_frac"] < 1 and r["kl_spliced"] > 0
        assert abs(r["l0_core"] + r["l0_noncore"] - r["l0"]) < 1e-9
    assert full["matryoshka"]["l0_core"] == 0 and full["random"]["n_core"] == 8 and full["random"]["l0_core"] > 0
    md = (run / "eval.md").read_text()
    assert "transfer/random_k16_s0" in md and "ce_recovered" in md
    # nested levels: FVU never increases with width
    for m in full:
        fv = [r["fvu"] for r in rows if r["method"] == m]  # core alone, then the nested levels
        assert all(a >= b - 1e-9 for a, b in zip(fv, fv[1:])), fv
