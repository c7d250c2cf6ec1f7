"""Traversal grids, InfoGAN code grids, metric plots and PNG writing."""

import numpy as np
import pytest
import torch
from PIL import Image

from probe_disentangle import viz
from probe_disentangle.image_models import ConvVAE, ConvVAEConfig, InfoGAN, InfoGANConfig


def _vae(channels=1, latent_dim=4, size=32):
    torch.manual_seed(0)
    cfg = ConvVAEConfig(
        in_channels=channels,
        image_size=size,
        latent_dim=latent_dim,
        channels=[4, 4, 4, 4],
        hidden=8,
        objective="beta_vae",
    )
    return ConvVAE(cfg)


def _known_kl_vae():
    """Latent 2 carries the most information, latent 0 some, latents 1 and 3 none (KL exactly 0)."""
    m = _vae()
    head = m.encoder[-1]  # Linear(hidden, 2K): [mu_0..mu_3, logvar_0..logvar_3]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()  # mu = 0, logvar = 0: every latent equals the prior
        g = torch.Generator().manual_seed(0)
        head.weight[2] = 5.0 * torch.randn(head.in_features, generator=g)
        head.weight[0] = 0.5 * torch.randn(head.in_features, generator=g)
        m.encoder[-3].bias.fill_(0.1)  # the dense layer's ReLU output is never all zero
    return m


@pytest.mark.parametrize("channels", [1, 3])
def test_traversal_grid_shape_and_png_round_trip(channels, tmp_path):
    m = _vae(channels)
    x = torch.rand(5, channels, 32, 32)
    path = tmp_path / "t.png"
    grid = viz.traversal_grid(m, x, values=torch.linspace(-2, 2, 7), path=path, pad=3)
    expected = (4 * (32 + 3), 7 * (32 + 3)) + ((3,) if channels == 3 else ())
    assert grid.shape == expected and grid.dtype == np.uint8
    back = np.asarray(Image.open(path))
    assert np.array_equal(back, grid)
    assert list(tmp_path.iterdir()) == [path]  # the temp file was renamed, none left behind


def test_traversal_grid_default_values_and_rows():
    m = _vae()
    grid = viz.traversal_grid(m, torch.rand(2, 1, 32, 32), latents=[1, 3])
    assert grid.shape == (2 * 34, 9 * 34)  # default: 9 values from −2.5 to 2.5, pad 2


def test_kl_order_puts_the_informative_latent_first():
    m = _known_kl_vae()
    x = torch.rand(16, 1, 32, 32)
    kl = m.kl_per_latent(x)
    assert kl[2] > kl[0] > 0 and kl[1] == 0 and kl[3] == 0
    assert viz.kl_order(m, x) == [2, 0, 1, 3]
    assert viz.kl_order(m, x, latents=[3, 0]) == [0, 3]
    by_kl = viz.traversal_grid(m, x, order="kl")
    assert np.array_equal(by_kl, viz.traversal_grid(m, x, order=[2, 0, 1, 3]))
    assert not np.array_equal(by_kl, viz.traversal_grid(m, x, order="index"))


def test_traversal_rows_follow_the_swept_latent():
    """Row r changes only along latent rows[r]: a latent the decoder ignores gives identical columns."""
    m = _vae(latent_dim=3)
    with torch.no_grad():
        m.decoder_fc[0].weight[:, 1] = 0.0  # the decoder ignores latent 1
    x = torch.rand(1, 1, 32, 32)
    grid = viz.traversal_grid(m, x, order=[1, 0], values=[-2.0, 0.0, 2.0], pad=0)
    row1, row0 = grid[:32], grid[32:]
    cells = lambda row: [row[:, 32 * c : 32 * (c + 1)] for c in range(3)]  # noqa: E731
    assert all(np.array_equal(c, cells(row1)[0]) for c in cells(row1))
    assert not np.array_equal(cells(row0)[0], cells(row0)[2])


def test_traversal_grid_restores_training_mode_and_checks_arguments():
    m = _vae().train()
    x = torch.rand(2, 1, 32, 32)
    viz.traversal_grid(m, x)
    assert m.training
    with pytest.raises(ValueError, match="out of range"):
        viz.traversal_grid(m, x, order=[7])
    with pytest.raises(ValueError, match="unknown order"):
        viz.traversal_grid(m, x, order="variance")
    with pytest.raises(ValueError, match="index 5 out of range"):
        viz.traversal_grid(m, x, index=5)


@pytest.mark.parametrize("size,channels", [(8, 1), (16, 3)])
def test_infogan_code_grid_shapes(size, channels, tmp_path):
    torch.manual_seed(0)
    m = InfoGAN(
        InfoGANConfig(
            image_size=size,
            channels=channels,
            width=4,
            hidden=8,
            q_hidden=4,
            noise_dim=3,
            categorical=[4],
            continuous=2,
        )
    )
    tail = (3,) if channels == 3 else ()
    g = viz.infogan_code_grid(m, tmp_path / "c.png", values=[-1, 0, 1], pad=1)
    assert g.shape == (4 * (size + 1), 3 * (size + 1), *tail)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c.png")), g)
    gt = viz.infogan_code_grid(m, rows="continuous", values=[-1, 0, 1], pad=1)
    assert gt.shape == (3 * (size + 1), 4 * (size + 1), *tail)
    # the transpose of the same images: cell (r, c) of one is cell (c, r) of the other
    assert np.array_equal(g[:size, (size + 1) : (size + 1) + size], gt[(size + 1) : (size + 1) + size, :size])


def test_infogan_code_grid_without_the_other_code_varies_noise():
    torch.manual_seed(0)
    m = InfoGAN(InfoGANConfig(image_size=8, width=4, hidden=8, q_hidden=4, noise_dim=3, categorical=[3], continuous=0))
    g = viz.infogan_code_grid(m, num_noise=5, pad=0)
    assert g.shape == (3 * 8, 5 * 8)
    with pytest.raises(ValueError, match="no continuous code"):
        viz.infogan_code_grid(m, rows="continuous")


def test_metric_vs_beta_plot(tmp_path):
    path = tmp_path / "p.png"
    img = viz.metric_vs_beta_plot(
        [1, 2, 4, 8, 16], {"MIG": [0.1, 0.2, 0.3, float("nan"), 0.25], "DCI": [0.3, 0.4, 0.5, 0.6, 0.55]}, path
    )
    assert img.shape == (420, 640, 3) and img.dtype == np.uint8
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), img)
    colours = {tuple(p) for p in img.reshape(-1, 3)}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours  # both lines are drawn
    assert (img == 0).all(-1).any()  # black axes and text
    with pytest.raises(ValueError, match="has 2 entries but there are 3 betas"):
        viz.metric_vs_beta_plot([1, 2, 3], {"MIG": [0.1, 0.2]})


def test_save_png_floats_bools_and_errors(tmp_path):
    a = np.linspace(0, 1, 12).reshape(3, 4)
    viz.save_png(a, tmp_path / "f.png")
    back = np.asarray(Image.open(tmp_path / "f.png"))
    assert back.dtype == np.uint8 and back[0, 0] == 0 and back[-1, -1] == 255
    viz.save_png(torch.ones(2, 2, dtype=torch.bool), tmp_path / "b.png")
    assert (np.asarray(Image.open(tmp_path / "b.png")) == 255).all()
    with pytest.raises(ValueError, match="H, W"):
        viz.save_png(np.zeros((2, 3, 5)), tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png", "f.png"]
