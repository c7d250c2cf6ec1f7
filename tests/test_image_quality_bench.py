"""benchmarks/image_quality.py carries runs across time-limited sessions through --checkpoint-dir."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path, steps, *extra):
    out = tmp_path / "iq.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "image_quality.py"), "--steps", str(steps)]
    cmd += ["--num-train", "200", "--num-eval", "100", "--fvae-votes", "40", "--objectives", "beta_tcvae"]
    cmd += ["--seeds", "1", "--batch-size", "16", "--device", "cpu", "--checkpoint-dir", str(tmp_path / "ck")]
    cmd += ["--out", str(out), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, json.loads(out.read_text())["runs"][0]


def test_a_run_resumes_from_its_checkpoint_and_counts_all_steps(tmp_path):
    printed, row = _run(tmp_path, 4, "--decoder", "deconv")
    assert "resumed" not in printed and row["steps"] == 4
    assert (tmp_path / "ck" / "beta_tcvae-seed0" / "latest").read_text() == "step_00000004"
    printed, row = _run(tmp_path, 8, "--decoder", "deconv")
    assert "resumed at step 4" in printed
    assert row["steps"] == 8 and row["images_seen"] == 8 * 16
    assert -0.1 < row["pmig4"] < 1 and -0.1 < row["mig4"] < 1  # both MIG estimators are reported
    assert (tmp_path / "ck" / "beta_tcvae-seed0" / "latest").read_text() == "step_00000008"
    printed, row = _run(
        tmp_path, 8, "--decoder", "deconv"
    )  # already there: scored again, nothing trained, no throughput
    assert "resumed at step 8" in printed and row["steps"] == 8 and row["images_per_s"] is None


def test_the_benchmark_decoder_is_the_broadcast_one_and_its_runs_are_named_apart(tmp_path):
    _, row = _run(tmp_path, 2)
    assert row["objective"] == "beta_tcvae@broadcast" and row["decoder"] == "broadcast" and row["steps"] == 2
    assert (tmp_path / "ck" / "beta_tcvae@broadcast-seed0" / "latest").is_file()
    assert not (tmp_path / "ck" / "beta_tcvae-seed0").exists()


def _bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("image_quality", ROOT / "benchmarks" / "image_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_collect_keeps_the_longest_run_of_each_objective_and_seed(tmp_path):
    bench = _bench()

    def row(obj, seed, steps, mig):
        return {"objective": obj, "seed": seed, "steps": steps, "mig4": mig}

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "chunk1.json").write_text(json.dumps({"runs": [row("beta_tcvae", 0, 100, 0.1)]}))
    (tmp_path / "a" / "chunk2.json").write_text(json.dumps({"runs": [row("beta_tcvae", 0, 300, 0.3)]}))
    failed = {**row("beta_tcvae", 0, 900, None), "error": "diverged"}
    (tmp_path / "a" / "chunk3.json").write_text(json.dumps({"runs": [failed]}))
    (tmp_path / "b" / "chunk1.json").write_text(json.dumps({"runs": [row("beta_tcvae", 1, 200, 0.5)]}))
    (tmp_path / "b" / "config.json").write_text(json.dumps({"kind": "a saved model, not results"}))
    runs = bench.collect([str(tmp_path / "a"), str(tmp_path / "b")])
    assert [(r["seed"], r["steps"]) for r in runs] == [(0, 300), (1, 200)]
    summary = bench.summarize(runs, ["beta_tcvae"])["beta_tcvae"]
    assert summary["mig4"]["median"] == 0.4 and summary["seeds"] == [0, 1]


def test_collect_names_the_problem_when_there_are_no_results(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="no scored runs"):
        _bench().collect([str(tmp_path)])


def test_score_reproduces_a_saved_run_s_row_and_tables_the_zoo_model(tmp_path):
    _, trained = _run(tmp_path, 3, "--save-dir", str(tmp_path / "save"))
    saved = tmp_path / "save" / "beta_tcvae@broadcast-seed0"
    zoo = ROOT / "probe_disentangle" / "zoo" / "sprites_beta_tcvae"
    out = tmp_path / "scored.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "image_quality.py"), "--score", str(saved), str(zoo)]
    cmd += ["--num-eval", "100", "--fvae-votes", "40", "--device", "cpu", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    mine, shipped = json.loads(out.read_text())["runs"]
    # the same model on the same sprites with the same seed: the row its training wrote
    for col in ("mig4", "pmig4", "mig5", "dci_disentanglement", "factor_vae_score", "recon"):
        assert mine[col] == trained[col], col
    assert (mine["objective"], mine["seed"], mine["steps"]) == ("beta_tcvae@broadcast", 0, 3)
    assert mine["images_per_s"] is None  # trained elsewhere: no throughput
    # the zoo model's card names its recipe: it joins the β-TCVAE seed-0 row of the table
    assert (shipped["objective"], shipped["seed"], shipped["steps"]) == ("beta_tcvae@broadcast", 0, 40_000)
    assert shipped["mig4"] > mine["mig4"] + 0.1 and shipped["pmig4"] > mine["pmig4"] + 0.1  # 100 sprites: noisy


def test_score_names_the_problem_with_a_folder_that_holds_no_model(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "image_quality.py"), "--score", str(tmp_path)]
    cmd += ["--num-eval", "50", "--out", str(tmp_path / "x.json")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode != 0 and f"--score {tmp_path}" in done.stderr and "Traceback" not in done.stderr


def test_objective_spec_names_a_model_s_objective_as_the_runs_do():
    bench = _bench()
    assert bench.objective_spec("beta_tcvae", {"beta": 6.0, "dataset_size": 737_280}) == "beta_tcvae"
    assert bench.objective_spec("beta_vae", {"beta": 8.0}) == "beta_vae:beta=8"
    spec = bench.objective_spec("factor_vae", {"gamma": 35.0, "disc_dtype": "bfloat16", "reconstruction": "bernoulli"})
    assert spec == "factor_vae:disc_dtype=bfloat16"
    assert bench.parse_objective(spec) == ("factor_vae", {"gamma": 35.0, "disc_dtype": "bfloat16"})
    assert bench.objective_spec("beta_tcvae", {"beta": 10.0, "bank": 2048.0}) == "beta_tcvae:bank=2048;beta=10"
