"""The issue's examples run end to end on a few steps: train, checkpoint, resume, score, draw, save."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from probe_disentangle import load

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_sprites_beta_tcvae_example_trains_resumes_scores_and_draws(tmp_path):
    common = "--batch-size 8 --num-train 64 --num-eval 300 --latent-dim 4 --out".split() + [str(tmp_path)]
    first = _run("sprites_beta_tcvae.py", "--steps", "4", *common)
    assert "trained to step 4" in first
    second = _run("sprites_beta_tcvae.py", "--steps", "6", "--resume", *common)
    assert "trained to step 6" in second  # carried on from the step-4 checkpoint, not from scratch
    for label in ("MIG (scale/orientation/x/y)", "MIG (all 5 factors)", "sampled-posterior estimator"):
        value = float(re.search(re.escape(label) + r"[^:]*: (-?[0-9.]+)", second).group(1))
        assert 0.0 <= value <= 1.0
    model = load(tmp_path / "model")
    assert model.config.decoder == "broadcast" and model.config.latent_dim == 4
    with Image.open(tmp_path / "traversal.png") as png:  # 4 latent rows of 64-px tiles
        assert png.height >= 4 * 64


def test_digits_infogan_example_trains_resumes_scores_and_draws(tmp_path):
    first = _run("digits_infogan.py", "--steps", "3", "--batch-size", "16", "--out", str(tmp_path))
    assert "trained 3 steps" in first
    second = _run("digits_infogan.py", "--steps", "5", "--batch-size", "16", "--out", str(tmp_path), "--resume")
    assert "trained 5 steps" in second
    acc = float(re.search(r"best assignment\): ([0-9.]+)%", second).group(1))
    assert 10.0 <= acc <= 100.0  # the best of the 10! maps ≥ their average, 10 %
    assert len(re.findall(r"\d→\d", second)) == 10  # one digit for each code value
    model = load(tmp_path / "model")
    assert model.config.categorical == [10]
    for j in range(2):
        with Image.open(tmp_path / f"codes_cont{j}.png") as png:
            assert png.height > png.width  # 10 rows (code values), 8 columns (continuous values)


@pytest.mark.parametrize("script", ["sprites_beta_tcvae.py", "digits_infogan.py"])
def test_examples_explain_themselves(script):
    assert "--resume" in _run(script, "--help")
