"""The additive decoder: one term per latent, so an edit of one latent is the same change in
every context; heads built with it train, steer and save/load exactly (the joint head's
recovery test in test_joint_vae.py runs with both decoders)."""

import pytest
import torch

from probe_disentangle import io
from probe_disentangle.heads import AdditiveDecoder, JointVAEHeadConfig, VAEHead, VAEHeadConfig
from probe_disentangle.probe import Probe
from probe_disentangle.train import TrainConfig, Trainer


def test_changing_one_latent_moves_the_output_by_a_context_free_vector():
    torch.manual_seed(0)
    dec = AdditiveDecoder(n_scalar=3, d_out=5, hidden=7, onehot_sizes=(2, 3))
    g = torch.Generator().manual_seed(1)
    scalars = torch.randn(6, 3, generator=g)
    onehots = torch.cat(
        [
            torch.nn.functional.one_hot(torch.randint(0, 2, (6,), generator=g), 2),
            torch.nn.functional.one_hot(torch.randint(0, 3, (6,), generator=g), 3),
        ],
        1,
    ).float()
    z = torch.cat([onehots, scalars], 1)
    # a scalar latent set to 0.7 in six different contexts: the same change where it started equal
    moved = z.clone()
    moved[:, 5 + 1] = 0.7
    base = z.clone()
    base[:, 5 + 1] = -0.4
    delta = dec(moved) - dec(base)
    torch.testing.assert_close(delta, delta[:1].expand_as(delta), atol=1e-5, rtol=0)
    # a categorical latent switched from value 0 to value 2: its table's column difference
    a, b = z.clone(), z.clone()
    a[:, 2:5], b[:, 2:5] = torch.tensor([1.0, 0, 0]), torch.tensor([0, 0, 1.0])
    torch.testing.assert_close(dec(b) - dec(a), (dec.table.weight[:, 4] - dec.table.weight[:, 2]).expand(6, -1))
    # with every latent at a reference value the output is the bias plus each latent's own term
    assert dec(torch.zeros(1, 8)).shape == (1, 5)
    with pytest.raises(ValueError, match=r"\[batch, 8\]"):
        dec(torch.zeros(2, 7))


def test_unknown_decoder_is_refused():
    with pytest.raises(ValueError, match="unknown decoder 'linear'"):
        VAEHeadConfig(d_in=4, decoder="linear")
    with pytest.raises(ValueError, match="unknown decoder"):
        JointVAEHeadConfig(d_in=4, decoder="")
    with pytest.raises(ValueError, match="decoder_hidden"):
        VAEHeadConfig(d_in=4, decoder="additive", decoder_hidden=-1)


def test_additive_vae_head_steers_with_one_vector_per_latent_and_saves(tmp_path):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 3, generator=g) @ torch.randn(3, 8, generator=g)
    head = VAEHead(
        VAEHeadConfig(
            d_in=8,
            latent_dim=3,
            hidden=32,
            objective="beta_tcvae",
            objective_args={"beta": 2.0, "dataset_size": 1024},
            decoder="additive",
            decoder_hidden=8,
        )
    )
    first = float(head.loss(x).terms["recon"].detach())
    res = Trainer(head, TrainConfig(steps=200, batch_size=128, lr=3e-3, progress=False)).fit(x)
    assert res.last["recon"] < 0.5 * first
    probe = Probe(torch.nn.Sequential(torch.nn.Identity()), "0", head=head)
    # setting latent 1 to +1 rather than -1 moves every input by the same vector (an MLP decoder
    # would move each by its own)
    delta = probe.edit_vectors(x[:20], {1: 1.0}) - probe.edit_vectors(x[:20], {1: -1.0})
    torch.testing.assert_close(delta, delta[:1].expand_as(delta), atol=1e-4, rtol=1e-4)
    assert float(delta.norm()) > 0
    # three latents hold the rank-3 data: nearly all of its variance comes back; untrained, little
    assert probe.explained_variance(x) > 0.9
    untrained = VAEHead(VAEHeadConfig(d_in=8, latent_dim=3, hidden=32, decoder="additive", decoder_hidden=8))
    assert Probe(torch.nn.Sequential(torch.nn.Identity()), "0", head=untrained).explained_variance(x) < 0.5
    io.save(head, tmp_path / "h")
    back = io.load(tmp_path / "h")
    assert back.config.decoder == "additive" and isinstance(back.decoder, AdditiveDecoder)
    torch.testing.assert_close(back.decode(torch.ones(2, 3)), head.decode(torch.ones(2, 3)))
