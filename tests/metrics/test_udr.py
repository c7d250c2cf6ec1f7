"""UDR (Duan et al. 2020) on codes whose answer is known."""

import numpy as np
import pytest
import torch

from probe_disentangle.metrics import udr
from probe_disentangle.metrics.udr import correlation_matrix, relative_strength


def _factors(n=2000, k=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, k))


def _grid(k=4, levels=5):
    """Every combination of ``levels`` values over ``k`` columns: the columns' sample (rank)
    correlations are exactly 0, so a finite sample gives the exact answers."""
    return np.stack(np.meshgrid(*[np.arange(levels, dtype=float)] * k, indexing="ij"), -1).reshape(-1, k)


def test_identical_models_score_one():
    z = _grid()
    res = udr([z, z.copy(), z.copy()])
    assert res["model_scores"] == pytest.approx([1.0, 1.0, 1.0])
    assert np.isnan(np.array(res["pairwise"])[0, 0])


def test_permuted_sign_flipped_and_monotone_copies_score_one():
    """UDR is invariant to what seeds change in a disentangled solution: order, sign, scale, and
    (Spearman) any monotone map of a latent."""
    z = _grid()
    b = -3.0 * z[:, [2, 0, 3, 1]]
    c = np.tanh(z[:, [1, 3, 0, 2]]) + 5
    assert udr([z, b, c])["model_scores"] == pytest.approx([1.0, 1.0, 1.0])


def test_unrelated_models_score_near_zero():
    scores = udr([_factors(seed=s) for s in range(3)])["model_scores"]
    assert max(scores) < 0.05


def test_a_rotated_solution_scores_what_the_closed_form_says():
    """Two latents mixed at 45°: every entry of R is |corr| = 1/√2, so each row and column scores
    (1/2) / √2 = 0.354 (Pearson on Gaussian codes; Spearman's rank correlation of a bivariate
    normal with ρ = 1/√2 is (6/π) asin(ρ/2) = 0.690 instead)."""
    z = _factors(n=200_000, k=2)
    rot = z @ (np.array([[1.0, 1.0], [-1.0, 1.0]]) / np.sqrt(2))
    rho = 6 / np.pi * np.arcsin(1 / np.sqrt(2) / 2)
    pair = udr([z, rot])["pairwise"][0][1]
    assert pair == pytest.approx(rho**2 / (2 * rho), abs=0.005)
    assert relative_strength(np.full((2, 2), 1 / np.sqrt(2))) == pytest.approx(0.5 / np.sqrt(2))


def test_the_entangled_model_ranks_last():
    z = _factors()
    rng = np.random.default_rng(1)
    good = [z[:, rng.permutation(4)] + 0.1 * rng.normal(size=z.shape) for _ in range(3)]
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    scores = udr([*good, z @ q])["model_scores"]
    assert int(np.argmin(scores)) == 3 and min(scores[:3]) > 0.9 > scores[3] + 0.3


def test_unused_latents_are_dropped_by_their_kl():
    """A latent at the prior (KL ≈ 0) is noise that differs per seed; counted, it is a latent the
    other model does not see (a zero row and column of R): 3 of 4 per side score 1, so 0.75."""
    g = _grid(k=5)
    a, b = g[:, [0, 1, 2, 3]], g[:, [2, 1, 0, 4]]
    kl = [np.array([2.0, 2.0, 2.0, 0.001])] * 2
    assert udr([a, b], kl=kl)["model_scores"] == pytest.approx([1.0, 1.0])
    assert udr([a, b], kl=kl)["informative"] == [[0, 1, 2], [0, 1, 2]]
    assert udr([a, b])["model_scores"] == pytest.approx([0.75, 0.75])


def test_callable_models_with_their_kl_and_lasso():
    z = torch.tensor(_grid(k=3, levels=8), dtype=torch.float32)

    def model(perm):
        return lambda x: (x[:, perm], torch.full((len(x), 3), 1.0))

    res = udr([model([0, 1, 2]), model([2, 0, 1])], inputs=z, method="lasso")
    # standardised, uncorrelated latents under Lasso(α = 0.1): coefficient 1 − α on the matching
    # one, exactly 0 elsewhere, so each row and column scores 0.9² / 0.9
    assert res["model_scores"] == pytest.approx([0.9, 0.9], abs=1e-6)
    r = correlation_matrix(z.numpy(), z.numpy()[:, [2, 0, 1]], "lasso")
    assert r.shape == (3, 3) and r[2, 0] == pytest.approx(0.9, abs=1e-6) and r[0, 0] == 0.0


def test_bad_input_is_refused_with_the_fix():
    z = _factors()
    with pytest.raises(ValueError, match="at least 2"):
        udr([z])
    with pytest.raises(ValueError, match="same inputs"):
        udr([z, z[:100]])
    with pytest.raises(ValueError, match="inputs="):
        udr([lambda x: x, lambda x: x])
    with pytest.raises(ValueError, match="one value per latent"):
        udr([z, z], kl=[np.ones(3), np.ones(4)])
    with pytest.raises(ValueError, match="'spearman' or 'lasso'"):
        udr([z, z], method="pearson")
