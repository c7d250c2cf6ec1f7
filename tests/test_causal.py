"""CausalVAE (Yang et al. 2021): the SCM layer, acyclicity, interventions, and the pendulum world."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from probe_disentangle import CausalVAEConfig, CausalVAEHead, Probe, TrainConfig, Trainer, io
from probe_disentangle.heads import acyclicity, structural_hamming_distance
from probe_disentangle.worlds.pendulum import GRAPH, Pendulum, PendulumReadout


def _head(a, d_in=4, **kw):
    torch.manual_seed(0)
    head = CausalVAEHead(CausalVAEConfig(d_in=d_in, latent_dim=len(a), hidden=8, depth=1, **kw))
    with torch.no_grad():
        head.adjacency.copy_(torch.tensor(a, dtype=torch.float32))
    return head.eval()


def test_acyclicity_is_zero_exactly_for_a_dag_and_the_closed_form_for_a_two_cycle():
    dag = torch.tensor([[0.0, 1.3, -0.7], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    assert abs(float(acyclicity(dag))) < 1e-6
    a, b = 0.8, 1.1
    cycle = torch.tensor([[0.0, a], [b, 0.0]], dtype=torch.float64)
    # exp([[0, a²], [b², 0]]) has trace 2 cosh(ab)
    assert float(acyclicity(cycle)) == pytest.approx(2 * math.cosh(a * b) - 2, rel=1e-9)


def test_structural_hamming_distance_known_answers():
    g = GRAPH
    assert structural_hamming_distance(g, g) == 0
    missing = g.copy()
    missing[0, 2] = 0
    assert structural_hamming_distance(missing, g) == 1
    flipped = g.copy()
    flipped[0, 2], flipped[2, 0] = 0, 1
    assert structural_hamming_distance(flipped, g) == 1
    extra = g.copy()
    extra[2, 3] = 1
    assert structural_hamming_distance(extra, g) == 1
    assert structural_hamming_distance(np.zeros((4, 4)), g) == 4
    with pytest.raises(ValueError, match="same size"):
        structural_hamming_distance(np.zeros((3, 3)), g)


def test_do_moves_the_children_and_leaves_the_parents():
    """0 → 1 with weight 2, 2 on its own: z = (1, 2·1 + 0.5, 4) from ε = (1, 0.5, 4)."""
    head = _head([[0, 2, 0], [0, 0, 0], [0, 0, 0]])
    eps = torch.tensor([[1.0, 0.5, 4.0]])
    c = torch.linalg.inv(torch.eye(3) - head.A.T)
    z = eps @ c.T
    assert torch.allclose(z, torch.tensor([[1.0, 2.5, 4.0]]))
    # do(z1 = 0): the parent and the bystander keep their values
    assert torch.allclose(head.intervene(z, {1: 0.0}), torch.tensor([[1.0, 0.0, 4.0]]))
    # do(z0 = 3): the child follows the mechanism with its own noise kept, 2·3 + 0.5
    assert torch.allclose(head.intervene(z, {0: 3.0}), torch.tensor([[3.0, 6.5, 4.0]]))
    assert torch.equal(head.intervene(z, {}), z)


def test_a_probe_edit_of_a_causal_head_is_an_intervention():
    head = _head([[0, 2, 0], [0, 0, 0], [0, 0, 0]], d_in=6)
    host = nn.Sequential(nn.Identity())
    probe = Probe(host, "0", head=head)
    a = torch.randn(5, 6)
    z = head.encode(a)[0]
    expect = a + head.decode(head.intervene(z, {0: 1.5})) - head.decode(z)
    assert torch.allclose(probe.edit_vectors(a, {0: 1.5}), expect, atol=1e-5)
    # a plain latent edit would leave the child alone; the intervention moves it
    plain = z.clone()
    plain[:, 0] = 1.5
    assert not torch.allclose(head.decode(plain), head.decode(head.intervene(z, {0: 1.5})), atol=1e-3)


def test_a_two_variable_linear_scm_is_recovered_from_labelled_activations(tmp_path):
    """u0 ~ N(0, ½²), u1 = 1.5·u0 + N(0, ½²): the fitted A holds 0 → 1 with weight ≈ 1.5 and no
    reverse edge (equal noise variances make the direction identifiable). The weight comes out a
    little low (1.37 here): the sampled z₁ carries A·(ε₀'s posterior noise), which reconstruction
    penalises."""
    g = torch.Generator().manual_seed(0)
    n = 4000
    u0 = 0.5 * torch.randn(n, generator=g)
    u1 = 1.5 * u0 + 0.5 * torch.randn(n, generator=g)
    u = torch.stack([u0, u1], 1)
    x = u @ torch.randn(2, 12, generator=g) + 0.05 * torch.randn(n, 12, generator=g)
    torch.manual_seed(0)
    head = CausalVAEHead(CausalVAEConfig(d_in=12, latent_dim=2, hidden=32, depth=1, label_weight=1.0))
    Trainer(head, TrainConfig(steps=800, batch_size=256, lr=1e-2, seed=0, progress=False)).fit((x, u))
    a = head.A.detach()
    assert 1.25 < a[0, 1].item() < 1.65
    assert abs(a[1, 0].item()) < 0.1
    assert structural_hamming_distance((a.abs() > 0.3).numpy(), [[0, 1], [0, 0]]) == 0
    assert float(acyclicity(a)) < 1e-2 and float(head.dag_multiplier) > 0  # the multiplier rose
    # the concepts are the labels (the label-conditioned prior), read back from x
    z = head.eval().encode(x)[0]
    assert float(torch.corrcoef(torch.stack([z[:, 1], u1]))[0, 1]) > 0.98
    io.save(head, tmp_path / "h")
    back = io.load(tmp_path / "h")
    assert torch.equal(back.A, head.A) and torch.equal(back.dag_multiplier, head.dag_multiplier)


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="latent_dim ≥ 2"):
        CausalVAEConfig(d_in=4, latent_dim=1)
    head = _head([[0, 0], [0, 0]])
    with pytest.raises(ValueError, match="one per concept"):
        head.loss((torch.randn(3, 4), torch.randn(3, 3)))


def test_pendulum_world_readout_and_mechanism():
    w = Pendulum(noise=0.0)
    images, values = w.sample(64, random_state=0)
    assert images.shape == (64, 3, 32, 32) and 0 <= float(images.min()) and float(images.max()) <= 1
    length, pos = Pendulum.shadow(values[:, 0], values[:, 1])
    assert np.allclose(values[:, 2], np.maximum(length, 0.03)) and np.allclose(values[:, 3], pos)
    read = PendulumReadout(w).read(images)
    assert bool(read["valid"].all())
    err = np.abs(read["values"].numpy() - values)
    assert err[:, 0].max() < 1.0 and err[:, 1].max() < 1.0  # degrees
    assert err[:, 2].max() < 0.02 and err[:, 3].max() < 0.01  # unit lengths
    # an upright pendulum under a vertical sun casts a shadow of zero length below the pivot
    assert np.allclose(Pendulum.shadow(np.array([0.0]), np.array([0.0])), ([0.0], [0.5]), atol=1e-12)
    # blank and noise images are not scenes
    bad = torch.cat([torch.zeros(1, 3, 32, 32), torch.rand(1, 3, 32, 32)])
    assert not PendulumReadout(w).read(bad)["valid"].any()
    levels = w.discretise(values)
    assert levels.min() >= 0 and levels.max() < w.levels and levels.dtype == np.int64
    assert np.allclose(w.unstandardise(w.standardise(values)), values)
