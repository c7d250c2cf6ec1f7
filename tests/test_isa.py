"""Independent subspace analysis recovers the factors of a sum of per-factor value vectors.

The sizes are the factor language's (5, 5, 3, 2, 5, 3, 2, 5). A factor with a composite number
of values (4 = 2 × 2) is, as a distribution, two independent factors, which no independence
criterion can tell from one: ISA may give it two latents."""

import numpy as np
import pytest
import torch

from probe_disentangle.heads import JointVAEHead, JointVAEHeadConfig
from probe_disentangle.isa import independent_subspaces, isa_codes

SIZES = [5, 5, 3, 2, 5, 3, 2, 5]


def _additive(n=4000, d=60, noise=0.01, seed=0):
    """x = Σ_f E_f[v_f] + noise: each factor a point per value in a random direction set."""
    g = torch.Generator().manual_seed(seed)
    factors = torch.stack([torch.randint(0, v, (n,), generator=g) for v in SIZES], 1)
    tables = [torch.randn(v, d, generator=g) for v in SIZES]
    x = sum(t[factors[:, i]] for i, t in enumerate(tables)) + noise * torch.randn(n, d, generator=g)
    return x, factors


def _matched(codes: np.ndarray, factors: np.ndarray) -> dict[int, int]:
    """For each factor, the code column that determines it (a bijection of values), if any."""
    out = {}
    for f in range(factors.shape[1]):
        for c in range(codes.shape[1]):
            pairs = set(zip(codes[:, c].tolist(), factors[:, f].tolist(), strict=True))
            if len(pairs) == SIZES[f] and len({p[0] for p in pairs}) == SIZES[f]:
                out[f] = c
    return out


def test_subspaces_have_the_factors_dimensions():
    x, _ = _additive()
    sub = independent_subspaces(x, n_groups=8)
    # the span of a factor with V values is V − 1 dimensional: 22 components in all
    assert sorted(np.bincount(sub.groups).tolist()) == [1, 1, 2, 2, 4, 4, 4, 4]
    assert sub.sources(x).shape == (len(x), 22)


@pytest.mark.parametrize("seed", [0, 1])
def test_isa_codes_recover_every_factor_with_its_own_number_of_values(seed):
    x, factors = _additive(seed=seed)
    codes, _ = isa_codes(x, [6] * 8)
    codes = codes.numpy()
    match = _matched(codes, factors.numpy())
    assert sorted(match) == list(range(8)) and len(set(match.values())) == 8  # one latent per factor
    for f, c in match.items():
        assert len(np.unique(codes[:, c])) == SIZES[f]  # a 2-valued factor uses 2 of the 6 values


def test_isa_codes_check_their_inputs():
    x, _ = _additive(n=200)
    with pytest.raises(ValueError, match="sizes must be ≥ 2"):
        isa_codes(x, [6, 1])
    with pytest.raises(ValueError, match="too few"):
        independent_subspaces(x[:20], n_groups=8)
    with pytest.raises(ValueError, match="n_components must lie"):
        independent_subspaces(x, n_groups=8, n_components=4)


def test_initialize_from_codes_gives_an_exact_additive_head():
    x, factors = _additive(noise=0.0)
    head = JointVAEHead(
        JointVAEHeadConfig(d_in=60, categorical=[6] * 8, continuous=0, decoder="additive", decoder_hidden=0)
    )
    report = head.initialize_from_codes(x, factors, steps=300)
    assert report["code_accuracy"] == 1.0
    assert report["recon"] < 1e-3  # least squares: the tables are the value vectors (up to a shift)
    codes = head.encode(x)
    assert torch.equal(codes.long(), factors)
    with torch.no_grad():
        assert float(((head.decode(codes) - x) ** 2).mean()) < 1e-4


def test_initialize_from_codes_trains_an_mlp_decoder_too():
    x, factors = _additive(n=2000, noise=0.0)
    head = JointVAEHead(JointVAEHeadConfig(d_in=60, categorical=[6] * 8, continuous=0, hidden=64))
    before = float(((head.decode(factors.float()) - x) ** 2).sum(1).mean())
    report = head.initialize_from_codes(x, factors, steps=400)
    assert report["code_accuracy"] > 0.99
    assert report["recon"] < 0.2 * before / 2  # recon is ½‖·‖²: well below the start


def test_initialize_from_codes_rejects_bad_codes():
    x, factors = _additive(n=100)
    head = JointVAEHead(JointVAEHeadConfig(d_in=60, categorical=[6] * 8, continuous=0))
    with pytest.raises(ValueError, match="one column per categorical latent"):
        head.initialize_from_codes(x, factors[:, :7])
    with pytest.raises(ValueError, match="must lie in 0..V"):
        head.initialize_from_codes(x, factors + 5)


def test_probe_fit_init_checks_the_head():
    from torch import nn

    from probe_disentangle import Probe, TrainConfig

    model = nn.Sequential(nn.Linear(4, 4))
    data = [torch.randn(64, 4) for _ in range(4)]
    with pytest.raises(ValueError, match="unknown init"):
        Probe(model, "0").fit(data, TrainConfig(steps=1, batch_size=32), init="pca")
    with pytest.raises(ValueError, match="init=.isa. starts a VAE head"):
        Probe(model, "0", architecture="infogan_head").fit(data, TrainConfig(steps=1, batch_size=32), init="isa")
    with pytest.raises(ValueError, match="init_steps must be ≥ 1"):
        Probe(model, "0").fit(data, TrainConfig(steps=1, batch_size=32), init="isa", init_steps=0)


def test_a_gaussian_head_starts_with_one_factor_per_latent():
    from probe_disentangle.heads import VAEHead, VAEHeadConfig

    x, factors = _additive(n=3000, noise=0.0)
    head = VAEHead(VAEHeadConfig(d_in=60, latent_dim=9, hidden=64, decoder="additive", decoder_hidden=32))
    report = head.initialize_from_codes(x, factors, steps=600)
    assert report["mean_error"] < 0.05
    with torch.no_grad():
        mu, logvar = head.encode(x)
    for f, v in enumerate(SIZES):  # latent f orders factor f's values evenly over [-1.5, 1.5]
        means = torch.stack([mu[factors[:, f] == i, f].mean() for i in range(v)])
        assert torch.allclose(means, torch.linspace(-1.5, 1.5, v), atol=0.1), (f, means)
    assert float(mu[:, 8].abs().mean()) < 0.1  # the spare latent stays at 0
    assert float(logvar.exp().sqrt().mean()) < 0.1
    with pytest.raises(ValueError, match="1 ≤ m ≤ latent_dim"):
        head.initialize_from_codes(x, torch.zeros(3000, 10, dtype=torch.long))
