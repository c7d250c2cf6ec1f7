"""Heads: shapes, objectives wired in, training lowers the loss, InfoGAN recovers its codes."""

import pytest
import torch

from probe_disentangle import losses, registry
from probe_disentangle.heads import InfoGANHead, InfoGANHeadConfig, VAEHead, VAEHeadConfig
from probe_disentangle.train import TrainConfig, Trainer

OBJECTIVE_ARGS = {
    "beta_vae": {"beta": 4.0},
    "capacity": {"gamma": 10.0, "c_max": 5.0, "c_steps": 100},
    "beta_tcvae": {"beta": 6.0, "dataset_size": 1000},
    "factor_vae": {"gamma": 5.0, "disc_hidden": 32, "disc_depth": 2},
    "dip_vae": {"kind": "ii", "lambda_od": 5.0},
}


def _data(n=512, d=12, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) @ torch.randn(k, d, generator=g) + 0.05 * torch.randn(n, d, generator=g)


def test_registry_lists_heads_and_rejects_unknown():
    assert {"vae_head", "infogan_head"} <= set(registry.names())
    assert registry.get("vae_head") == (VAEHead, VAEHeadConfig)
    with pytest.raises(ValueError, match="known architectures"):
        registry.get("transformer_head")


@pytest.mark.parametrize("objective", sorted(OBJECTIVE_ARGS))
def test_vae_head_every_objective_trains(objective):
    torch.manual_seed(0)
    head = VAEHead(
        VAEHeadConfig(d_in=12, latent_dim=4, hidden=32, objective=objective, objective_args=OBJECTIVE_ARGS[objective])
    )
    x = _data()
    recon, mu, logvar, z = head(x[:7])
    assert recon.shape == (7, 12) and mu.shape == logvar.shape == z.shape == (7, 4)
    first = float(head.loss(x).terms["recon"].detach())
    res = Trainer(head, TrainConfig(steps=150, batch_size=128, lr=3e-3, progress=False, log_every=50)).fit(x)
    assert res.last["recon"] < 0.5 * first  # the reconstruction term clearly drops
    expected = {
        "beta_vae": {"kl"},
        "capacity": {"capacity"},
        "beta_tcvae": {"mi", "tc", "dwkl"},
        "factor_vae": {"tc", "disc", "disc_acc"},
        "dip_vae": {"dip"},
    }[objective]
    assert expected <= set(res.last)


def test_vae_head_eval_mode_is_deterministic_and_uses_the_mean():
    head = VAEHead(VAEHeadConfig(d_in=6, latent_dim=2, hidden=8)).eval()
    x = torch.randn(5, 6)
    r1, mu, _, z = head(x)
    torch.testing.assert_close(z, mu)
    torch.testing.assert_close(head(x)[0], r1)


def test_head_rejects_wrong_width_and_bad_config():
    head = VAEHead(VAEHeadConfig(d_in=6))
    with pytest.raises(ValueError, match=r"\[batch, 6\]"):
        head.encode(torch.randn(3, 5))
    with pytest.raises(ValueError, match="choose one of"):
        VAEHeadConfig(d_in=6, objective="beta_gan")
    with pytest.raises(ValueError, match="bad arguments"):
        VAEHead(VAEHeadConfig(d_in=6, objective="beta_vae", objective_args={"gamma": 1.0}))
    with pytest.raises(ValueError, match="≥ 2 values"):
        InfoGANHeadConfig(d_in=4, categorical=[1])


def test_factor_vae_head_has_two_optimizers_over_disjoint_params():
    head = VAEHead(
        VAEHeadConfig(d_in=6, latent_dim=3, objective="factor_vae", objective_args={"disc_hidden": 8, "disc_depth": 1})
    )
    opts = head.configure_optimizers(1e-3)
    assert set(opts) == {"vae", "disc"}
    ids = [{id(p) for g in o.param_groups for p in g["params"]} for o in opts.values()]
    assert not ids[0] & ids[1]
    assert ids[0] | ids[1] == {id(p) for p in head.parameters()}


