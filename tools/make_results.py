#!/usr/bin/env python
"""The results chapter of the docs (docs/results.md) from the study's tables in figures/study/.

Every number in the chapter is read from the files `make study` wrote (`table_frontiers.csv`, `convergence.json`, the
chunks' `distilled_core.json`, `eval_k*.csv` and `cores.safetensors`) through `dmsae.study`, so the prose cannot drift
from the tables. `--check` exits 1 when docs/results.md is out of date."""
import json, sys
from pathlib import Path
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from dmsae.config import get_config, regime, PAPER_REGIME  # noqa: E402
from dmsae.evaluate import to_markdown  # noqa: E402
from dmsae.study import VARIANTS, CLAIMS, claim_rows, answer_rows, consistency  # noqa: E402

STUDY = ROOT / "figures" / "study"
SYNTH = ROOT / "figures" / "synth"
OUT = ROOT / "docs" / "results.md"
NAMES = {"dmsae": "distilled core", "matryoshka": "plain Matryoshka", "random_core": "random core",
         "trained_core": "trained latents at random", "compute_matched": "compute-matched Matryoshka"}

def pm(mean: float, sd: float, digits: int = 4) -> str:
    "`mean ± sd`, or the mean alone for one seed."
    return f"{mean:.{digits}f}" if pd.isna(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"

def regime_table() -> str:
    "The study's dimensionless ratios beside the paper's (`dmsae.config.regime`); core ratios are per reading."
    r = regime(get_config("study"))
    keep = ["width_over_d", "k_over_d", "first_group_over_k", "steps", "dead_over_tokens", "acts_per_latent"]
    paper = dict(first_group_over_k=PAPER_REGIME["first_group"][0] / 320)
    rows = []
    for k in keep:
        p = PAPER_REGIME[k][0] if k in PAPER_REGIME else paper.get(k)
        fmt = lambda x: "" if x is None else (f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}")
        rows.append(dict(ratio=k, paper=fmt(p), study=fmt(r[k])))
    return to_markdown(rows)

def chunk_facts() -> pd.DataFrame:
    "Per chunk: variant, seed, core size and the share of tokens a core latent fires on at the distillation k."
    cfg, rows = get_config("study"), []
    for p in sorted(STUDY.glob("chunks/*/distilled_core.json")):
        variant, seed = p.parent.name.rsplit("_s", 1)
        n = json.loads(p.read_text())["n"]
        ev = p.parent / f"eval_k{cfg.k}.csv"
        firing = None
        if ev.exists() and n:
            e = pd.read_csv(ev)
            e = e[(e.method == "dmsae") & (e.level == "full")] if "level" in e else e[e.method == "dmsae"]
            firing = float(e.l0_core.iloc[0]) / n if len(e) else None
        rows.append(dict(variant=variant, seed=int(seed), n_core=n, firing=firing))
    return pd.DataFrame(rows)

def claim_section(claims: pd.DataFrame, key: str, text: str) -> str:
    "One claim: a table of every variant and k where both methods ran."
    sel = claims[claims.key == key]
    if not len(sel): return f"### {text}\n\nNot run.\n"
    a, b = sel.a.iloc[0], sel.b.iloc[0]
    rows = [{"reading": f"`{r.variant}`", "k": r.k, "held-out L0": f"{r.l0_a:.0f} vs {r.l0_b:.0f}",
             NAMES[a]: pm(r.mean_a, r.sd_a), NAMES[b]: pm(r.mean_b, r.sd_b), "seeds": r.n, "verdict": r.verdict}
            for r in sel.itertuples()]
    better = "higher" if sel.metric.iloc[0] == "ce_recovered" else "lower"
    return f"### {text[0].upper() + text[1:]}\n\n`{sel.metric.iloc[0]}`, {better} is better:\n\n{to_markdown(rows)}\n"

def reading_paragraph(v: str, facts: pd.DataFrame, claims: pd.DataFrame, k0: int) -> str:
    "What one reading of the core is and what it does at the distillation k."
    f = facts[facts.variant == v]
    what = VARIANTS[v][1]
    seeds = len(f)
    core = f"{f.n_core.min()}-{f.n_core.max()}" if f.n_core.min() != f.n_core.max() else f"{f.n_core.min()}"
    fire = f.firing.dropna()
    s = (f"**`{v}`**: {what}. Over {seeds} seed{'s' if seeds > 1 else ''} the distilled core holds {core} latents "
         f"({f.n_core.mean() / k0:.2f} $k$)")
    s += f", each firing on {fire.mean():.0%} of the held-out tokens on average" if len(fire) else ""
    c = claims[(claims.variant == v) & (claims.k == k0)].set_index("key")
    if "fvu" in c.index:
        r = c.loc["fvu"]
        if not r.equal_l0:
            s += (f". It cannot be compared at equal L0: its SAE sits at held-out L0 {r.l0_a:.0f} against "
                  f"{r.l0_b:.0f} for plain Matryoshka (a ReLU core ignores the calibrated thresholds)")
        else:
            ce = c.loc["ce"]
            s += (f". At $k = {k0}$ and L0 {r.l0_a:.0f}: FVU {pm(r.mean_a, r.sd_a)} against "
                  f"{pm(r.mean_b, r.sd_b)} for plain Matryoshka (*{r.rule}*), CE loss recovered "
                  f"{pm(ce.mean_a, ce.sd_a)} against {pm(ce.mean_b, ce.sd_b)} (*{ce.rule}*)")
    return s + ".\n"

GPU = """A GPU run settles what the CPU cannot if, in the paper's regime (width 28 $d$, about $10^5$ steps,
Gemma-2-2B at $k = 320$) and over 3 seeds:

1. the held-out FVU curve of a plain Matryoshka training flattens (the last 20% of the steps improve it by less
   than 1%);
2. $\\tau = 0.9$ gives a core of about 0.6 $k$ without a cap;
3. at equal L0 the distilled-core SAE beats plain Matryoshka, a core of trained latents drawn at random and
   compute-matched Matryoshka by more than 2 sd, with a core that matches across seeds more often than a plain
   SAE's top latents.

`tools/gpu_check.py` checks that the GPU path runs before such a run is started."""

def read_md(p: Path) -> str:
    "A generated Markdown table, or a line saying which command writes it."
    return p.read_text().strip() if p.exists() else f"(`{p.relative_to(ROOT)}` is written by `make synth`)"

def plateau_line(p: Path = SYNTH / "table_plateaus.csv") -> str:
    "How many trainings of the study (method and k, mean over seeds) improve by less than 1% over their last 20%."
    if not p.exists(): return ""
    t = pd.read_csv(p)
    over = t[t.plateau_mean >= 0.01]
    line = (f"{len(t) - len(over)} of {len(t)} trainings (per reading, method and $k$, mean over seeds) improve by "
            "less than 1%")
    if not len(over): return line + "."
    names = ", ".join(f"`{r.variant}` {r.method} at $k = {r.k}$ ({100 * r.plateau_mean:.2f}% +- "
                      f"{100 * r.plateau_sd:.2f}%)" for r in over.itertuples())
    return line + f"; the others still improve: {names}."

def dead_line(k: int, # the distillation k
              width: int, # the SAE width
             ) -> str:
    "Dead latents of plain Matryoshka at `k`, seed by seed (SynthSAEBench's count, from the chunks' `synthbench_k*`)."
    rows = [pd.read_csv(p) for p in sorted(SYNTH.glob(f"chunks/*/synthbench_k{k}.csv"))]
    if not rows: return ""
    sb = pd.concat(rows, ignore_index=True)
    per = sb[sb.method == "matryoshka"].groupby("seed").dead_latents.first()
    seeds = ", ".join(f"{int(v):,} (seed {s})" for s, v in per.items())
    return (f"Seed by seed, plain Matryoshka at $k = {k}$ leaves {seeds} of its {width:,} latents dead, in the same "
            "world; the sd of MCC and of dead latents below is over these seeds.")

def synth_section() -> str:
    "The synthetic world's answer beside the language model's, from figures/synth/ (`make synth`)."
    cfg = get_config("synth")
    head = """## Against a known truth: the synthetic world

The same pipeline on a world whose true features are known (`nbs/17_synth.ipynb`: SAELens' SynthSAEBench
generator, and a downstream loss that reads a known subset of the features with known weights), in the paper's
ratios, with trainings near their plateau (below; stage `nbs/paper/07_synth.ipynb`, `make synth`).

"""
    if not (SYNTH / "study.json").exists(): return head + "The synthetic study has not run: `make synth`.\n"
    study = json.loads((SYNTH / "study.json").read_text())
    r = regime(cfg, n_core=cfg.core_max)
    conv = json.loads((SYNTH / "convergence.json").read_text()) if (SYNTH / "convergence.json").exists() else None
    ratios = to_markdown([dict(ratio=k, paper=f"{PAPER_REGIME[k][0]:.3g}", synthetic=f"{r[k]:.3g}")
                          for k in ("width_over_d", "k_over_d", "first_group_over_k", "core_over_k",
                                    "dead_over_tokens") if k in PAPER_REGIME])
    conv_line = (f"A plain Matryoshka training reaches held-out FVU {conv['curve'][-1]['fvu']:.4f} after "
                 f"{conv['steps']:,} steps, and the last 20% of the steps improve it by {100 * conv['plateau']:.2f}%."
                 if conv else "")
    world = f"$d = {cfg.synth_d}$, {cfg.synth_features:,} true features, SAE width {cfg.d_sae:,}, $k = {cfg.k}$"
    return head + f"""World: {world},
transfers to $k \\in \\{{{", ".join(str(k) for k in cfg.transfer_ks)}\\}}$; finished chunks (reading and seed):
{", ".join(f"`{c}`" for c in study["chunks_done"]) or "none"}.

{ratios}

{conv_line}

![convergence](../figures/synth/fig_convergence.png)

Every training of the study, by the same measure on its training batches (relative improvement over the last 20% of
its steps, mean and sd over seeds):

{read_md(SYNTH / "table_plateaus.md")}

{plateau_line()}

![training curves](../figures/synth/fig_training_curves.png)

### The verdicts beside the language model's

Each reading is named by its language-model counterpart; a verdict needs 3 seeds (`dmsae.study.side_by_side`).

{read_md(SYNTH / "table_verdicts.md")}

### The synthetic answer, with its evidence

{read_md(SYNTH / "table_answer.md")}

### Importance recovery and what the sets hold

{read_md(SYNTH / "table_importance.md")}

### The same true features across seeds

{read_md(SYNTH / "table_truth_consistency.md")}

### SynthSAEBench's metrics

{dead_line(cfg.k, cfg.d_sae)}

{read_md(SYNTH / "table_synthbench.md")}

![synthetic frontiers](../figures/synth/fig_frontiers.png)

"""

def render() -> str:
    cfg = get_config("study")
    k0 = cfg.k
    fr = pd.read_csv(STUDY / "table_frontiers.csv")
    claims = claim_rows(fr, k0)
    variants = [v for v in VARIANTS if v in set(fr.variant)]
    cons = pd.concat([consistency(STUDY, v) for v in variants], ignore_index=True)
    cons = cons[cons.pairs > 0]
    facts = chunk_facts()
    conv = json.loads((STUDY / "convergence.json").read_text())
    answer = answer_rows(claims, cons)
    equal = sorted(set(claims[claims.equal_l0 & (claims.n >= 3) & (claims.k == k0) & (claims.key == "fvu")].variant))
    apart = claims[~claims.equal_l0 & (claims.k == k0) & (claims.key == "fvu")]
    parts = [f"""<!-- generated from figures/study/ by tools/make_results.py: run `make study` or the tool -->

# Results: does the distilled core help?

> The study's answer on the SmolLM2 miniature: each claim of the paper at equal held-out L0 (core counted), mean ±
> sd over seeds, a verdict only where the gap exceeds twice the larger sd.

The study (`nbs/15_study.ipynb`, stage `nbs/paper/05_study.ipynb`, `make study`) trains every reading of the core
and its baselines at seeds {", ".join(str(s) for s in sorted(set(facts.seed)))}, calibrates every SAE's threshold
on held-out contexts so that its L0 equals its $k$, and checks each claim with `dmsae.study.verdict`. The
comparisons below are at $k = {k0}$, the distillation $k$, unless they say otherwise.

## The regime

The study is a miniature of the paper in its dimensionless ratios (`dmsae.config.regime`; the paper's core is
197 latents = 0.62 $k$, and each reading's core over $k$ is given with it below):

{regime_table()}

Width over $d$ stays at about a quarter of the paper's, since the encoder matmul sets the CPU cost. The trainings
are close to, not at, convergence: the held-out FVU of a plain Matryoshka training reaches
{conv["curve"][-1]["fvu"]:.4f} after {conv["steps"]:,} steps, and the last 20% of the steps still improve it by
{100 * conv["plateau"]:.1f}% (`figures/study/convergence.json`).

![convergence](../figures/study/fig_convergence.png)

## The answer

Readings compared at equal L0 with 3 seeds: {", ".join(f"`{v}`" for v in equal)}.

{to_markdown(answer)}

![gaps to plain Matryoshka](../figures/study/fig_gaps.png)

## The readings of the core

"""]
    parts += [reading_paragraph(v, facts, claims, k0) + "\n" for v in variants]
    if len(apart):
        parts.append("Not comparable at equal L0 at $k = " + str(k0) + "$: " + ", ".join(
            f"`{r.variant}` (L0 {r.l0_a:.0f} against {r.l0_b:.0f})" for r in apart.itertuples()) +
            ". Their rows stay in the tables, marked *not at equal L0*.\n\n")
    parts.append("## Every claim, every reading, every $k$\n\n")
    parts += [claim_section(claims, key, text) + "\n" for key, text, *_ in CLAIMS]
    crow = [{"reading": f"`{r.variant}`", "set": r.set, "latents": f"{r.n_latents:.0f}", "pairs of seeds": r.pairs,
             "matched > 0.9": pm(100 * r["matched>0.9_mean"], 100 * r["matched>0.9_sd"], 2) + "%",
             "matched > 0.7": pm(100 * r["matched>0.7_mean"], 100 * r["matched>0.7_sd"], 2) + "%"}
            for _, r in cons.iterrows()]
    parts.append(f"""## Consistency across seeds

The fraction of latents of one seed with a twin above cosine 0.9 / 0.7 in another (`dmsae.study.consistency`): the
distilled core (`dmsae`), as many top latents of plain Matryoshka by attribution (`matryoshka_top`) and its whole
first group (`matryoshka_first`).

{to_markdown(crow)}

## Frontiers

Every metric against held-out L0, per reading (mean ± sd over seeds; `figures/study/table_frontiers.csv`).

![study frontiers](../figures/study/fig_frontiers.png)

{synth_section()}
## What a GPU run must show

{GPU}
""")
    return "".join(parts)

if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        ok = OUT.exists() and OUT.read_text() == text
        state = "up to date" if ok else "out of date: run `python tools/make_results.py`"
        print(f"{OUT.relative_to(ROOT)} is {state}")
        sys.exit(0 if ok else 1)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
