import os, signal, sys, subprocess, time
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).resolve().parent.parent
for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"): os.environ.setdefault(var, "1")

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes or the network; skipped unless DMSAE_SLOW=1 (make test-slow)")

def pytest_collection_modifyitems(config, items):
    "Tests marked `slow` are skipped unless DMSAE_SLOW=1 (`make test-slow` sets it)."
    if os.environ.get("DMSAE_SLOW") == "1": return
    skip = pytest.mark.skip(reason="slow: set DMSAE_SLOW=1 (make test-slow) to run it")
    for item in items:
        if "slow" in item.keywords: item.add_marker(skip)

def shared_home(h: Path, real: Path) -> Path:
    "A new DMSAE_HOME at `h` whose corpus and converted model are links to those of `real`."
    h.mkdir()
    for sub in ("corpus", "models"): (h / sub).symlink_to(real / sub)
    return h

@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh DMSAE_HOME that shares the (read-only) corpus and converted model of the real one, so each test
    builds its own caches and runs without touching anyone else's."""
    from dmsae.config import dmsae_home
    from dmsae.data import build_embedded_corpus
    from dmsae.model import convert_embedded_model
    build_embedded_corpus()
    convert_embedded_model()
    h = shared_home(tmp_path / "home", dmsae_home())
    monkeypatch.setenv("DMSAE_HOME", str(h))
    return h

def run_py(code: str, *args, env: dict | None = None, **kw):
    "Run python code (with command-line `args`) in a subprocess with the project's interpreter."
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, **kw)

def start_py(code: str, *args, env: dict | None = None) -> subprocess.Popen:
    "Start python code (with command-line `args`) in a subprocess, as `run_py` does, without waiting for it."
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

def kill_when(p: subprocess.Popen, ready, timeout: float = 300, poll: float = 0.02):
    "SIGKILL process `p` as soon as `ready()` is true, or once it has ended or `timeout` seconds have passed."
    t0 = time.time()
    while not ready() and p.poll() is None and time.time() - t0 < timeout: time.sleep(poll)
    p.send_signal(signal.SIGKILL)
    p.wait()


# small random causal LMs (no download) with SmolLM2's tokenizer, for tests of mechanics and of other families
SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=128)
ROPE_BY_TYPE = dict(sliding_attention=dict(rope_type="default", rope_theta=2e4),
                    full_attention=dict(rope_type="default", rope_theta=5e5))
FAMILIES = {  # family -> (transformers config class, its fields, TransformerLens name when needed)
    "llama": ("LlamaConfig", SMALL, None),
    "qwen2": ("Qwen2Config", SMALL, None),
    "qwen3": ("Qwen3Config", dict(SMALL, head_dim=8), None),
    "gemma2": ("Gemma2Config", dict(SMALL, head_dim=8, sliding_window=16, query_pre_attn_scalar=8),
               "google/gemma-2-2b"),
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=4, n_head=4, n_positions=128, n_ctx=128), None),  # as GPT-2's own
    "gpt_neox": ("GPTNeoXConfig", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                                       max_position_embeddings=128), None),
    # qk-norm, sliding and global layers, a rotary base per attention type (both unlike the official model's)
    "gemma3": ("Gemma3TextConfig", dict(SMALL, head_dim=8, sliding_window=16, query_pre_attn_scalar=8,
                                        layer_types=["sliding_attention", "full_attention"] * 2,
                                        rope_parameters=ROPE_BY_TYPE),
               "google/gemma-3-270m"),
    "mistral": ("MistralConfig", dict(SMALL, sliding_window=16), None),             # sliding window on every layer
    "phi3": ("Phi3Config", SMALL, None),                                            # fused QKV and gate-up matrices
    # qk-norm over all heads, norms after attention and MLP; multi-head K/V as in the released OLMo-2 models
    "olmo2": ("Olmo2Config", dict(SMALL, num_key_value_heads=4), "allenai/OLMo-2-0425-1B"),
}

def make_model(folder, family: str, seed: int = 0, bos_norm: float | None = None, norm: float | None = None,
               **fields) -> str:
    """Save a small random model of `family` with SmolLM2's tokenizer in `folder`; `norm` rescales every token's
    embedding to that norm (large residuals), then `bos_norm` BOS's; `fields` change its config."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from dmsae.config import DEFAULT_MODEL
    from dmsae.model import resolve_model
    tok = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    cls, family_fields, _ = FAMILIES[family]
    cfg = getattr(transformers, cls)(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                     **{**family_fields, **fields})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).float().eval()
    with torch.no_grad():
        e = model.get_input_embeddings().weight
        if norm is not None: e *= norm / e.norm(dim=-1, keepdim=True)
        if bos_norm is not None: e[tok.bos_token_id] *= bos_norm / e[tok.bos_token_id].norm()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    "A local folder holding a small random Llama (4 blocks of width 32) for tests that need a model but not SmolLM2."
    from dmsae.data import build_embedded_corpus
    from dmsae.model import convert_embedded_model
    build_embedded_corpus()
    convert_embedded_model()
    return make_model(tmp_path_factory.mktemp("models") / "tiny-random", "llama")
