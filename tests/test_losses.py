"""Known-answer tests for the core loss module."""

import math

import pytest
import torch

from probe_disentangle import losses as L


def _rand(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


# ---------------------------------------------------------------- KL and reconstruction


def test_kl_closed_form_matches_monte_carlo():
    mu = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, -1.5, 0.7]], dtype=torch.float64)
    closed = L.kl_normal_standard(mu, logvar)
    g = torch.Generator().manual_seed(1)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    mc = (L.gaussian_log_density(z, mu, logvar) - L.gaussian_log_density(z, 0 * z, 0 * z)).mean(0)
    torch.testing.assert_close(closed[0], mc, atol=0.01, rtol=0.0)
    assert float(L.kl_normal_standard(torch.zeros(1, 1), torch.zeros(1, 1))) == 0.0


def test_reconstruction_losses_hand_values():
    x = torch.tensor([[1.0, 0.0]])
    recon = torch.tensor([[0.0, 2.0]])
    assert float(L.reconstruction_loss(recon, x, "gaussian")) == pytest.approx(0.5 * (1 + 4))
    assert float(L.reconstruction_loss(recon, x, "gaussian", sigma=2.0)) == pytest.approx(0.5 * 5 / 4)
    want = -math.log(0.5) - math.log(1 - 1 / (1 + math.exp(-2.0)))
    assert float(L.reconstruction_loss(recon, x, "bernoulli")) == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        L.reconstruction_loss(recon, x[:, :1])
    with pytest.raises(ValueError, match="gaussian"):
        L.reconstruction_loss(recon, x, "laplace")


# ---------------------------------------------------------------- permute_dims


def test_permute_dims_keeps_marginals_destroys_dependence():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20_000, 1, generator=g)
    z = torch.cat([a, a, -a, torch.randn(20_000, 1, generator=g)], 1)  # perfectly dependent columns
    zp = L.permute_dims(z, torch.Generator().manual_seed(3))
    torch.testing.assert_close(zp.sort(0).values, z.sort(0).values)  # each marginal unchanged
    corr = torch.corrcoef(zp.T)
    off = corr - torch.diag(torch.diagonal(corr))
    assert off.abs().max() < 0.05  # was exactly ±1
    assert torch.corrcoef(z.T)[0, 1] == pytest.approx(1.0)


# ---------------------------------------------------------------- MSS / MWS


def test_mss_weight_matrix_is_the_papers_not_the_buggy_one():
    B, N = 6, 1000
    M = B - 1
    W = L.mss_log_weights(B, N).exp()
    torch.testing.assert_close(torch.diagonal(W), torch.full((B,), 1 / N, dtype=torch.float64))
    torch.testing.assert_close(W.sum(1), torch.ones(B, dtype=torch.float64))  # a proper mixture estimate
    strat = (N - M) / (N * M)
    assert all(float(W[i, (i + 1) % B]) == pytest.approx(strat) for i in range(B))
    # the reference code (rtqichen/beta-tcvae) fills with stride M + 1 = B: column 0, not the diagonal
    buggy = torch.full((B, B), 1 / M, dtype=torch.float64)
    buggy.view(-1)[:: M + 1] = 1 / N
    buggy.view(-1)[1 :: M + 1] = strat
    buggy[M - 1, 0] = strat
    assert torch.allclose(buggy[: M - 1, 0], torch.full((M - 1,), 1 / N, dtype=torch.float64))
    assert not torch.allclose(torch.diagonal(buggy)[1:], torch.full((B - 1,), 1 / N, dtype=torch.float64))
    assert not torch.allclose(W, buggy)


def test_buggy_mss_reads_too_high_for_separated_posteriors():
    # narrow, well separated posteriors: log q(z_i) is dominated by the sample's own term, weighted
    # 1/N by MSS but 1/M by the buggy matrix, so the buggy joint log q(z) is log(N/M) too high.
    B, N, K = 64, 100_000, 3
    mu = _rand(B, K, seed=1) * 5
    logvar = torch.full((B, K), math.log(1e-4), dtype=torch.float64)
    z = mu + 1e-2 * _rand(B, K, seed=2)
    M = B - 1
    buggy = torch.full((B, B), 1 / M, dtype=torch.float64)
    buggy.view(-1)[:: M + 1] = 1 / N
    buggy.view(-1)[1 :: M + 1] = (N - M) / (N * M)
    buggy[M - 1, 0] = (N - M) / (N * M)
    j_ok, _ = L.log_qz(z, mu, logvar, N, "mss", backend="dense")
    j_bug, _ = L.log_qz_dense(z, mu, logvar, buggy.log())
    gap = (j_bug - j_ok)[1:].mean()  # row 0 is right in both
    assert float(gap) == pytest.approx(math.log(N / M), rel=0.01)


