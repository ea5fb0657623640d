#!/usr/bin/env python
"""Make the tiny trained model shipped in the package (`dmsae/assets/tiny-lm`, the `tiny` profile's `TINY_MODEL`).

    python tools/make_tiny_lm.py [--out FOLDER] [--steps 600]

It trains the 1,024-token BPE and the 4-block Llama of width 64 on the train split of the embedded corpus
(`dmsae.model.build_tiny_lm`, nbs/04_model.ipynb): minutes on 2 CPU cores."""
import argparse, time
from pathlib import Path
from dmsae.model import build_tiny_lm, tiny_model_dir

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=tiny_model_dir(), help="folder to write (default: the shipped one)")
    ap.add_argument("--steps", type=int, default=600, help="training steps")
    a = ap.parse_args()
    t0 = time.time()
    print(f"wrote {build_tiny_lm(a.out, steps=a.steps)} in {time.time() - t0:.0f}s")
