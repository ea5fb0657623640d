"""Shared helpers of the benchmark scripts: machine description and result tables."""
import os, platform, subprocess, time
from pathlib import Path
import torch

RESULTS = Path(__file__).resolve().parent / "results"

def machine() -> str:
    cpu = "unknown CPU"
    try: cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration): pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return (f"{cpu}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}, {mem:.0f} GiB RAM{gpu}; "
            f"torch {torch.__version__}, Python {platform.python_version()}")

def table(rows: list[dict]) -> str:
    cols = list(rows[0]); fmt = lambda v: f"{v:,.3g}" if isinstance(v, float) else str(v)
    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] +
                     ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows])

def write(name: str, title: str, body: str, command: str):
    RESULTS.mkdir(exist_ok=True)
    text = f"## {title}\n\n`{command}` on {time.strftime('%Y-%m-%d')}\n\nMachine: {machine()}\n\n{body}\n"
    (RESULTS / f"{name}.md").write_text(text); print(text)
