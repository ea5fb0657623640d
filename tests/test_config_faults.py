"""Bad configuration: every field of `DMSAEConfig` given a wrong type, an impossible value or an unknown name, from
Python, a params file or the command line, gives one clear error (`ValueError("DMSAEConfig: ...")`, or exit status 2
and one line on stderr) that names the field."""
import json, os, re, subprocess, sys
from dataclasses import fields
import pytest
from hypothesis import given, settings, strategies as st
from conftest import ROOT
from dmsae.config import DMSAEConfig, ITEM_TYPES, PROFILES, SAEBENCH_EVALS, field_kinds, get_config, load_config
from dmsae.config import TRANSFER_METHODS
from dmsae.config import SPEED_DTYPES, resolve_dtype

FIELDS = [f.name for f in fields(DMSAEConfig)]
FAST = settings(max_examples=10, deadline=None, database=None)   # ~50 fields x 3 properties: a few seconds
TINY = PROFILES["tiny"]
assert TINY["d_sae"] == 512 and TINY["k"] == 16 and TINY["train_steps"] is not None   # the bounds below assume these

def build(name: str, value) -> DMSAEConfig:
    "`get_config('tiny', name=value)`; for `profile` (get_config's own argument) `cfg.replace`, which validates too."
    return get_config("tiny").replace(profile=value) if name == "profile" else get_config("tiny", **{name: value})

def fails(name: str, value) -> str:
    "The message of the one-line `ValueError` that `build(name, value)` must raise."
    with pytest.raises(ValueError) as e: build(name, value)
    msg = str(e.value)
    assert msg.startswith("DMSAEConfig: ") and "\n" not in msg, msg
    return msg

# --- wrong types: every field, from what its annotation rules out
nan, inf = float("nan"), float("inf")
never = st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2)   # no field takes a mapping
BAD_ITEMS = {"int": st.one_of(st.floats(), st.text(max_size=5), st.booleans(), st.none()),
             "float": st.one_of(st.sampled_from([nan, inf, -inf]), st.text(max_size=5), st.booleans(), st.none()),
             "str": st.one_of(st.integers(), st.floats(), st.booleans(), st.none())}
GOOD_ITEMS = {"int": st.integers(0, 64), "float": st.floats(0.01, 0.1), "str": st.just("core")}
BAD_SCALARS = {"int": st.one_of(st.text(max_size=8), st.floats(), st.booleans(), st.lists(st.integers(), max_size=2)),
               "float": st.one_of(st.text(max_size=8), st.sampled_from([nan, inf, -inf]), st.booleans(),
                                  st.lists(st.floats(), max_size=2)),
               "str": st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.text(max_size=3), max_size=2)),
               "bool": st.one_of(st.integers(), st.text(max_size=5), st.floats())}

def wrong_type(name: str):
    "Values of a type that field `name`'s annotation does not allow."
    kinds = set(field_kinds(name))
    opts = [never] + ([] if "None" in kinds else [st.none()])
    if "tuple" in kinds:
        good, bad = GOOD_ITEMS[ITEM_TYPES[name]], BAD_ITEMS[ITEM_TYPES[name]]
        one_bad = st.tuples(st.lists(good, max_size=2), bad, st.lists(good, max_size=2))
        one_bad = one_bad.map(lambda t: [*t[0], t[1], *t[2]])                  # one wrong item among right ones
        return st.one_of(*opts, st.integers(), st.floats(), st.booleans(), st.text(max_size=5), one_bad)
    return st.one_of(*opts, *[BAD_SCALARS[k] for k in kinds - {"None"}])

@pytest.mark.parametrize("name", FIELDS)
@FAST
@given(data=st.data())
def test_wrong_type_names_the_field(name, data):
    value = data.draw(wrong_type(name), label=name)
    msg = fails(name, value)
    assert msg.startswith(f"DMSAEConfig: {name}=") and "must be " in msg, msg   # the type check comes first

def test_messages_name_the_type_and_an_example():
    assert fails("k", "abc") == "DMSAEConfig: k='abc': must be an integer, e.g. 32"
    assert fails("d_sae", 1.5).startswith("DMSAEConfig: d_sae=1.5: must be an integer")
    assert fails("group_fractions", "x").startswith("DMSAEConfig: group_fractions='x': must be a list of finite")
    assert fails("seeds", 3) == "DMSAEConfig: seeds=3: must be a list of integers, e.g. [0]"
    assert fails("drop_bos", 1) == "DMSAEConfig: drop_bos=1: must be true or false"
    assert "write it as a number" in fails("lr", "1e-4")          # what YAML makes of `lr: 1e-4`

