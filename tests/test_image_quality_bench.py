"""benchmarks/image_quality.py carries runs across time-limited sessions through --checkpoint-dir."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path, steps):
    out = tmp_path / "iq.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "image_quality.py"), "--steps", str(steps)]
    cmd += ["--num-train", "200", "--num-eval", "100", "--fvae-votes", "40", "--objectives", "beta_tcvae"]
    cmd += ["--seeds", "1", "--batch-size", "16", "--device", "cpu", "--checkpoint-dir", str(tmp_path / "ck")]
    cmd += ["--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, json.loads(out.read_text())["runs"][0]


def test_a_run_resumes_from_its_checkpoint_and_counts_all_steps(tmp_path):
    printed, row = _run(tmp_path, 4)
    assert "resumed" not in printed and row["steps"] == 4
    assert (tmp_path / "ck" / "beta_tcvae-seed0" / "latest").read_text() == "step_00000004"
    printed, row = _run(tmp_path, 8)
    assert "resumed at step 4" in printed
    assert row["steps"] == 8 and row["images_seen"] == 8 * 16
    assert -0.1 < row["pmig4"] < 1 and -0.1 < row["mig4"] < 1  # both MIG estimators are reported
    assert (tmp_path / "ck" / "beta_tcvae-seed0" / "latest").read_text() == "step_00000008"
