"""Faults, counted, on a small random model (a run of seconds): SIGKILL at random moments of the whole pipeline, a full
disk at a shard, a checkpoint and an SAE save, damaged files, two runs of one folder at once. Every resumed run is
compared file by file with one uninterrupted reference run. The full kill campaign is `python tools/faults.py`."""
import json, sys
from pathlib import Path
import pytest, torch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import faults  # noqa: E402


@pytest.fixture(scope="module")
def ref(tiny_model, tmp_path_factory):
    "One uninterrupted run of the whole pipeline, the reference of every test here."
    return faults.reference_run(tmp_path_factory.mktemp("reference"), tiny_model)


@pytest.fixture
def fresh(home, tmp_path):
    "A run folder and a home of its own (sharing the corpus and converted model)."
    return tmp_path / "run", faults.fresh_home(tmp_path / "h", home)


def test_kill_anywhere_resumes_to_identical_files(ref, tiny_model, home, tmp_path):
    res = faults.kill_anywhere(tmp_path, tiny_model, kills=3, seed=1, ref=ref)
    assert res["interrupted"] >= 1, res
    assert res["identical"], res["differing_files"]


def test_full_disk_names_the_folder_keeps_nothing_half_written_and_resumes(ref, tiny_model, fresh):
    "ENOSPC while writing a shard, then a checkpoint, then an SAE: each a clear error; then the run finishes intact."
    run, home = fresh
    over = dict(faults.RUN, model_name=tiny_model)
    for name, where in [("shard_00001.npy", "activations"), ("checkpoint.pt", "cycle_0"),
                        ("sae_weights.safetensors", "cycle_0")]:
        r = faults.run_to_end(home, run, over, fault=dict(name=name))
        assert r.returncode != 0, name
        msg = [ln for ln in r.stderr.splitlines() if "no space left on the disk holding" in ln]
        assert msg and where in msg[-1] and "rerun" in msg[-1], r.stderr[-2000:]
        leftovers = [p for d in (run, home / "activations") for p in d.rglob("*") if p.name.endswith(".tmp")]
        assert not leftovers, leftovers
        final = home / "activations" if where == "activations" else run / "distill"
        assert not list(final.rglob(name)), f"{name} exists under its final name"
    r = faults.run_to_end(home, run, over)
    assert r.returncode == 0, r.stderr[-3000:]
    assert faults.differences(ref, run, home) == []


def test_two_runs_of_one_folder_at_once(ref, tiny_model, fresh):
    "Two whole pipelines started together on one run folder and one home: both finish; the files are the reference's."
    run, home = fresh
    over = dict(faults.RUN, model_name=tiny_model)
    ps = [faults.start(home, run, over) for _ in range(2)]
    outs = [p.communicate() for p in ps]
    assert [p.returncode for p in ps] == [0, 0], [o[1][-2000:] for o in outs]
    assert faults.differences(ref, run, home) == []


def _copy(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_damaged_files_name_the_file_and_the_fix(ref, tmp_path):
    "Truncated weights and checkpoint, a manifest of bad JSON, a core with NaN: one clear error each, nothing deleted."
    from dmsae.sae import load_sae
    from dmsae.distill import load_core, _open_manifest
    from dmsae.train import load_checkpoint
    from safetensors.torch import save_file
    sae = _copy(ref["run"] / "transfer" / "dmsae_k4_s0", tmp_path / "sae")
    w = sae / "sae_weights.safetensors"
    w.write_bytes(w.read_bytes()[:200])
    with pytest.raises(ValueError, match=rf"{w}.*damaged.*delete the folder"): load_sae(sae)
    ck = tmp_path / "checkpoint.pt"
    ck.write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(ValueError, match=rf"{ck}.*damaged.*restart this training"): load_checkpoint(ck)
    dist = _copy(ref["run"] / "distill", tmp_path / "distill")
    (dist / "manifest.json").write_text('{"config": ')
    with pytest.raises(ValueError, match=rf"{dist / 'manifest.json'}.*damaged"): _open_manifest(dist, {})
    core = dist / "distilled_core.safetensors"
    vec = load_core(core)[0]
    save_file({"W_enc": torch.full_like(vec, float("nan"))}, str(core))
    with pytest.raises(ValueError, match=rf"{core}.*NaN.*rerun `distill`"): load_core(core)
    assert w.exists() and ck.exists() and core.exists() and (dist / "manifest.json").exists()   # nothing deleted
