"""posterior_mig: Chen et al.'s sampled-posterior MIG, against closed forms."""

import math

import numpy as np
import pytest

from probe_disentangle.metrics import posterior_mig


def _mixture_mi(a: float) -> float:
    """I(z; v) for v uniform on {0, 1} and z | v ~ N(±a, 1), by quadrature of the mixture's entropy."""
    x = np.linspace(-a - 12, a + 12, 200_001)
    p = 0.5 * (np.exp(-0.5 * (x - a) ** 2) + np.exp(-0.5 * (x + a) ** 2)) / math.sqrt(2 * math.pi)
    h_mix = -np.sum(p * np.log(p + 1e-300)) * (x[1] - x[0])
    return h_mix - 0.5 * math.log(2 * math.pi * math.e)


@pytest.mark.parametrize("a", [0.5, 1.0, 2.0])
def test_mutual_information_of_a_gaussian_mixture(a):
    # posteriors N(±a, 1) by a binary factor: the mixture over the points is exactly N(±a, 1) per value
    rng = np.random.default_rng(0)
    v = rng.integers(0, 2, 8_000)
    means = np.where(v == 1, a, -a)[:, None].astype(float)
    out = posterior_mig(means, np.zeros_like(means), v[:, None], num_samples=8_000, random_state=0)
    assert out["mutual_information"][0][0] == pytest.approx(_mixture_mi(a), abs=0.03)


def test_one_sharp_code_per_factor_scores_one_and_noise_scores_zero():
    rng = np.random.default_rng(1)
    f = rng.integers(0, 4, (4_000, 2))
    means = np.column_stack([3.0 * f[:, 0], 3.0 * f[:, 1], rng.normal(size=len(f))])
    logvars = np.column_stack([np.full(len(f), -6.0), np.full(len(f), -6.0), np.zeros(len(f))])
    out = posterior_mig(means, logvars, f, num_samples=2_000)
    assert out["posterior_mig"] == pytest.approx(1.0, abs=0.02)  # each factor: log 4 nats in one code
    mi = np.array(out["mutual_information"])
    assert mi[0, 0] == pytest.approx(math.log(4), abs=0.02) and abs(mi[1, 0]) < 0.02 and abs(mi[2, 1]) < 0.02
    # two codes holding the same factor equally: no gap
    twin = posterior_mig(means[:, [0, 0, 1]], logvars[:, [0, 0, 1]], f, num_samples=2_000)
    assert twin["per_factor"][0] == pytest.approx(0.0, abs=0.02) and twin["per_factor"][1] > 0.95
    # wide posteriors blur the same means: less information, a smaller gap
    wide = posterior_mig(means, np.full_like(means, 1.5), f, num_samples=2_000)
    assert 0.1 < wide["posterior_mig"] < 0.9


def test_seeded_and_checked():
    rng = np.random.default_rng(2)
    f = rng.integers(0, 3, (500, 1))
    means = f + rng.normal(size=(500, 2))
    a = posterior_mig(means, np.zeros_like(means), f, random_state=5)
    assert a == posterior_mig(means, np.zeros_like(means), f, random_state=5)
    with pytest.raises(ValueError, match="logvars must match"):
        posterior_mig(means, np.zeros((500, 3)), f)
    with pytest.raises(ValueError, match="num_samples"):
        posterior_mig(means, np.zeros_like(means), f, num_samples=0)