@pytest.mark.parametrize("estimator,N", [("mss", 1000.0), ("mws", 1000.0), ("mss", math.inf)])
@pytest.mark.parametrize("B,K", [(2, 1), (37, 5), (64, 10)])
def test_blocked_equals_dense_values_and_gradients(estimator, N, B, K):
    z, mu, lv = (_rand(B, K, seed=s).requires_grad_() for s in range(3))
    gj, gm = _rand(B, seed=4), _rand(B, K, seed=5)
    outs = []
    for backend in ("dense", "blocked"):
        j, m = L.log_qz(z, mu, lv, N, estimator, backend=backend, max_block_elements=3 * B * K)
        grads = torch.autograd.grad((j * gj).sum() + (m * gm).sum(), [z, mu, lv])
        outs.append((j, m, *grads))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)


def test_blocked_float32_matches_float64_dense():
    B, K = 200, 8
    z, mu, lv = (_rand(B, K, seed=s) for s in range(3))
    j64, m64 = L.log_qz(z, mu, lv, 5000, "mss", backend="dense")
    j32, m32 = L.log_qz(z.float(), mu.float(), lv.float(), 5000, "mss", backend="blocked", max_block_elements=5000)
    torch.testing.assert_close(j32.double(), j64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m32.double(), m64, rtol=1e-5, atol=1e-5)


def _mixture_experiment(N, B, batches, mc_samples, seed=0):
    """q(z) = (1/N) Σ_n N(m_n, σ² I), m_n ~ N(0, C − σ² I): returns (MSS mean, MC TC, closed form)."""
    K, s2 = 4, 0.3
    g = torch.Generator().manual_seed(seed)
    C = 0.5 * torch.eye(K) + 0.5 * torch.ones(K, K)
    chol = torch.linalg.cholesky(C - s2 * torch.eye(K))
    means = torch.randn(N, K, generator=g) @ chol.T
    logvar = torch.full((N, K), math.log(s2))
    est = []
    for _ in range(batches):
        idx = torch.randperm(N, generator=g)[:B]
        z = means[idx] + math.sqrt(s2) * torch.randn(B, K, generator=g)
        est.append(float(L.total_correlation(z, means[idx], logvar[idx], N, "mss")))
    # Monte-Carlo TC of the finite mixture, each density over all N components
    comp = torch.randint(0, N, (mc_samples,), generator=g)
    zs = means[comp] + math.sqrt(s2) * torch.randn(mc_samples, K, generator=g)
    joint, marg = [], []
    for s in range(0, mc_samples, 50):
        t = L.gaussian_log_density(zs[s : s + 50, None, :], means[None], logvar[None])  # (50, N, K)
        joint.append(torch.logsumexp(t.sum(-1), 1))
        marg.append(torch.logsumexp(t, 1))
    tc_mc = (torch.cat(joint) - torch.cat(marg).sum(1) + (K - 1) * math.log(N)).mean()
    closed = -0.5 * math.log(float(torch.linalg.det(C)))
    return sum(est) / len(est), float(tc_mc), closed


def test_mss_matches_true_total_correlation_small():
    mss, mc, closed = _mixture_experiment(N=10_000, B=1024, batches=6, mc_samples=2000)
    assert mss == pytest.approx(mc, abs=0.06)
    assert mc == pytest.approx(closed, abs=0.08)


