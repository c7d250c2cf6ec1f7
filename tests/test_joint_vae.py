"""JointVAE pieces: the categorical KL and relaxed sample, the two-capacity loss, and a head that
recovers a discrete factor and steers it through the probe."""

import math

import pytest
import torch

from probe_disentangle import JointVAEHead, JointVAEHeadConfig, Probe, TrainConfig, Trainer, losses
from probe_disentangle.metrics import cluster_accuracy


def test_kl_categorical_uniform_known_values():
    assert torch.allclose(losses.kl_categorical_uniform(torch.zeros(2, 5)), torch.zeros(2), atol=1e-6)
    certain = torch.tensor([[60.0, 0.0, 0.0]])
    assert torch.allclose(losses.kl_categorical_uniform(certain), torch.tensor([math.log(3)]), atol=1e-5)
    q = torch.tensor([0.2, 0.3, 0.5])
    want = float((q * (q / (1 / 3)).log()).sum())
    assert losses.kl_categorical_uniform(q.log()[None]).item() == pytest.approx(want, abs=1e-6)


def test_gumbel_softmax_is_a_relaxed_sample_of_the_softmax():
    torch.manual_seed(0)
    probs = torch.tensor([0.2, 0.3, 0.5])
    s = losses.gumbel_softmax(probs.log().expand(40_000, 3), temperature=0.1)
    assert torch.allclose(s.sum(1), torch.ones(40_000), atol=1e-5)
    freq = torch.bincount(s.argmax(1), minlength=3).float() / 40_000  # Gumbel-max: argmax ~ Cat(probs)
    assert torch.allclose(freq, probs, atol=0.01)
    assert s.max(1).values.mean() > 0.9  # low temperature: nearly one-hot
    # hard (straight-through): the same sample's exact one-hot forward, the relaxed gradient back
    logits = probs.log().expand(8, 3).clone().requires_grad_()
    torch.manual_seed(1)
    soft = losses.gumbel_softmax(logits, temperature=0.5)
    torch.manual_seed(1)
    hard = losses.gumbel_softmax(logits, temperature=0.5, hard=True)
    torch.testing.assert_close(hard.detach(), torch.nn.functional.one_hot(soft.argmax(1), 3).float())
    weights = torch.tensor([1.0, -2.0, 3.0])
    (g_hard,) = torch.autograd.grad((hard * weights).sum(), logits)
    (g_soft,) = torch.autograd.grad((soft * weights).sum(), logits)
    torch.testing.assert_close(g_hard, g_soft)


def test_joint_capacity_loss_targets():
    loss = losses.JointCapacityLoss(gamma=10.0, c_cont_max=2.0, c_disc_max=1.0, c_steps=100)
    x = torch.zeros(4, 3)
    mu, logvar = torch.ones(4, 2), torch.zeros(4, 2)  # KL_cont = 2 · ½ = 1 per row
    logits = [torch.tensor([[60.0, 0.0]]).expand(4, 2)]  # KL_disc = log 2
    at0 = loss(x, x, mu, logvar, logits, step=0)
    assert at0.total.item() == pytest.approx(10 * (1 + math.log(2)), rel=1e-5)
    late = loss(x, x, mu, logvar, logits, step=500)  # capacities at their maxima: |1 − 2| + |log 2 − 1|
    assert late.total.item() == pytest.approx(10 * (1 + 1 - math.log(2)), rel=1e-5)
    assert late.terms["capacity_disc"].item() == 1.0


def test_marginal_term_charges_unused_values():
    loss = losses.JointCapacityLoss(gamma=0.0, marginal_weight=1.0)
    x = torch.zeros(4, 3)
    empty = torch.zeros(4, 0)
    used = [torch.eye(4) * 60.0]  # four confident rows, one per value: q̄ uniform
    merged = [torch.tensor([[60.0, 0, 0, 0], [60.0, 0, 0, 0], [0, 60.0, 0, 0], [0, 60.0, 0, 0]])]
    assert loss(x, x, empty, empty, used).terms["kl_marginal"].item() == pytest.approx(0.0, abs=1e-5)
    # q̄ = (½, ½, 0, 0): KL to uniform = log 4 − log 2
    assert loss(x, x, empty, empty, merged).total.item() == pytest.approx(math.log(2), abs=1e-5)


def _discrete_world(n: int, seed: int = 0):
    """Activations from one 4-valued factor (a class embedding) and one continuous factor."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(4, 8, generator=torch.Generator().manual_seed(99)) * 2.0
    axis = torch.nn.functional.normalize(torch.randn(8, generator=torch.Generator().manual_seed(7)), dim=0)
    table = table - (table @ axis)[:, None] * axis  # the two factors in orthogonal subspaces
    c = torch.randint(0, 4, (n,), generator=g)
    s = torch.randn(n, generator=g)
    x = table[c] + s[:, None] * axis + 0.05 * torch.randn(n, 8, generator=g)
    return x, c


@pytest.mark.parametrize(
    ("decoder", "decoder_hidden", "lr"),
    # the linear (additive, width 0) decoder learns its table by plain steps: a higher rate
    [("mlp", 32, 2e-3), ("additive", 0, 1e-2)],
)
def test_head_recovers_a_discrete_factor_and_the_probe_steers_it(decoder, decoder_hidden, lr):
    torch.manual_seed(0)
    x, c = _discrete_world(4096)
    head = JointVAEHead(
        JointVAEHeadConfig(
            d_in=8,
            categorical=[4],
            continuous=1,
            hidden=64,
            c_steps=400,
            c_cont_max=1.5,
            gamma=30.0,
            marginal_weight=10.0,
            decoder=decoder,
            decoder_hidden=decoder_hidden,
        )
    )
    Trainer(head, TrainConfig(steps=1600, batch_size=256, lr=lr, progress=False)).fit(x)
    head.eval()
    xt, ct = _discrete_world(2000, seed=1)
    codes = head.encode(xt)
    assert cluster_accuracy(codes[:, 0].long(), ct)["cluster_accuracy"] > 0.95

    # steering through a probe: set the categorical latent to each value and re-read it
    probe = Probe(torch.nn.Sequential(torch.nn.Identity()), "0", head=head)
    for v in range(4):
        edited = probe.edit_vectors(xt[:500], {0: float(v)})
        assert (probe.encode(edited)[:, 0] == v).float().mean() > 0.95
    assert probe.latent_dim == 2 and probe.directions().shape == (2, 8)
    assert probe.categorical_codes == [0]
    # ("nearest", values): per input the value that changes the activation least
    assert torch.equal(probe.edit_vectors(xt[:50], {0: ("nearest", [2])}), probe.edit_vectors(xt[:50], {0: 2.0}))
    assert torch.allclose(probe.edit_vectors(xt[:50], {0: ("nearest", [0, 1, 2, 3])}), xt[:50])  # stays put
    with pytest.raises(ValueError, match="non-empty list of candidate"):
        probe.edit_vectors(xt[:5], {0: ("nearest", [])})


def test_config_checks():
    with pytest.raises(ValueError, match="≥ 2 values"):
        JointVAEHeadConfig(d_in=4, categorical=[1])
    with pytest.raises(ValueError, match="at least one"):
        JointVAEHeadConfig(d_in=4, categorical=[], continuous=0)
    assert JointVAEHeadConfig(d_in=4, categorical=[2, 3]).c_disc_max == pytest.approx(math.log(6))
    head = JointVAEHead(JointVAEHeadConfig(d_in=4, categorical=[3], continuous=2, hidden=8))
    with pytest.raises(ValueError, match=r"codes must be \[batch, 3\]"):
        head.decode(torch.zeros(2, 2))
