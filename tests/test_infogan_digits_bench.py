import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("infogan_digits", ROOT / "benchmarks" / "infogan_digits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shared_codes_names_the_merged_classes():
    labels = np.repeat(np.arange(4), 5)
    codes = labels.copy()
    codes[labels == 3] = 1  # 1s and 3s share code 1
    assert _bench().shared_codes(codes, labels) == [[1, 3]]
    assert _bench().shared_codes(labels, labels) == []


def test_code_entropy_is_one_when_uniform_and_falls_when_values_merge():
    bench = _bench()
    assert abs(bench.code_entropy(np.arange(100) % 10, 10) - 1.0) < 1e-12
    assert bench.code_entropy(np.zeros(50, dtype=int), 10) == 0.0
    # two of ten equal classes share one value: H = (8·0.1·log 10 + 0.2·log 5) / log 10
    merged = np.repeat([0, 1, 2, 3, 4, 5, 6, 7, 8, 8], 10)
    assert abs(bench.code_entropy(merged, 10) - (0.8 + 0.2 * np.log(5) / np.log(10))) < 1e-12


def test_infogan_digits_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "infogan.json"
    cmd = [sys.executable, "benchmarks/infogan_digits.py", "--seeds", "2", "--steps", "2", "--batch-size", "16"]
    done = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(out.read_text())
    assert [r["seed"] for r in res["runs"]] == [0, 1]
    assert all(0.1 <= r["accuracy"] <= 1 and r["images_per_s"] > 0 for r in res["runs"])
    assert all(r["lambda_cat"] == 1.0 and r["noise_dim"] == 62 and r["lambda_real"] == 1.0 for r in res["runs"])
    assert all(0 <= r["code_entropy"] <= 1 and r["real_shift"] == 1 for r in res["runs"])
    assert all(0 <= r["q_entropy"] <= 1 and -1e-9 <= r["q_mi"] <= 1 for r in res["runs"])
    assert res["summary"]["seeds"] == 2 and res["summary"]["min_accuracy"] <= res["summary"]["median_accuracy"]
    assert "of 2 seeds ≥ 90 %" in done.stdout


def test_q_confidence_known_answers():
    bench = _bench()
    sure = np.eye(10)[np.arange(50) % 10]  # every digit one code for sure, codes balanced
    r = bench.q_confidence(sure)
    assert abs(r["q_entropy"]) < 1e-9 and abs(r["q_mi"] - 1) < 1e-9
    unsure = np.full((20, 10), 0.1)  # Q knows nothing: all uncertainty, no information
    r = bench.q_confidence(unsure)
    assert abs(r["q_entropy"] - 1) < 1e-9 and abs(r["q_mi"]) < 1e-9
    half = np.zeros((4, 4))
    half[:, :2] = 0.5  # one bit of doubt about two of four codes: H = log 2, marginal H = log 2
    r = bench.q_confidence(half)
    assert abs(r["q_entropy"] - 0.5) < 1e-9 and abs(r["q_mi"]) < 1e-9
