"""benchmarks/diffusion_steering.py end to end on a small random UNet (numbers mean nothing)."""

import json

import pytest
import torch
from benchmark_module import load_benchmark

pytest.importorskip("diffusers")


def _bench():
    return load_benchmark("diffusion_steering")


SMALL = [
    "--tiny",
    "--fit-samples",
    "8",
    "--eval-samples",
    "4",
    "--steps",
    "4",
    "--fit-steps",
    "2",
    "--latents",
    "3",
    "--batch-size",
    "8",
]


def test_a_host_that_makes_no_sprites_says_so(tmp_path):
    report = _bench().main([*SMALL, "--out", str(tmp_path)])
    assert report["fit_valid_rate"] == 0.0 and "not yet a sprite model" in report["note"]
    assert json.loads((tmp_path / "diffusion_steering.json").read_text())["note"] == report["note"]


def test_every_steerer_is_scored_in_one_table(tmp_path, monkeypatch, capsys):
    """With a readout that accepts everything (random factors), the whole table is produced."""
    from probe_disentangle.worlds.sprites_readout import SpritesReadout

    def read(self, images):
        g = torch.Generator().manual_seed(len(images))
        sizes = torch.tensor([3, 6, 40, 32, 32, 8])
        f = (torch.rand(len(images), 6, generator=g) * sizes).long()
        return {"factors": f, "valid": torch.ones(len(images), dtype=torch.bool)}

    monkeypatch.setattr(SpritesReadout, "read", read)
    report = _bench().main([*SMALL, "--fit-samples", "16", "--factors", "shape,pos_x", "--out", str(tmp_path)])
    assert set(report["rows"]) == {"beta_tcvae", "vae_beta1", "pca", "random", "diff_means"}
    assert 0.0 <= report["rows"]["beta_tcvae"]["mig"] <= 1.0
    for row in report["rows"].values():
        assert set(row["steering"]) == {"shape", "pos_x", "base_valid_rate"}
    ic = report["interchange"]
    assert set(ic) == {"shape", "pos_x", "mean"} and 0.0 <= ic["mean"]["disentangle"] <= 1.0
    out = capsys.readouterr().out
    assert "| diff_means |" in out and "| random |" in out
