#!/usr/bin/env python
"""AuxK's decode in float32 (sparse) and bfloat16 (dense matmuls, `aux_dtype`): step time and gradient agreement.

    python bench/bench_auxk.py [--quick]

On the `small` profile's shapes (d 576, F 4096, batch 1024, k_aux = d / 2 = 288) with Gaussian inputs, an SAE with a
50-latent ReLU core at k 40 (the `small` transfer below its distillation k, where the core uses up the budget):

1. **Step**: `dmsae.train.train_step` at `aux_dtype` float32 and bfloat16, alternated in blocks in one process, with
   every non-core latent dead (AuxK on all 4,046 of them) and with none dead (AuxK idle: the control); medians.
2. **Agreement**: the gradients of one batch's loss at both dtypes, per parameter, relative to the float32 ones.

`--quick` times fewer blocks (results in `results/auxk-quick.md`).
"""

import os

for _k, _v in dict(OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1").items():
    os.environ.setdefault(_k, _v)  # before torch is imported (libgomp reads OMP_* when it loads)
import argparse, sys
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternated_step_ms, table, write

DTYPES = ("float32", "bfloat16")


@torch.no_grad()
def starved(sae):
    "`sae` with a core that fires on every token (50 > k = 40: no budget left) and every non-core latent dead."
    sae.b_enc[: sae.n_core] += 100.0
    sae.tokens_since_fired.fill_(10 * sae.cfg.dead_tokens)
    return sae


def make_states(cfg, x: torch.Tensor, core: torch.Tensor, dead: bool) -> dict:
    "One training state per `aux_dtype`, from the same initial weights; all non-core latents dead or none."
    from dmsae.train import init_sae, make_state
    states = {}
    for dt in DTYPES:
        c = cfg.replace(aux_dtype=dt)
        sae = starved(init_sae(c, x.shape[1], core, x)) if dead else init_sae(c, x.shape[1], core, x)
        states[dt] = make_state(sae, c, n_steps=100_000)
    return states


def step_rows(cfg, batches: list, core: torch.Tensor, blocks: int, per_block: int) -> list[dict]:
    "Median ms per `train_step` at each `aux_dtype`, for a dead and a live dictionary, alternating blocks."
    rows = []
    for dead in (True, False):
        ms = alternated_step_ms(make_states(cfg, batches[0], core, dead), batches, blocks, per_block)
        rows += [{"dictionary": "dead (AuxK on 4,046)" if dead else "live (no AuxK)", "aux_dtype": dt,
                  "ms / step": ms[dt], "speed-up": ms["float32"] / ms[dt]} for dt in DTYPES]
    return rows


def grad_rows(cfg, x: torch.Tensor, core: torch.Tensor) -> list[dict]:
    "Relative difference of each parameter's gradient (bf16 AuxK vs float32), and of the AuxK loss."
    from dmsae.train import init_sae
    sae = starved(init_sae(cfg, x.shape[1], core, x))
    dead = torch.ones(sae.cfg.d_sae, dtype=torch.bool)
    dead[: sae.n_core] = False
    grads, aux = {}, {}
    for dt in DTYPES:
        sae.zero_grad(set_to_none=True)
        out = sae.training_loss(x, update=False, dead=dead, aux_dtype=getattr(torch, dt))
        out["loss"].backward()
        grads[dt], aux[dt] = {n: p.grad.clone() for n, p in sae.named_parameters() if p.grad is not None}, out["aux"]
    rows = [{"quantity": f"gradient of {n}",
             "relative difference": float((grads["bfloat16"][n] - g).norm() / g.norm().clamp_min(1e-30))}
            for n, g in grads["float32"].items()]
    return rows + [{"quantity": "AuxK loss", "relative difference": abs(aux["bfloat16"] / aux["float32"] - 1)}]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer timing blocks")
    args = ap.parse_args()
    from dmsae.config import get_config
    cfg = get_config("small", k=40, preact_dtype="bfloat16")
    g = torch.Generator().manual_seed(0)
    d = 576
    batches = [torch.randn(cfg.batch_size, d, generator=g) for _ in range(4)]
    core = torch.nn.functional.normalize(torch.randn(50, d, generator=g), dim=1)
    blocks, per_block = (3, 5) if args.quick else (8, 10)
    body = ("Step time of `train_step` (medians of alternated blocks; the rest of the step, preact_dtype bf16 as in "
            "`small`, is the same in both):\n\n" + table(step_rows(cfg, batches, core, blocks, per_block)) +
            "\n\nAgreement of one batch's gradients (every non-core latent dead):\n\n" +
            table(grad_rows(cfg, batches[0], core)))
    write("auxk-quick" if args.quick else "auxk", "AuxK's decode: float32 sparse vs bfloat16 dense (`aux_dtype`)",
          body, "python bench/bench_auxk.py" + (" --quick" if args.quick else ""))


if __name__ == "__main__":
    main()
