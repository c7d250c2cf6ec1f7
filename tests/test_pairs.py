"""Pair training (Ada-GVAE) through the store: ActivationStore(pairs=True) → VAEHead(pairs=True)."""

import pytest
import torch
from torch import nn

from probe_disentangle.heads import VAEHead, VAEHeadConfig
from probe_disentangle.probe import Probe
from probe_disentangle.train import TrainConfig


def _linear_host() -> nn.Module:
    # 3 factors written into 8 dimensions by a fixed rotation: a β-VAE alone meets a rotation it
    # cannot undo; pairs that differ in one factor pin each latent to one factor
    torch.manual_seed(0)
    host = nn.Sequential(nn.Linear(3, 8))
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(8, 3))
        host[0].weight.copy_(2 * q)
        host[0].bias.zero_()
    return host


def _pairs(n_batches: int = 40, rows: int = 128, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        fa = torch.rand(rows, 3, generator=g) * 2 - 1
        fb = fa.clone()
        k = torch.randint(0, 3, (rows,), generator=g)  # one factor resampled per pair, which one unsaid
        fb[torch.arange(rows), k] = torch.rand(rows, generator=g) * 2 - 1
        out.append((fa, fb))
    return out


def _fit(host, data, pairs=True, **kw):
    p = Probe(
        host, "0", head_config={"latent_dim": 3, "objective": "beta_vae", "objective_args": {"beta": 1.0}, "hidden": 64}
    )
    result = p.fit(data, TrainConfig(steps=600, batch_size=128, lr=3e-3, seed=0), pairs=pairs, buffer_size=2048, **kw)
    return p, result


def test_pair_training_gives_one_latent_per_factor(tmp_path):
    host = _linear_host()
    p, result = _fit(host, _pairs())
    assert p.head.config.pairs and p.reference_codes.shape[1] == 3
    # one factor differs per pair: Ada-GVAE shares about 2 of the 3 latents
    assert 0.5 < result.last["shared"] < 0.8
    f = torch.rand(2000, 3, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        z = p.encode(host(f))
    corr = torch.corrcoef(torch.cat([z.T, f.T]))[:3, 3:].abs()
    assert sorted(corr.argmax(0).tolist()) == [0, 1, 2]  # a distinct latent per factor
    assert corr.max(0).values.min() > 0.99
    p.save_pretrained(tmp_path / "probe")
    back = Probe.from_pretrained(tmp_path / "probe", host)
    assert back.head.config.pairs
    torch.testing.assert_close(back.encode(host(f)), z)


def test_pair_training_bad_input_names_the_fix():
    host = _linear_host()
    with pytest.raises(TypeError, match=r"\(batch_a, batch_b\)"):
        _fit(host, [torch.zeros(64, 3)] * 4)
    single = Probe(host, "0", head=VAEHead(VAEHeadConfig(d_in=8, latent_dim=3)))
    with pytest.raises(ValueError, match="pairs=True"):
        single.fit(_pairs(2), TrainConfig(steps=1), pairs=True)
    paired = Probe(host, "0", head=VAEHead(VAEHeadConfig(d_in=8, latent_dim=3, pairs=True)))
    with pytest.raises(ValueError, match="fit\\(data, pairs=True\\)"):
        paired.fit([torch.zeros(64, 3)], TrainConfig(steps=1))
    with pytest.raises(ValueError, match="batches of pairs"):
        paired.head.loss(torch.zeros(4, 8))
    with pytest.raises(ValueError, match="vae_head"):
        Probe(host, "0", architecture="joint_vae_head").fit(_pairs(2), TrainConfig(steps=1), pairs=True)


def test_unpaired_head_loss_unchanged_and_paired_loss_reports_the_share():
    torch.manual_seed(0)
    head = VAEHead(VAEHeadConfig(d_in=4, latent_dim=2, objective="beta_vae", pairs=True)).eval()
    x = torch.randn(5, 2, 4)
    out = head.loss(x)
    assert "shared" in out.terms
    # identical halves: every KL is 0, the midpoint threshold shares nothing strictly below it, and
    # the loss is the β-VAE loss of the 10 vectors
    same = torch.stack([x[:, 0], x[:, 0]], 1)
    plain = VAEHead(VAEHeadConfig(d_in=4, latent_dim=2, objective="beta_vae")).eval()
    plain.load_state_dict(head.state_dict())
    torch.testing.assert_close(head.loss(same).total, plain.loss(torch.cat([x[:, 0], x[:, 0]])).total)