@pytest.mark.slow
def test_mss_matches_true_total_correlation_issue_setting():
    # the issue's setting: K = 4, σ² = 0.3, N = 1e5, B = 4096, 10 batches
    mss, mc, closed = _mixture_experiment(N=100_000, B=4096, batches=10, mc_samples=4000)
    assert mss == pytest.approx(mc, abs=0.05)
    assert mc == pytest.approx(closed, abs=0.05)


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_decomposition_sums_to_estimated_kl(estimator):
    B, K = 128, 6
    mu, lv = _rand(B, K, seed=1), 0.3 * _rand(B, K, seed=2)
    z = mu + torch.exp(0.5 * lv) * _rand(B, K, seed=3)
    parts = L.tc_decomposition(z, mu, lv, 10_000, estimator)
    kl_est = (L.gaussian_log_density(z, mu, lv).sum(1) - L.gaussian_log_density(z, 0 * z, 0 * z).sum(1)).mean()
    torch.testing.assert_close(parts["mi"] + parts["tc"] + parts["dwkl"], kl_est)


def test_tc_near_zero_for_independent_latents_and_positive_for_dependent():
    B, K, N = 2048, 3, 2048
    g = torch.Generator().manual_seed(0)
    mu = math.sqrt(0.7) * torch.randn(B, K, generator=g)
    lv = torch.full((B, K), math.log(0.3))
    z = mu + math.sqrt(0.3) * torch.randn(B, K, generator=g)
    assert abs(float(L.total_correlation(z, mu, lv, N))) < 0.05
    mu_dep = 3 * mu[:, :1].repeat(1, K)
    z_dep = mu_dep + math.sqrt(0.3) * torch.randn(B, K, generator=g)
    assert float(L.total_correlation(z_dep, mu_dep, lv, N)) > 1.0


def test_log_qz_rejects_bad_input():
    z = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="dataset_size"):
        L.log_qz(z, z, z, 3, "mss")
    with pytest.raises(ValueError, match="estimator"):
        L.log_qz(z, z, z, 10, "iwae")
    with pytest.raises(ValueError, match="one shape"):
        L.log_qz(z, z[:, :1], z, 10)
    with pytest.raises(ValueError, match="backend"):
        L.log_qz(z, z, z, 10, backend="magic")


# ---------------------------------------------------------------- objectives


def _batch(B=16, d=5, K=3, seed=0):
    x, recon = _rand(B, d, seed=seed).float(), _rand(B, d, seed=seed + 1).float()
    mu, lv = _rand(B, K, seed=seed + 2).float(), 0.1 * _rand(B, K, seed=seed + 3).float()
    z = mu + torch.exp(0.5 * lv) * _rand(B, K, seed=seed + 4).float()
    return x, recon, mu, lv, z


def test_beta_vae_and_capacity_totals():
    x, recon, mu, lv, z = _batch()
    rec = L.reconstruction_loss(recon, x).mean()
    kl = L.kl_normal_standard(mu, lv).sum(1).mean()
    r = L.BetaVAELoss(beta=4.0)(x, recon, mu, lv, z)
    torch.testing.assert_close(r.total, rec + 4.0 * kl)
    assert set(r.terms) == {"recon", "kl"}
    cap = L.CapacityLoss(gamma=100.0, c_max=20.0, c_steps=1000)
    assert cap.capacity(0) == 0.0 and cap.capacity(500) == 10.0 and cap.capacity(5000) == 20.0
    r = cap(x, recon, mu, lv, z, step=500)
    torch.testing.assert_close(r.total, rec + 100.0 * (kl - 10.0).abs())
    assert float(r.terms["capacity"]) == 10.0


def test_beta_tcvae_weights_and_reduction_to_vae():
    x, recon, mu, lv, z = _batch(B=64)
    r = L.BetaTCVAELoss(alpha=1.0, beta=5.0, gamma=2.0, dataset_size=1000)(x, recon, mu, lv, z)
    t = r.terms
    torch.testing.assert_close(r.total, t["recon"] + t["mi"] + 5.0 * t["tc"] + 2.0 * t["dwkl"])
    # α = β = γ = 1: the sampled-KL ELBO, whatever the estimator
    one = L.BetaTCVAELoss(1, 1, 1, dataset_size=1000)(x, recon, mu, lv, z)
    kl_est = (L.gaussian_log_density(z, mu, lv).sum(1) - L.gaussian_log_density(z, 0 * z, 0 * z).sum(1)).mean()
    torch.testing.assert_close(one.total, t["recon"] + kl_est, rtol=1e-5, atol=1e-5)


