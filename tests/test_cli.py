"""The `dmsae` command line: config errors are clear, caches build from the shell."""
import json, os, subprocess, sys
from conftest import ROOT

def dmsae(*args, env=None):
    return subprocess.run([sys.executable, "-m", "dmsae.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})

def test_info_applies_overrides():
    r = dmsae("info", "--profile", "paper", "--set", "k=160")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    got = (d["model_name"], d["hook"], d["k"], d["d_sae"])
    assert got == ("google/gemma-2-2b", "blocks.12.hook_resid_post", 160, 65536)

def test_impossible_config_exits_with_message():
    r = dmsae("info", "--set", "k=1000000")
    assert r.returncode == 2 and "lower k or widen the SAE" in r.stderr

def test_unknown_field_exits_with_message():
    r = dmsae("info", "--set", "widht=3")
    assert r.returncode == 2 and "unknown config field" in r.stderr

def test_missing_hub_model_offline_names_the_fix(home):
    r = dmsae("model", "--set", "model_name=google/gemma-2-2b", env={"DMSAE_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and "Offline?" in r.stderr

def test_cache_command_builds_both_splits(home, tiny_model):
    r = dmsae("cache", "--profile", "tiny", "--set", "n_train_tokens=2048", "--set", "n_heldout_tokens=512",
              "--set", f"model_name={tiny_model}", "--set", "hook_layer=2", env={"DMSAE_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert "train: ActivationCache" in r.stdout and "heldout: ActivationCache" in r.stdout

def test_readme_is_generated_from_index_notebook():
    r = subprocess.run([sys.executable, "tools/make_readme.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout

def test_results_chapter_is_generated_from_the_study_tables():
    "docs/results.md is what tools/make_results.py writes from figures/study/ (its numbers cannot drift)."
    r = subprocess.run([sys.executable, "tools/make_results.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

def test_reproduce_help_names_the_switches():
    r = subprocess.run([sys.executable, "tools/reproduce.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "--allow-corpus-change" in r.stdout and "--check-corpus" in r.stdout and "--stages" in r.stdout

def test_stage_history_is_kept_within_one_config():
    "Stage times of another config (a changed profile) are dropped, so 'longest run' is this config's from scratch."
    sys.path.insert(0, str(ROOT / "tools"))
    from reproduce import config_id, new_stamp
    small, tiny = config_id("small", {}), config_id("tiny", {"config": {}})
    assert small == config_id("small", {"config": {}}) != config_id("small", {"config": {"k": 64}})
    a = new_stamp({}, "key1", small, 100.0, "day 1")
    b = new_stamp(a, "key2", small, 30.0, "day 2")                # a rerun that reused finished work
    assert (b["seconds"], b["history"]) == (30.0, [dict(seconds=100.0, finished="day 1")])
    c = new_stamp(b, "key2", tiny, 5.0, "day 3")                  # another config: a new history
    assert (c["config"], c["seconds"], c["history"]) == (tiny, 5.0, [])
    assert new_stamp({"key": "old", "seconds": 9.0}, "key3", small, 1.0, "x")["history"] == []  # stamp without config

def test_interrupted_attempts_count_in_the_stage_time(tmp_path):
    "A stage resumed after a kill reports the time of its interrupted attempts too (executed/<stage>.partial.json)."
    sys.path.insert(0, str(ROOT / "tools"))
    import logging, types
    from reproduce import Progress, carried_time, new_stamp
    partial, ticks = tmp_path / "03_stage.partial.json", []
    assert carried_time(partial, "cfg") == 0.0                            # no interrupted attempt
    cells = [types.SimpleNamespace(cell_type="code", source="train()")]
    h = Progress("03_stage", cells, out=open(os.devnull, "w"), every=0.0, on_tick=ticks.append)
    h.emit(logging.LogRecord("papermill", logging.INFO, "", 0, "Executing Cell 1----", None, None))
    assert len(ticks) == 1 and ticks[0] >= 0.0
    partial.write_text(json.dumps(dict(config="cfg", seconds=1200.0)))   # what the killed attempt left
    assert (carried_time(partial, "cfg"), carried_time(partial, "other config")) == (1200.0, 0.0)
    s = new_stamp({}, "key", "cfg", 300.0, "day 2", carried=carried_time(partial, "cfg"))
    assert (s["seconds"], s["carried"]) == (1500.0, 1200.0)
    partial.write_text('{"config": "cfg", "sec')                        # cut short by the kill
    assert carried_time(partial, "cfg") == 0.0

def test_compare_figures_leaves_out_wall_times(tmp_path):
    "tools/compare_figures.py: equal tables up to timing columns are identical; a changed number is reported."
    sys.path.insert(0, str(ROOT / "tools"))
    from compare_figures import main
    a, b = tmp_path / "a", tmp_path / "b"
    for d, t, fvu in ((a, "12.5", "0.4511"), (b, "80.1", "0.4511")):
        (d / "latents").mkdir(parents=True)
        (d / "table_cycles.csv").write_text(f"cycle,fvu,train_s\n0,{fvu},{t}\n")
        (d / "table_cycles.md").write_text(f"| cycle | fvu | train_s |\n|---|---|---|\n| 0 | {fvu} | {t} |\n")
        (d / "latents" / "core_top.md").write_text("| latent |\n|---|\n| 3 |\n")
        (d / "table_stage_times.md").write_text(f"| stage | s |\n|---|---|\n| x | {t} |\n")
    assert main([str(a), str(b)]) == 0
    (b / "table_cycles.csv").write_text("cycle,fvu,train_s\n0,0.4512,3\n")
    assert main([str(a), str(b)]) == 1
    assert main([str(a), str(b), "--rtol", "3e-4"]) == 0                  # 0.4511 vs 0.4512: 2.2e-4 relative
    assert main([str(a), str(b), "--rtol", "1e-4"]) == 1
    assert main([str(a), str(b), "--atol", "2e-4", "--rtol", "0"]) == 0     # |difference| 1e-4
    (b / "latents" / "core_top.md").unlink()
    assert main([str(a), str(b)]) == 2

def test_machines_are_recorded_and_compared(tmp_path, capsys):
    "reproduce notes each stage's machine (machine.json); compare_figures prints both sides and warns across kinds."
    sys.path.insert(0, str(ROOT / "tools"))
    from compare_figures import main
    from machine import kind, load_record, machine_info
    from reproduce import record_machine
    info = machine_info()
    assert info["torch_threads"] >= 1 and info["torch_cpu_capability"] and info["python"]
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "t.csv").write_text("x\n1\n")
        record_machine(d, "01_stage")
    record_machine(a, "01_stage")                                           # the same machine again: listed once
    assert list(load_record(a)) == ["01_stage"] and [kind(i) for i in load_record(a)["01_stage"]] == [kind(info)]
    assert main([str(a), str(b)]) == 0
    assert "different kinds of machine" not in capsys.readouterr().out
    other = dict(info, torch_cpu_capability="AVX2", vector_units=["avx2"], vendor="AuthenticAMD")
    (b / "machine.json").write_text(json.dumps({"01_stage": [other]}))
    assert main([str(a), str(b)]) == 0                                     # the tables still match
    out = capsys.readouterr().out
    assert "different kinds of machine" in out and "torch dispatch AVX2" in out
