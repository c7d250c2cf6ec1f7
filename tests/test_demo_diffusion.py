"""The diffusion demo (``probe-disentangle demo --host sprites_ddpm``) on a tiny exported DDPM."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from probe_disentangle.cli import main  # noqa: E402
from probe_disentangle.demo_diffusion import (  # noqa: E402
    DiffusionDemoConfig,
    decodability_by_timestep,
)
from probe_disentangle.diffusion import DDPMConfig, DDPMModel, export_pipeline  # noqa: E402

TINY = DDPMConfig(block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=8, ema_decay=0.0)


def test_cli_demo_on_a_ddpm_host_writes_report_and_traversal_grid(tmp_path):
    torch.manual_seed(0)
    export_pipeline(DDPMModel(TINY), tmp_path / "pipe", card={"note": "untrained"})
    out = tmp_path / "demo"
    args = ["demo", "--host", "sprites_ddpm", "--pipeline", str(tmp_path / "pipe"), "--out", str(out)]
    args += ["--fit-samples", "6", "--eval-samples", "2", "--ddim-steps", "3", "--latents", "3", "--steps", "2"]
    assert main([*args, "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    # an untrained UNet draws no sprites: said plainly, no steering table, the grid still drawn
    assert report["fit_valid_rate"] == 0.0 and "not yet a sprite model" in report["note"]
    assert report["rows"] == {} and "floors" not in report
    assert report["window"] == [500, 999] and report["settings"]["steps"] == 3
    lat = report["traversals"]["latents"]
    assert 1 <= len(lat) <= 3 and all(0 <= i < 3 for i in lat)
    from PIL import Image

    w, h = Image.open(out / "traversals.png").size
    assert (w, h) == (7 * 34, len(lat) * 34)  # 7 values per latent, 32 px + 2 px padding
    md = (out / "report.md").read_text()
    assert "not yet a sprite model" in md and "traversals.png" in md and "3 DDIM steps" in md
    page = (out / "report.html").read_text()
    assert "<script" not in page and page.count("data:image/png;base64,") == len(lat)  # a grid per latent


def test_demo_config_and_cli_refuse_mixed_hosts(tmp_path, capsys):
    with pytest.raises(ValueError, match="choose one host"):
        DiffusionDemoConfig(pipeline="a", checkpoint="b")
    with pytest.raises(ValueError, match="unknown baselines"):
        DiffusionDemoConfig(baselines=("pca", "sae"))
    assert main(["demo", "--pipeline", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "add --host sprites_ddpm" in capsys.readouterr().err


def test_decodability_by_timestep_reads_a_factor_written_only_late():
    """Factor 0 is written into the vectors at low t only, factor 1 at every t: the table says so."""
    rng = np.random.default_rng(0)
    n = 800
    t = torch.tensor(np.where(np.arange(n) % 2 == 0, 900, 100))
    f = rng.integers(0, 2, size=(n, 2))
    x = rng.normal(size=(n, 4))
    x[:, 0] += 4 * f[:, 1]
    late = t.numpy() < 500
    x[late, 1] += 4 * f[late, 0]
    rows = decodability_by_timestep(torch.tensor(x, dtype=torch.float32), t, f, ["a", "b"], bins=2)
    assert [r["t_max"] for r in rows] == [900, 100] and [r["n"] for r in rows] == [400, 400]
    early, later = rows
    assert early["b"] > 0.95 and later["b"] > 0.95
    assert later["a"] > 0.95 and early["a"] < 0.65


def test_the_demo_runs_the_unet_once_for_all_its_fit_passes(tmp_path, monkeypatch):
    """Thousands of batches from a few hundred vectors: the fit reads them from a cache, so the
    host's collection runs once (both heads, every pass), not once per pass (per step here)."""
    from probe_disentangle.store import ActivationStore

    torch.manual_seed(0)
    export_pipeline(DDPMModel(TINY), tmp_path / "pipe", card={"note": "untrained"})
    passes = []
    host_chunks = ActivationStore._host_chunks
    monkeypatch.setattr(ActivationStore, "_host_chunks", lambda self: passes.append(1) or host_chunks(self))
    args = ["demo", "--host", "sprites_ddpm", "--pipeline", str(tmp_path / "pipe"), "--out", str(tmp_path / "d")]
    args += ["--fit-samples", "6", "--eval-samples", "2", "--ddim-steps", "3", "--latents", "3", "--steps", "12"]
    assert main([*args, "--no-progress"]) == 0
    assert len(passes) == 1  # 12 steps × 2 heads over one batch each would be 24 host passes without the cache


def test_the_demo_fits_map_heads_on_a_late_up_block(tmp_path, monkeypatch):
    """``--unet-head map`` reads the hook's [C, H, W] map: both heads get a conv encoder and a
    broadcast decoder of that shape, the settings say so, and a hook without a map is refused."""
    from probe_disentangle.demo_diffusion import hook_map_shape
    from probe_disentangle.heads.spatial import MapDecoder

    torch.manual_seed(0)
    model = DDPMModel(TINY)
    export_pipeline(model, tmp_path / "pipe", card={"note": "untrained"})
    batch = (torch.randn(2, 3, 32, 32), torch.tensor([900, 900]))
    assert hook_map_shape(model.unet, "up_blocks.1", batch) == [8, 32, 32]
    with pytest.raises(ValueError, match="needs a \\[B, C, H, W\\] activation"):
        hook_map_shape(model.unet, "time_embedding", batch)
    with pytest.raises(ValueError, match="unknown head"):
        DiffusionDemoConfig(head="conv")
    built = []
    init = MapDecoder.__init__
    monkeypatch.setattr(MapDecoder, "__init__", lambda self, *a, **k: built.append(a[1]) or init(self, *a, **k))
    out = tmp_path / "demo"
    args = ["demo", "--host", "sprites_ddpm", "--pipeline", str(tmp_path / "pipe"), "--out", str(out)]
    args += ["--fit-samples", "4", "--eval-samples", "2", "--ddim-steps", "3", "--latents", "3", "--steps", "2"]
    args += ["--unet-hook", "up_blocks.1", "--unet-head", "map"]
    assert main([*args, "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["head"] == "map" and report["d"] == 8 * 32 * 32 and report["hook"] == "up_blocks.1"
    assert built == [(8, 32, 32), (8, 32, 32)]  # the β-TCVAE probe and the β = 1 baseline