def test_dip_vae_penalty_known_values():
    mu = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # Cov[mu] = [[1, 1], [1, 1]]
    lv = torch.zeros(2, 2)
    cov_i = L.dip_covariance(mu, lv, "i")
    torch.testing.assert_close(cov_i, torch.ones(2, 2))
    torch.testing.assert_close(L.dip_covariance(mu, lv, "ii"), torch.ones(2, 2) + torch.eye(2))
    assert float(L.dip_penalty(cov_i, 2.0, 3.0)) == pytest.approx(2.0 * 2)  # off-diag 1,1; diag exactly 1
    assert float(L.dip_penalty(torch.eye(2) * 3, 2.0, 3.0)) == pytest.approx(3.0 * 8)
    loss = L.DIPVAELoss(kind="i", lambda_od=1.0)
    assert loss.lambda_d == 10.0
    assert L.DIPVAELoss(kind="ii", lambda_od=2.0).lambda_d == 2.0


@pytest.mark.parametrize("disc_dtype", ["float32", "bfloat16"])
def test_factor_vae_tc_is_mean_logit_and_discriminator_learns(disc_dtype):
    torch.manual_seed(0)
    obj = L.FactorVAELoss(gamma=3.0, latent_dim=2, disc_hidden=32, disc_depth=2, disc_dtype=disc_dtype)
    x, recon, mu, lv, z = _batch(K=2)
    r = obj(x, recon, mu, lv, z)
    torch.testing.assert_close(r.total, r.terms["recon"] + r.terms["kl"] + 3.0 * obj.discriminator(z).mean())
    # strongly dependent latents: the discriminator learns to spot permuted samples
    opt = torch.optim.Adam(obj.discriminator.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        a = torch.randn(256, 1, generator=g)
        d = obj.discriminator_loss(torch.cat([a, a + 0.05 * torch.randn(256, 1, generator=g)], 1), g)
        opt.zero_grad()
        d.total.backward()
        opt.step()
    assert float(d.terms["disc_acc"]) > 0.85
    a = torch.randn(2048, 1, generator=g)
    with torch.no_grad():
        assert float(obj.discriminator(torch.cat([a, a], 1)).mean()) > 1.0  # TC estimate clearly positive


def test_factor_discriminator_in_bf16_matches_float32_to_bf16_precision():
    torch.manual_seed(0)
    d32 = L.FactorDiscriminator(4, hidden=256, depth=3)
    d16 = L.FactorDiscriminator(4, hidden=256, depth=3, dtype="bfloat16")
    d16.load_state_dict(d32.state_dict())
    z = torch.randn(64, 4, requires_grad=True)
    out32, out16 = d32(z), d16(z)
    assert out16.dtype == torch.float32 and out16.shape == (64,)
    assert not torch.equal(out16, out32)  # the matmuls did run in bf16
    torch.testing.assert_close(out16, out32, atol=0.02 * out32.abs().max().item(), rtol=0)
    # weights, and so the optimiser's state, stay float32; gradients come back in float32 and keep
    # their direction (the input gradient is D's TC push on the encoder)
    g16 = torch.autograd.grad(out16.mean(), [z, *d16.parameters()])
    g32 = torch.autograd.grad(out32.mean(), [z, *d32.parameters()])
    assert all(p.dtype == torch.float32 for p in d16.parameters())
    for a, b in zip(g16, g32, strict=True):
        assert a.dtype == torch.float32
        assert float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)) > 0.99
    with pytest.raises(ValueError, match="float16"):
        L.FactorDiscriminator(4, dtype="float16")


def test_infogan_categorical_bound_equals_entropy_for_perfect_q():
    codes = torch.arange(10).repeat(20)
    perfect = torch.nn.functional.one_hot(codes, 10).float() * 1e4
    assert float(L.categorical_mi_lower_bound(perfect, codes)) == pytest.approx(math.log(10), abs=1e-4)
    imperfect = perfect * 1e-4 + _rand(200, 10).float()
    assert float(L.categorical_mi_lower_bound(imperfect, codes)) < math.log(10) - 0.1
    uniform_q = torch.zeros(200, 10)
    assert float(L.categorical_mi_lower_bound(uniform_q, codes)) == pytest.approx(0.0, abs=1e-6)
    prior = torch.tensor([0.5, 0.25, 0.25])
    c = torch.tensor([0, 0, 1, 2])
    h = -(prior * prior.log()).sum()
    assert float(L.categorical_mi_lower_bound(torch.eye(3)[c] * 1e4, c, prior)) == pytest.approx(float(h), abs=1e-4)


