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


def test_infogan_digits_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "infogan.json"
    cmd = [sys.executable, "benchmarks/infogan_digits.py", "--seeds", "2", "--steps", "2", "--batch-size", "16"]
    done = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(out.read_text())
    assert [r["seed"] for r in res["runs"]] == [0, 1]
    assert all(0.1 <= r["accuracy"] <= 1 and r["images_per_s"] > 0 for r in res["runs"])
    assert res["summary"]["seeds"] == 2 and res["summary"]["min_accuracy"] <= res["summary"]["median_accuracy"]
    assert "of 2 seeds ≥ 90 %" in done.stdout
