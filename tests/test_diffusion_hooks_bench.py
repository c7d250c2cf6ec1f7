"""benchmarks/diffusion_hooks.py: the whole-activation interchange per hook, on a tiny UNet."""

import json

import pytest
from benchmark_module import load_benchmark

pytest.importorskip("diffusers")


def test_smoke_run_writes_a_row_per_hook_and_window(tmp_path):
    bench = load_benchmark("diffusion_hooks")
    report = bench.main(
        ["--tiny", "--hooks", "mid_block,conv_in", "--samples", "3", "--steps", "3", "--out", str(tmp_path)]
    )
    rows = report["rows"]
    assert [(r["hook"], r["window"]) for r in rows] == [
        ("mid_block", "early"), ("mid_block", "all"), ("conv_in", "early"), ("conv_in", "all"),
    ]  # fmt: skip
    for r in rows:
        assert 0 <= r["valid_rate"] <= 1 and set(r["factors"]) == {
            "shape",
            "scale",
            "orientation",
            "pos_x",
            "pos_y",
            "hue",
        }
        assert all(s["valid_pairs"] == 0 for s in r["factors"].values())  # an untrained UNet draws no sprite
    assert json.loads((tmp_path / "diffusion_hooks.json").read_text())["rows"] == rows
    md = (tmp_path / "diffusion_hooks.md").read_text()
    assert "| `conv_in` | all |" in md and "shape Cause/Isolate" in md


def test_markdown_known_answer():
    bench = load_benchmark("diffusion_hooks")
    row = {"hook": "up_blocks.1", "window": "all", "valid_rate": 0.5,
           "factors": {"a": {"cause": 1.0, "isolate": 0.25, "valid_pairs": 7}}}  # fmt: skip
    assert bench.markdown([row], ["a"]).splitlines()[2] == "| `up_blocks.1` | all | 0.50 | 1.00/0.25 | 7 |"