def test_infogan_head_shapes_and_code_recovery():
    torch.manual_seed(0)
    # real data: 4 clusters along one direction plus a continuous factor along another
    g = torch.Generator().manual_seed(0)
    n = 2048
    cls = torch.randint(0, 4, (n,), generator=g)
    t = torch.rand(n, generator=g) * 2 - 1
    basis = torch.randn(2, 8, generator=g)
    x = (cls.float() * 2 - 3)[:, None] * basis[0] + t[:, None] * basis[1] + 0.05 * torch.randn(n, 8, generator=g)
    head = InfoGANHead(InfoGANHeadConfig(d_in=8, noise_dim=4, categorical=[4], continuous=1, hidden=64, depth=2))
    noise, cat, cont = head.sample_codes(5)
    assert head.generate(noise, cat, cont).shape == (5, 8)
    assert head.encode(torch.randn(5, 8)).shape == (5, 2)
    res = Trainer(head, TrainConfig(steps=600, batch_size=128, lr=1e-3, progress=False, log_every=100)).fit(x)
    # Q recovers the categorical code of generated samples (the MI term is near its maximum log 4)
    assert res.last["info_cat"] > 0.8 * torch.log(torch.tensor(4.0))
    noise, cat, cont = head.sample_codes(512)
    with torch.no_grad():
        codes = head.encode(head.generate(noise, cat, cont))
    assert (codes[:, 0] == cat[:, 0]).float().mean() > 0.9
    assert torch.corrcoef(torch.stack([codes[:, 1], cont[:, 0]]))[0, 1] > 0.8


def test_loss_result_scalars():
    r = losses.LossResult(torch.tensor(2.0), {"a": torch.tensor(1.0)})
    assert r.scalars() == {"loss": 2.0, "a": 1.0}


def test_posterior_logvar_is_clamped_to_a_finite_range():
    from probe_disentangle.vae_family import LOGVAR_RANGE

    head = VAEHead(VAEHeadConfig(d_in=4, latent_dim=2, hidden=8, depth=0, objective_args={"dataset_size": 100}))
    with torch.no_grad():
        head.encoder[-1].bias.copy_(torch.tensor([0.0, 0.0, -1e4, 1e4]))
    _, logvar = head.encode(torch.zeros(3, 4))
    assert logvar.min() == LOGVAR_RANGE[0] and logvar.max() == LOGVAR_RANGE[1]
    x = torch.randn(64, 4)
    r = head.loss(x)
    r.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


def _sharp_posterior_layer(model, k):
    """Make the posterior layer output means 2 + 0.001·i and log-variance −6 whatever its input."""
    last = model.encoder[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias[:k] = 2.0 + 1e-3 * torch.arange(k)
        last.bias[k:] = -6.0


@pytest.mark.parametrize("kind", ["head", "conv"])
def test_posterior_parameters_stay_float32_under_bf16_autocast(kind):
    # bf16 keeps 8 bits: 2.000, 2.001, … 2.004 would all round to 2.0, which β-TCVAE's pair terms
    # divide by σ = 0.05. The posterior layer runs in float32, so they survive; the trunk is bf16.
    from probe_disentangle.image_models import ConvVAE, ConvVAEConfig

    k = 5
    if kind == "head":
        model, x = VAEHead(VAEHeadConfig(d_in=16, latent_dim=k, hidden=32)), torch.randn(8, 16)
    else:
        model, x = ConvVAE(ConvVAEConfig(latent_dim=k)), torch.rand(8, 1, 64, 64)
    _sharp_posterior_layer(model, k)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trunk = model.encoder[:-1](x)
        mu, logvar = model.encode(x)
        _, _, _, z = model(x)
    assert trunk.dtype == torch.bfloat16  # autocast is on for the rest of the encoder
    assert mu.dtype == logvar.dtype == z.dtype == torch.float32
    torch.testing.assert_close(mu, (2.0 + 1e-3 * torch.arange(k)).expand(8, k), rtol=0, atol=1e-6)
    torch.testing.assert_close(logvar, torch.full((8, k), -6.0))
    # outside autocast nothing changes
    mu32, _ = model.encode(x)
    torch.testing.assert_close(mu32, mu, rtol=0, atol=1e-6)


def test_vae_head_passes_its_latent_width_to_a_beta_tcvae_bank():
    head = VAEHead(VAEHeadConfig(d_in=8, latent_dim=5, objective_args={"dataset_size": 100, "bank": 32}))
    assert head.objective.bank_mu.shape == (32, 5)
    head.train().loss(torch.randn(16, 8)).total.backward()
    assert head.objective.bank_state.tolist() == [16, 16]