def test_categorical_mi_on_data_known_answers():
    sure = torch.nn.functional.one_hot(torch.arange(12) % 4, 4).float() * 1e4  # sure and balanced: log 4
    assert float(L.categorical_mi_on_data(sure)) == pytest.approx(math.log(4), abs=1e-5)
    assert float(L.categorical_mi_on_data(torch.zeros(8, 4))) == pytest.approx(0.0, abs=1e-6)  # no information
    collapsed = torch.nn.functional.one_hot(torch.zeros(8, dtype=torch.long), 4).float() * 1e4
    assert float(L.categorical_mi_on_data(collapsed)) == pytest.approx(0.0, abs=1e-5)  # sure but one value
    # two inputs: p = (0.75, 0.25) and (0.25, 0.75): H(mean) = log 2, E[H] = H(0.75, 0.25)
    logits = torch.log(torch.tensor([[0.75, 0.25], [0.25, 0.75]]))
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert float(L.categorical_mi_on_data(logits)) == pytest.approx(math.log(2) - h, abs=1e-6)


def test_paired_categorical_mi_known_answers():
    codes = torch.arange(12) % 4
    sure = torch.nn.functional.one_hot(codes, 4).float() * 1e4
    assert float(L.paired_categorical_mi(sure, sure)) == pytest.approx(math.log(4), abs=1e-5)
    # views that disagree by a 4-cycle of code values: the symmetrised joint puts 1/8 on (i, i±1),
    # so each code leaves two equally likely partners and log 4 − log 2 remains; the same code is rewarded
    assert float(L.paired_categorical_mi(sure, sure[:, [1, 2, 3, 0]])) == pytest.approx(math.log(2), abs=1e-5)
    # independent views: every pair of codes equally often, zero information
    a = torch.nn.functional.one_hot(torch.arange(16) % 4, 4).float() * 1e4
    b = torch.nn.functional.one_hot(torch.arange(16) // 4, 4).float() * 1e4
    assert float(L.paired_categorical_mi(a, b)) == pytest.approx(0.0, abs=1e-5)
    assert float(L.paired_categorical_mi(torch.zeros(5, 3), torch.zeros(5, 3))) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same logits shape"):
        L.paired_categorical_mi(torch.zeros(5, 3), torch.zeros(5, 4))


def test_infogan_gaussian_bound_is_tight_for_the_true_posterior():
    # c ~ N(0,1), x = c + noise(σ_n): I(c; x) = ½ log(1 + 1/σ_n²); the exact posterior attains it
    g = torch.Generator().manual_seed(0)
    n, s2n = 400_000, 0.25
    c = torch.randn(n, 1, generator=g, dtype=torch.float64)
    x = c + math.sqrt(s2n) * torch.randn(n, 1, generator=g, dtype=torch.float64)
    h_c = 0.5 * math.log(2 * math.pi * math.e)
    post_mean, post_var = x / (1 + s2n), s2n / (1 + s2n)
    bound = L.gaussian_mi_lower_bound(post_mean, torch.full_like(x, math.log(post_var)), c, h_c)
    true_mi = 0.5 * math.log(1 + 1 / s2n)
    assert float(bound) == pytest.approx(true_mi, abs=0.01)
    worse = L.gaussian_mi_lower_bound(0.5 * post_mean, torch.full_like(x, math.log(post_var)), c, h_c)
    assert float(worse) < true_mi - 0.1


def test_infogan_loss_terms():
    obj = L.InfoGANLoss(lambda_cat=1.0, lambda_cont=0.5)
    fake = torch.zeros(4)
    codes = torch.tensor([0, 1, 0, 1])
    r = obj.generator_loss(fake, [torch.eye(2)[codes] * 1e4], [codes])
    assert float(r.terms["info"]) == pytest.approx(math.log(2), abs=1e-4)
    torch.testing.assert_close(r.total, r.terms["gen"] - r.terms["info"])
    d = obj.discriminator_loss(torch.zeros(4), torch.zeros(4))
    assert float(d.total) == pytest.approx(2 * math.log(2), rel=1e-6)


def test_build_objective_errors_name_the_fix():
    assert isinstance(L.build_objective("beta_tcvae", beta=2.0), L.BetaTCVAELoss)
    with pytest.raises(ValueError, match="choose one of"):
        L.build_objective("nope")
    with pytest.raises(ValueError, match="bad arguments"):
        L.build_objective("beta_vae", bogus=1)


def test_tc_batch_estimates_the_pair_terms_on_a_random_subset():
    x, recon, mu, lv, z = _batch(B=64, K=4)
    full = L.BetaTCVAELoss(beta=6.0, dataset_size=1000)(x, recon, mu, lv, z)
    same = L.BetaTCVAELoss(beta=6.0, dataset_size=1000, tc_batch=64)(x, recon, mu, lv, z)
    torch.testing.assert_close(same.total, full.total)  # M ≥ B: the whole batch, no draw
    torch.manual_seed(3)
    sub = L.BetaTCVAELoss(beta=6.0, dataset_size=1000, tc_batch=16)(x, recon, mu, lv, z)
    torch.manual_seed(3)
    idx = torch.randperm(64)[:16]
    joint, marg = L.log_qz(z[idx], mu[idx], lv[idx], 1000, "mss")
    # TC exactly as a batch of those 16 would estimate it ...
    torch.testing.assert_close(sub.terms["tc"], (joint - marg.sum(1)).mean().float())
    torch.testing.assert_close(sub.terms["tc"], L.tc_decomposition(z[idx], mu[idx], lv[idx], 1000)["tc"].float())
    # ... while MI + TC + DWKL is still the whole batch's KL estimate
    kl_est = (L.gaussian_log_density(z, mu, lv).sum(1) - L.gaussian_log_density(z, 0 * z, 0 * z).sum(1)).mean()
    torch.testing.assert_close(sub.terms["mi"] + sub.terms["tc"] + sub.terms["dwkl"], kl_est, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(sub.terms["tc"], full.terms["tc"])
    with pytest.raises(ValueError, match="tc_batch must be ≥ 2"):
        L.BetaTCVAELoss(dataset_size=1000, tc_batch=1)


def test_tc_batch_gradient_reaches_every_row_through_the_kl():
    x, recon, mu, lv, z = _batch(B=32, K=3)
    mu = mu.clone().requires_grad_(True)
    zz = mu + torch.exp(0.5 * lv) * 0.1
    L.BetaTCVAELoss(beta=6.0, dataset_size=1000, tc_batch=8)(x, recon, mu, lv, zz).total.backward()
    assert (mu.grad.abs().sum(1) > 0).all()


def test_tc_batch_head_recovers_independent_sources():
    # known answer: 4 independent uniform sources mixed linearly into 16 dimensions; a β-TCVAE
    # head whose TC is estimated on 128 of each 1024 batch still finds them one per latent (the
    # whole-batch estimator reaches the same 0.99 in 30× the time; benchmarks/RESULTS.md)
    from scipy.optimize import linear_sum_assignment

    from probe_disentangle.heads import VAEHead, VAEHeadConfig
    from probe_disentangle.train import TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    s = (torch.rand(20000, 4, generator=g) * 2 - 1) * math.sqrt(3)
    x = s @ torch.randn(4, 16, generator=g) + 0.05 * torch.randn(20000, 16, generator=g)
    torch.manual_seed(0)
    head = VAEHead(
        VAEHeadConfig(
            d_in=16,
            latent_dim=6,
            hidden=64,
            objective="beta_tcvae",
            objective_args={"beta": 6.0, "dataset_size": 20000, "tc_batch": 128},
        )
    )
    Trainer(head, TrainConfig(steps=1000, batch_size=1024, lr=2e-3, progress=False)).fit(x)
    head.eval()
    with torch.no_grad():
        mu = head.encode(x[:4000])[0]
    corr = torch.corrcoef(torch.cat([mu, s[:4000]], 1).T)[:6, 6:].abs().nan_to_num().numpy()
    rows, cols = linear_sum_assignment(-corr)
    assert corr[rows, cols].mean() > 0.95


def test_beta_tcvae_needs_a_finite_dataset_size():
    x, recon, mu, lv, z = _batch()
    with pytest.raises(ValueError, match="needs dataset_size"):
        L.BetaTCVAELoss()(x, recon, mu, lv, z)
    with pytest.raises(ValueError, match="finite"):
        L.BetaTCVAELoss(dataset_size=math.inf)


# ------------------------------------------------------------------ the posterior bank


def _narrow_posteriors(n, dependent, sd=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, 2, generator=g)
    if dependent:
        mu[:, 1] = mu[:, 0]
    return mu, torch.full((n, 2), 2 * math.log(sd))


@pytest.mark.parametrize("dependent", [False, True])
def test_bank_tc_matches_the_closed_form_where_a_small_batch_cannot(dependent):
    # known answer: means u ~ N(0, I) (or both coordinates the same u), posteriors N(u, 0.1²), so
    # q(z) is Gaussian with correlation ρ = 0 (or 1/1.01) and TC = −½ log(1 − ρ²): 0 or 1.963 nats
    true = -0.5 * math.log(1 - (1 / 1.01) ** 2) if dependent else 0.0
    with_bank, batch_only = [], []
    for rep in range(8):
        mu, lv = _narrow_posteriors(64, dependent, seed=rep)
        z = mu + 0.1 * torch.randn(64, 2, generator=torch.Generator().manual_seed(100 + rep))
        bank = _narrow_posteriors(8192, dependent, seed=1000 + rep)
        with_bank.append(float(L.tc_decomposition(z, mu, lv, 737280, bank=bank)["tc"]))
        batch_only.append(float(L.tc_decomposition(z, mu, lv, 737280)["tc"]))
    assert abs(sum(with_bank) / 8 - true) < 0.1
    if not dependent:  # 64 sharp posteriors leave q(z) unsampled between them: biased by > 1 nat
        assert abs(sum(batch_only) / 8 - true) > 1.0


def test_bank_estimator_weights_and_gradients():
    x, recon, mu, lv, z = _batch(B=8, K=3)
    bank_mu, bank_lv = _rand(5, 3, seed=9).float().requires_grad_(True), torch.zeros(5, 3, requires_grad=True)
    mu = mu.clone().requires_grad_(True)
    joint, marg = L.log_qz_bank(z, mu, lv, bank_mu, bank_lv, 1000)
    # by hand: own posterior 1/N, each of the other 12 references (N − 1)/(N·12)
    refs_mu, refs_lv = torch.cat([mu, bank_mu]), torch.cat([lv, bank_lv])
    t = L.gaussian_log_density(z[:, None], refs_mu[None], refs_lv[None])
    w = torch.full((8, 13), 999 / (1000 * 12))
    w[range(8), range(8)] = 1 / 1000
    torch.testing.assert_close(joint, torch.logsumexp(t.sum(-1) + w.log(), 1))
    torch.testing.assert_close(marg, torch.logsumexp(t + w.log()[..., None], 1))
    (joint.sum() + marg.sum()).backward()
    assert mu.grad.abs().sum() > 0 and bank_mu.grad is None and bank_lv.grad is None  # the bank is constant
    with pytest.raises(ValueError, match="must both be"):
        L.log_qz_bank(z, mu, lv, bank_mu[:, :2], bank_lv[:, :2], 1000)
    with pytest.raises(ValueError, match="smaller bank"):
        L.log_qz_bank(z, mu, lv, torch.zeros(1 << 22, 3), torch.zeros(1 << 22, 3), 1e7)


def test_beta_tcvae_bank_keeps_the_newest_posteriors_and_never_its_own():
    loss = L.BetaTCVAELoss(dataset_size=1000, bank=10, latent_dim=3)
    batches = [_batch(B=4, K=3, seed=s) for s in range(3)]
    x, recon, mu, lv, z = batches[0]
    plain = L.BetaTCVAELoss(dataset_size=1000)(x, recon, mu, lv, z)
    torch.testing.assert_close(loss(x, recon, mu, lv, z).total, plain.total)  # empty bank: plain MSS
    for b in batches[1:]:
        loss(*b)
    assert loss.bank_state.tolist() == [10, 2]  # 12 pushed into 10 slots: full, next slot 2
    newest = torch.cat([b[2] for b in batches])[-10:]  # the last 10 means, in ring order
    torch.testing.assert_close(loss.bank_mu, torch.cat([newest[-2:], newest[:-2]]))
    # the second batch saw the first as its only extra references
    fresh = L.BetaTCVAELoss(dataset_size=1000, bank=10, latent_dim=3)
    fresh(*batches[0])
    got = fresh(*batches[1]).terms["tc"]
    want = L.tc_decomposition(*batches[1][4:], *batches[1][2:4], 1000, bank=(batches[0][2], batches[0][3]))["tc"]
    torch.testing.assert_close(got, want)
    with torch.no_grad():  # evaluation does not fill the bank
        fresh(*batches[2])
    assert fresh.bank_state.tolist() == [8, 8]
    with pytest.raises(ValueError, match="needs latent_dim"):
        L.BetaTCVAELoss(dataset_size=1000, bank=10)
    with pytest.raises(ValueError, match="whole number"):
        L.BetaTCVAELoss(dataset_size=1000, bank=-1, latent_dim=3)


def test_grouped_tc_counts_dependence_between_groups_only():
    """Group size 1 is the β-TCVAE decomposition; one group holding every latent has no TC; the
    three terms always sum to the same KL estimate; two latents that move together cost TC
    ungrouped but not when they share a group."""
    torch.manual_seed(0)
    z, mu, lv = torch.randn(32, 6), torch.randn(32, 6), 0.3 * torch.randn(32, 6) - 2
    ref = L.tc_decomposition(z, mu, lv, 1000.0, backend="dense")
    one = L.grouped_tc_decomposition(z, mu, lv, 1000.0, 1)
    for k in ref:
        assert torch.allclose(ref[k], one[k], atol=1e-5), k
    allg = L.grouped_tc_decomposition(z, mu, lv, 1000.0, 6)
    assert abs(float(allg["tc"])) < 1e-5
    total = sum(float(ref[k]) for k in ref)
    for g in (2, 3, 6):
        parts = L.grouped_tc_decomposition(z, mu, lv, 1000.0, g)
        assert sum(float(v) for v in parts.values()) == pytest.approx(total, abs=1e-3)
    # latents 0 and 1 equal (a plane holding one factor on its diagonal), the rest independent
    base = torch.randn(256, 4)
    mu2 = torch.cat([base[:, :1], base[:, :1], base[:, 1:]], 1)
    lv2 = torch.full_like(mu2, -6.0)
    z2 = mu2 + (0.5 * lv2).exp() * torch.randn_like(mu2)
    flat = L.grouped_tc_decomposition(z2, mu2, lv2, 10_000.0, 1)["tc"]
    paired = L.grouped_tc_decomposition(z2[:, :4], mu2[:, :4], lv2[:, :4], 10_000.0, 2)["tc"]
    assert float(flat) > 1.0 and float(paired) < 0.5 * float(flat)
    with pytest.raises(ValueError, match="group_size"):
        L.grouped_tc_decomposition(z, mu, lv, 1000.0, 4)


def test_kl_normal_normal_closed_form_and_ada_gvae_share():
    mu1, lv1 = torch.tensor([[0.3, -1.0]]), torch.tensor([[0.2, -0.5]])
    mu2, lv2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[-0.4, 0.1]])
    p = torch.distributions.Normal(mu1, (0.5 * lv1).exp())
    q = torch.distributions.Normal(mu2, (0.5 * lv2).exp())
    torch.testing.assert_close(L.kl_normal_normal(mu1, lv1, mu2, lv2), torch.distributions.kl_divergence(p, q))
    # per pair, the latents whose posteriors differ least (KL below the midpoint of max and min) are shared
    a = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 0.1, 3.0, 0.0]])
    z = torch.zeros(1, 4)
    assert L.ada_gvae_share(a, z, b, z).tolist() == [[True, True, False, True]]


def test_ada_gvae_posteriors_average_the_shared_latents_only():
    mu1, mu2 = torch.tensor([[0.0, 0.0, 2.0]]), torch.tensor([[0.2, 0.0, -2.0]])
    lv1, lv2 = torch.log(torch.tensor([[1.0, 0.5, 1.0]])), torch.log(torch.tensor([[3.0, 0.5, 1.0]]))
    m1, l1, m2, l2, share = L.ada_gvae_posteriors(mu1, lv1, mu2, lv2)
    assert share.tolist() == [[True, True, False]]
    torch.testing.assert_close(m1, torch.tensor([[0.1, 0.0, 2.0]]))
    torch.testing.assert_close(m2, torch.tensor([[0.1, 0.0, -2.0]]))
    torch.testing.assert_close(l1.exp(), torch.tensor([[2.0, 0.5, 1.0]]))  # the mean of the variances
    torch.testing.assert_close(l2.exp(), torch.tensor([[2.0, 0.5, 1.0]]))
