import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_image_train_speed_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "speed.json"
    cmd = [sys.executable, "benchmarks/image_train_speed.py", "--steps", "1", "--repeats", "1"]
    cmd += ["--disc-iters", "1", "--decoders", "deconv", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res["discriminator_ms"]) == {"float32", "bfloat16"}
    assert all(ms > 0 for ms in res["discriminator_ms"].values())
    rows = {r["objective"]: r for r in res["training"]}
    assert set(rows) == {"beta_vae", "beta_tcvae", "factor_vae", "factor_vae bf16 D"}
    assert all(r["decoder"] == "deconv" and r["images_per_s"] > 0 for r in rows.values())
    assert "vs β-TCVAE" in done.stdout and "1.00×" in done.stdout
