"""Shared helpers of the benchmark scripts: machine description, memory figures, scratch homes and result tables."""
import statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from machine import describe  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ENV_DEFAULTS = dict(OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled")

def machine() -> str:
    "CPU (and its vector units), cores, torch threads, RAM, GPU and versions, in one line (tools/machine.py)."
    return describe()

def smollm2_tiny(**overrides):
    "The `tiny` profile on the embedded SmolLM2 (its residual after block 14, d=576): the benchmarks' activations."
    from dmsae.config import DEFAULT_MODEL, get_config
    return get_config("tiny", model_name=DEFAULT_MODEL, hook_layer=14, **overrides)

def rss(key: str) -> float:
    "A memory figure of this process from /proc/self/status (`VmRSS`, `VmHWM`), in MB."
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) / 1024

def reset_peak():
    "Reset this process's VmHWM to its current RSS."
    open("/proc/self/clear_refs", "w").write("5")

def shared_home(h: Path, real: Path) -> Path:
    "A new DMSAE_HOME at `h` whose corpus and converted model are links to those of `real`."
    h.mkdir()
    for sub in ("corpus", "models"): (h / sub).symlink_to(real / sub)
    return h

def table(rows: list[dict]) -> str:
    "A Markdown table of `rows` (floats with 3 significant digits)."
    cols = list(rows[0])
    fmt = lambda v: f"{v:,.3g}" if isinstance(v, float) else str(v)
    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] +
                     ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows])

def machine_suffix() -> str:
    """`-nobf16` on a CPU without native bf16 units (AVX512-BF16 / AMX), where bf16 is emulated: its tables go beside
    those of an AMX machine instead of over them; else ''."""
    from dmsae.config import native_bf16
    return "" if native_bf16("cpu") else "-nobf16"

def write(name: str, title: str, body: str, command: str):
    "Write (and print) `results/{name}{machine_suffix()}.md`: the title, the command, the date, the machine and `body`."
    RESULTS.mkdir(exist_ok=True)
    name += machine_suffix()
    text = f"## {title}\n\n`{command}` on {time.strftime('%Y-%m-%d')}\n\nMachine: {machine()}\n\n{body}\n"
    (RESULTS / f"{name}.md").write_text(text)
    print(text)

def write_result(name: str, quick: bool, title: str, body: str):
    "`write` to `results/{name}-quick.md` or `results/{name}.md`, with the command line that ran this script."
    command = f"python bench/{Path(sys.argv[0]).name} " + " ".join(sys.argv[1:])
    write(f"{name}-quick" if quick else name, title, body, command)

def alternated_step_ms(states: dict, # name -> `dmsae.train.TrainState`
                       batches: list, # training batches, cycled
                       blocks: int, per_block: int) -> dict:
    "Median ms per `train_step` of each state, in alternated blocks of `per_block` steps (block 0 warms up)."
    from dmsae.train import train_step
    times = {n: [] for n in states}
    for b in range(blocks + 1):
        for n, st in states.items():
            t = time.perf_counter()
            for i in range(per_block): train_step(st, batches[(b * per_block + i) % len(batches)])
            if b: times[n].append((time.perf_counter() - t) * 1000 / per_block)
    return {n: statistics.median(t) for n, t in times.items()}

def median_ms(fn, reps: int) -> float:
    "Median wall milliseconds of `fn()` over `reps` calls (after one warm-up call)."
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)