# --- impossible values of the right type: every field that has any
finite = lambda **kw: st.floats(allow_nan=False, allow_infinity=False, **kw)
blank = st.sampled_from(["", " ", "\t"])
other_text = lambda *ok: st.text(max_size=6).filter(lambda s: s not in ok)
below = lambda hi: st.integers(max_value=hi)
outside01 = finite(max_value=0) | finite(min_value=1, exclude_min=True)     # for (0, 1]
BAD_VALUES = {
    "profile": blank, "model_name": blank, "tl_model_name": blank, "hook_layer": below(-1),
    "device": st.sampled_from(["gpu", "GPU", "cuda:", "cuda:x", "cpu ", "", "tpu:0"]),
    "model_dtype": other_text("float32", "float16", "bfloat16", "auto"), "dataset": blank, "dataset_split": blank,
    "text_column": blank, "context_size": below(1), "separator": other_text("bos", "eos"),
    "n_train_tokens": below(0), "n_heldout_tokens": below(0),
    "heldout_fraction": finite(max_value=0) | finite(min_value=1),
    "cache_dtype": other_text("float16", "bfloat16", "float32"),
    "max_norm_ratio": finite(max_value=1),
    "shard_tokens": below(0), "cache_batch_contexts": below(0), "d_sae": below(0),
    "k": st.one_of(below(0), st.integers(min_value=TINY["d_sae"] + 1)),
    "group_fractions": st.one_of(st.lists(st.floats(0.5, 0.9), min_size=2, max_size=4),          # sum >= 1
                                 st.lists(finite(max_value=0), min_size=1, max_size=3)),
    "core_budget": other_text("total", "core_exempt"), "core_act": other_text("relu", "batchtopk"),
    "batch_size": below(0), "train_steps": below(0),
    "lr": finite(max_value=0), "warmup_steps": below(-1),
    "decay_fraction": finite(max_value=-1e-9) | finite(min_value=1, exclude_min=True),
    "grad_clip": finite(max_value=0), "preact_dtype": other_text("float32", "bfloat16", "auto"),
    "aux_dtype": other_text("float32", "bfloat16", "auto"),
    "aux_alpha": finite(max_value=-1e-9), "dead_tokens": below(0),
    "threshold_beta": finite(max_value=-1e-9) | finite(min_value=1),
    "checkpoint_every": below(0), "seed": below(-1), "n_cycles": below(-1),
    "tau": outside01, "score": other_text("mean_abs", "signed", "quantile"), "score_quantile": outside01,
    "attribution_batch_contexts": below(0), "transfer_workers": below(0),
    "transfer_ks": st.one_of(st.just([]), st.lists(st.integers(1, 64), min_size=1, max_size=3).map(lambda x: x + x[:1]),
                             st.lists(st.one_of(below(0), st.integers(min_value=TINY["d_sae"] + 1)), min_size=1,
                                      max_size=3)),
    "seeds": st.one_of(st.just([]), st.lists(below(-1), min_size=1, max_size=2),
                       st.lists(st.integers(0, 9), min_size=1, max_size=3).map(lambda x: x + x[:1])),
    "saebench_evals": st.one_of(st.just([]), st.just(["core", "core"]),
                                st.lists(other_text(*SAEBENCH_EVALS), min_size=1, max_size=2)),
    "transfer_methods": st.one_of(st.just([]), st.just(["dmsae", "dmsae"]), st.just(["matryoshka"]),
                                  st.lists(other_text(*TRANSFER_METHODS), min_size=1, max_size=2).map(
                                      lambda x: ["dmsae", *x])),
    "eval_contexts": below(0), "saebench_contexts": below(0),
    "probe_train": below(0), "probe_test": below(0), "probe_docs": below(0), "run_dir": blank,
    "dash_core": below(0), "dash_sample": below(-1), "dash_top": below(0), "dash_contexts": below(0),
    "core_max": st.one_of(below(0), st.integers(min_value=TINY["d_sae"] + 1)),
    # the synthetic world (nbs/17_synth); `tiny` has synth_min_prob=0.001 and synth_max_prob=0.2
    "synth_d": below(0), "synth_features": below(0), "synth_branching": below(0), "synth_depth": below(0),
    "synth_important": st.one_of(below(0), st.integers(min_value=31)), "synth_roots": below(-1),
    "synth_corr_rank": below(-1), "synth_seed": below(-1), "synth_zipf": finite(max_value=0),
    "synth_mag_std": finite(max_value=0, exclude_max=True), "synth_gain": finite(max_value=0),
    "synth_min_prob": finite(max_value=0) | finite(min_value=0.2), "synth_max_prob": finite(max_value=0.001)
    | finite(min_value=1, exclude_min=True), "synth_exclusive": finite(max_value=0, exclude_max=True)
    | finite(min_value=1, exclude_min=True),
}

