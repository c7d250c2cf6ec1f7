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


def test_sprites_ddpm_run_carries_on_across_machines_through_the_exported_folder(tmp_path, monkeypatch, capsys):
    """A session exports its weights; the next starts from them (--init-from) with a new seed, and
    the card lists both segments, so the shipped card states every step the weights have seen.
    In-process (the script's main with argv set): four interpreter starts would cost a minute."""
    import importlib.util
    import json

    import torch

    from probe_disentangle import io
    from probe_disentangle.diffusion import load_ddpm_pipeline

    spec = importlib.util.spec_from_file_location("train_sprites_ddpm", ROOT / "examples" / "train_sprites_ddpm.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))

    def run(*args: str) -> str:
        small = ["--steps", "2", "--chunk", "2", "--batch-size", "2", "--warmup", "0", "--eval-samples", "2"]
        monkeypatch.setattr(sys, "argv", ["train_sprites_ddpm.py", *args, *small, "--ddim-steps", "5"])
        script.main()
        return capsys.readouterr().out

    first, second, a, b = (str(tmp_path / n) for n in ("run1", "run2", "a", "b"))
    run("--out", first)
    run("--out", first, "--export", a)
    assert "initialised from" in run("--out", second, "--init-from", a, "--seed", "1")
    run("--out", second, "--export", b, "--seed", "1")
    card = json.loads((tmp_path / "b" / "card.json").read_text())
    assert [(g["steps"], g["seed"], g["init"]) for g in card["train"]["segments"]] == [(2, 0, None), (2, 1, a)]
    assert card["train"]["total_steps"] == 4
    # the second run really started from the first one's weights: 2 small steps move them only a little
    ua, ub = load_ddpm_pipeline(a).unet, load_ddpm_pipeline(b).unet
    torch.manual_seed(1)
    far = type(ua)(**ua.config).state_dict()
    sa, sb = ua.state_dict(), ub.state_dict()
    dist = lambda x, y: sum((x[k].float() - y[k].float()).pow(2).sum() for k in x).sqrt()  # noqa: E731
    assert dist(sa, sb) < 0.1 * dist(sa, far)
    # a deeper model grows from the export, and resumes as itself whatever --layers-per-block says
    third = str(tmp_path / "run3")
    assert "growing" in run("--out", third, "--init-from", a, "--layers-per-block", "2", "--seed", "2")
    assert "resumed at step 2" in run("--out", third, "--resume", "--seed", "2")
    assert load_ddpm_pipeline(a).unet.config.layers_per_block == 1
    assert io.load(script.latest_checkpoint(third)).config.layers_per_block == 2


def test_sprites_ddpm_constant_run_resumes_into_a_final_decay(tmp_path, monkeypatch, capsys):
    """A constant-LR segment resumed with --decay-steps keeps its learning rates up to the
    checkpoint (the trainer accepts the schedule change) and ends with the LR decayed to near 0."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("train_sprites_ddpm", ROOT / "examples" / "train_sprites_ddpm.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def run(*args: str) -> str:
        small = ["--chunk", "2", "--batch-size", "2", "--warmup", "0", "--out", str(tmp_path / "run")]
        monkeypatch.setattr(sys, "argv", ["train_sprites_ddpm.py", *args, *small])
        script.main()
        return capsys.readouterr().out

    assert "lr 3.00e-04" in run("--steps", "2")
    out = run("--steps", "6", "--decay-steps", "4", "--resume")
    assert "resumed at step 2" in out
    lrs = [float(line.split("lr ")[1].split()[0]) for line in out.splitlines() if line.startswith("step")]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.3 * 3e-4
    latest = (tmp_path / "run" / script.LATEST_FILE).read_text().strip()
    saved = json.loads((tmp_path / "run" / latest / "train_state.json").read_text())["train_config"]
    assert (saved["lr_schedule"], saved["decay_steps"]) == ("linear", 4)
