"""What machine ran a computation: the facts that decide whether two runs can agree bit for bit.

Float32 matrix products and reductions are dispatched on the CPU's vector units (torch's CPU capability, oneMKL's
code branch), so two machines with different units (AVX2 against AVX-512/AMX) round differently and a run's tables
agree only to a few significant digits; on the same kind of machine, with the same thread count and packages, they
agree bit for bit. `tools/reproduce.py` records this for every stage it runs (`figures/<profile>/machine.json`) and
`tools/compare_figures.py` prints it for both sides of a comparison; the benchmarks print `describe()`."""
import json, os, platform
from pathlib import Path

def cpuinfo(field: str) -> str | None:
    "The first value of `field` in /proc/cpuinfo (None where there is none)."
    try: return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.split(":")[0].strip() == field)
    except (OSError, StopIteration): return None

def cpu_flags() -> set[str]:
    "The CPU flags of /proc/cpuinfo (empty where there is none)."
    return set((cpuinfo("flags") or "").split())

def machine_info() -> dict:
    "CPU model, vector units, cores, torch threads, RAM, GPU and versions of the machine this runs on."
    import torch
    cpu, vendor = cpuinfo("model name") or "unknown CPU", cpuinfo("vendor_id")
    flags = cpu_flags()
    units = [u for u in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if u in flags]
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else 0
    return dict(cpu=cpu, vendor=vendor, torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                vector_units=units, cores=os.cpu_count(), torch_threads=torch.get_num_threads(), ram_gib=round(mem),
                gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                torch=torch.__version__, python=platform.python_version(), system=platform.system())

def kind(info: dict) -> tuple:
    """What must match for bit-identical float results: CPU vendor (oneMKL dispatches on it), vector units, torch's
    dispatch, threads, torch version, GPU."""
    return (info.get("vendor"), info.get("torch_cpu_capability"), tuple(info.get("vector_units", ())),
            info.get("torch_threads"), info.get("torch"), info.get("gpu"))

def describe(info: dict | None = None) -> str:
    "One line: CPU, cores, threads, RAM, GPU, vector units and versions."
    i = info or machine_info()
    gpu = f"GPU {i['gpu']}" if i.get("gpu") else "no GPU"
    return (f"{i['cpu']} ({'/'.join(i['vector_units']) or 'no AVX2'}; torch dispatch {i['torch_cpu_capability']}), "
            f"{i['cores']} cores visible, torch threads {i['torch_threads']}, {i['ram_gib']} GiB RAM, {gpu}; "
            f"torch {i['torch']}, Python {i['python']}")

def load_record(figs: Path) -> dict:
    "`figures/<profile>/machine.json`: stage name -> the machines that ran it, the latest last (empty: no record)."
    p = Path(figs) / "machine.json"
    return json.loads(p.read_text()) if p.exists() else {}