def test_saebench_evals_are_those_the_project_runs():
    "`SAEBENCH_EVALS` = `dmsae.saebench.OFFLINE_EVALS` + `dmsae.probing.HUB_EVALS`, read (importing loads SAEBench)."
    import ast
    def value(module, name):
        tree = ast.parse((ROOT / "dmsae" / f"{module}.py").read_text())
        node = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == name)
        return [k.value for k in node.keys] if isinstance(node, ast.Dict) else list(ast.literal_eval(node))
    assert sorted(SAEBENCH_EVALS) == sorted(value("saebench", "OFFLINE_EVALS") + value("probing", "HUB_EVALS"))

def test_every_field_with_a_range_has_bad_values():
    assert set(FIELDS) - set(BAD_VALUES) == {"drop_bos"}     # a bool is right whenever its type is
    assert set(BAD_VALUES) <= set(FIELDS)

@pytest.mark.parametrize("name", sorted(BAD_VALUES))
@FAST
@given(data=st.data())
def test_impossible_value_names_the_field(name, data):
    value = data.draw(BAD_VALUES[name], label=name)
    msg = fails(name, value)
    assert re.search(rf"(?<!\w){name}=", msg), msg

# --- valid values: each one passes, and lands in the config
text = st.text(min_size=1, max_size=12).filter(str.strip)
pos = lambda hi=10**7: st.integers(1, hi)
unit = lambda **kw: st.floats(0, 1, **kw)
GOOD_VALUES = {
    "profile": st.sampled_from(sorted(PROFILES)), "model_name": text, "tl_model_name": st.none() | text,
    "hook_layer": st.integers(0, 64), "device": st.sampled_from(["cpu", "cuda", "cuda:0", "cuda:7", "mps", "xpu:1"]),
    "model_dtype": st.sampled_from(["float32", "float16", "bfloat16", "auto"]), "dataset": text, "dataset_split": text,
    "text_column": text, "context_size": st.integers(2, 4096), "separator": st.sampled_from(["bos", "eos"]),
    "n_train_tokens": pos(10**9), "n_heldout_tokens": pos(10**9), "heldout_fraction": unit(exclude_min=True,
                                                                                             exclude_max=True),
    "cache_dtype": st.sampled_from(["float16", "bfloat16", "float32"]), "drop_bos": st.booleans(),
    "max_norm_ratio": st.none() | st.floats(1, 1e6, exclude_min=True) | st.integers(2, 100),
    "shard_tokens": pos(), "cache_batch_contexts": pos(), "d_sae": st.integers(max(TINY["transfer_ks"]), 10**6),
    "k": st.integers(1, TINY["d_sae"]), "group_fractions": st.lists(st.floats(0.01, 0.24), max_size=4),
    "core_budget": st.sampled_from(["total", "core_exempt"]), "core_act": st.sampled_from(["relu", "batchtopk"]),
    "batch_size": pos(), "train_steps": st.none() | pos(), "lr": st.none() | st.floats(1e-8, 1),
    "warmup_steps": st.integers(0, 10**5), "decay_fraction": unit(), "grad_clip": st.floats(1e-6, 1e3) | pos(10),
    "preact_dtype": st.sampled_from(["float32", "bfloat16", "auto"]),
    "aux_dtype": st.sampled_from(["float32", "bfloat16", "auto"]),
    "aux_alpha": st.floats(0, 10) | st.integers(0, 3), "dead_tokens": pos(10**9),
    "threshold_beta": unit(exclude_max=True),
    "checkpoint_every": pos(), "seed": st.integers(0, 2**31), "n_cycles": st.integers(0, 20),
    "tau": unit(exclude_min=True), "score": st.sampled_from(["mean_abs", "signed", "quantile"]),
    "score_quantile": unit(exclude_min=True), "attribution_batch_contexts": pos(),
    "transfer_ks": st.lists(st.integers(1, TINY["d_sae"]), min_size=1, max_size=4, unique=True),
    "seeds": st.lists(st.integers(0, 1000), min_size=1, max_size=3, unique=True), "transfer_workers": pos(64),
    "saebench_evals": st.lists(st.sampled_from(SAEBENCH_EVALS), min_size=1, max_size=3, unique=True),
    "transfer_methods": st.lists(st.sampled_from(TRANSFER_METHODS[1:]), max_size=3, unique=True).map(
        lambda x: ["dmsae", *x]),
    "eval_contexts": st.none() | pos(), "saebench_contexts": st.none() | pos(),
    "probe_train": pos(10**4), "probe_test": pos(10**4), "probe_docs": pos(10**4), "run_dir": text,
    "dash_core": pos(10**4), "dash_sample": st.integers(0, 10**4), "dash_top": pos(100),
    "dash_contexts": st.none() | pos(), "core_max": st.none() | st.integers(1, TINY["d_sae"]),
    "synth_d": pos(4096), "synth_features": st.integers(30, 10**5), "synth_branching": pos(64), "synth_depth": pos(8),
    "synth_important": pos(30), "synth_roots": st.integers(0, 10**4), "synth_corr_rank": st.integers(0, 512),
    "synth_seed": st.integers(0, 2**31), "synth_zipf": st.floats(0.01, 5), "synth_mag_std": st.floats(0, 5),
    "synth_gain": st.floats(0.01, 100), "synth_min_prob": st.floats(1e-6, 0.19), "synth_max_prob": st.floats(0.01, 1),
    "synth_exclusive": unit(),
}

def test_every_field_has_valid_values():
    assert set(GOOD_VALUES) == set(FIELDS)

@pytest.mark.parametrize("name", FIELDS)
@FAST
@given(data=st.data())
def test_valid_value_passes(name, data):
    value = data.draw(GOOD_VALUES[name], label=name)
    cfg = build(name, value)
    want = resolve_dtype(value, cfg.device) if name in SPEED_DTYPES else value    # `auto`: made concrete
    assert getattr(cfg, name) == (tuple(want) if isinstance(want, list) else want)

# --- unknown names, from Python and from a params file
@FAST
@given(name=st.text(min_size=1, max_size=10).filter(lambda s: s not in FIELDS))
def test_unknown_field_is_named(name):
    with pytest.raises(ValueError, match=re.escape(f"DMSAEConfig: unknown config field(s) [{name!r}]")):
        get_config("tiny", **{name: 1})
    with pytest.raises(ValueError, match=re.escape(f"DMSAEConfig: unknown config field(s) [{name!r}]")):
        get_config("tiny").replace(**{name: 1})

def test_unknown_field_suggests_the_closest():
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['dsae'\]; did you mean d_sae\?"):
        get_config("tiny", dsae=64)

@pytest.mark.parametrize("body,msg", [
    ("config:\n  widht: 3\n", "unknown config field(s) ['widht']; valid fields: ["),
    ("config:\n  k: abc\n", "k='abc': must be an integer, e.g. 32"),
    ("config:\n  d_sae: 1.5\n", "d_sae=1.5: must be an integer"),
    ("config:\n  group_fractions: x\n", "group_fractions='x': must be a list of finite numbers"),
    ("config:\n  seeds: 3\n", "seeds=3: must be a list of integers, e.g. [0]"),
    ("config:\n  tau: 2\n", "tau=2 must lie in (0, 1]"),
    ("config:\n  - k\n", "config=['k']: must be a mapping of field: value"),
    ("profile: huge\n", "unknown profile 'huge'"),
    ("config:\n  profile: small\n", "config: profile='small': write `profile:` at the top level"),
    ("profile: [\n", "not valid YAML ("),
])
def test_params_yaml_errors_name_file_and_field(tmp_path, body, msg):
    p = tmp_path / "params.yaml"
    p.write_text(body)
    with pytest.raises(ValueError) as e: load_config(p)
    assert str(e.value).startswith(f"DMSAEConfig: {p}: {msg}") and "\n" not in str(e.value), str(e.value)

def test_params_json_errors(tmp_path):
    p = tmp_path / "cfg.json"
    for d, msg in [(dict(profile="tiny", widht=3), "unknown config field(s) ['widht']"),
                   (dict(profile="tiny", k="16"), "k='16': must be an integer, e.g. 32; write it as a number"),
                   ([1, 2], "holds a list, not an object")]:
        p.write_text(json.dumps(d))
        with pytest.raises(ValueError, match=re.escape(f"DMSAEConfig: {p}: {msg}")): load_config(p)

# --- the command line: exit status 2 and one line naming the field (each run costs a few seconds)
def dmsae(*args):
    return subprocess.run([sys.executable, "-m", "dmsae.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})

@pytest.mark.parametrize("setting,msg", [("k=abc", "k='abc': must be an integer"),
                                         ("seeds=3", "seeds=3: must be a list of integers"),
                                         ("decay_fraction=1.5", "decay_fraction=1.5: must lie in [0, 1]")])
def test_cli_bad_setting_exits_2_with_one_line(setting, msg):
    r = dmsae("info", "--set", setting)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dmsae info: error: DMSAEConfig: ") and msg in lines[0], r.stderr

def test_cli_params_file_with_unknown_field(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("profile: tiny\nconfig:\n  tua: 0.5\n")
    r = dmsae("info", "--params", str(p))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, (r.returncode, r.stderr)
    assert "unknown config field(s) ['tua']; did you mean tau?" in lines[0] and str(p) in lines[0]
