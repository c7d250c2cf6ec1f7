"""Fused Triton MSS log-sum-exp kernels vs a dense PyTorch reference.

Runs on CPU through Triton's interpreter (TRITON_INTERPRET=1, set before triton is imported);
skipped when triton is not installed. ``test_cuda_matches_dense`` runs the compiled kernels on a
GPU when one is present and the interpreter is off (``TRITON_INTERPRET=0 pytest -m cuda ...``).
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import math  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from probe_disentangle import kernels  # noqa: E402

LOG_2PI = math.log(2.0 * math.pi)
INF = math.inf
INTERPRET = kernels._interpret_mode()
DEVICE = "cpu" if INTERPRET else "cuda"

if not INTERPRET and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET is off and no CUDA GPU is available", allow_module_level=True)


def dense_logw(B: int, d: float, n: float, o: float) -> torch.Tensor:
    lw = torch.full((B, B), o, dtype=torch.float64)
    if B > 1:
        lw[torch.arange(B), (torch.arange(B) + 1) % B] = n
    lw[torch.arange(B), torch.arange(B)] = d
    return lw


def dense_reference(z, mu, logvar, d, n, o):
    """Explicit [B, B, K] tensor and [B, B] weight matrix, in float64."""
    z, mu, logvar = z.double(), mu.double(), logvar.double()
    t = -0.5 * (LOG_2PI + logvar[None] + (z[:, None] - mu[None]) ** 2 * torch.exp(-logvar[None]))
    lw = dense_logw(z.shape[0], d, n, o).to(z.device)
    marg = torch.logsumexp(lw[:, :, None] + t, dim=1)
    joint = torch.logsumexp(lw + t.sum(-1), dim=1)
    return joint, marg


def make_inputs(B, K, seed, dtype=torch.float32, device=DEVICE):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(B, K, generator=g)
    logvar = 0.6 * torch.randn(B, K, generator=g) - 0.5
    z = mu + torch.exp(0.5 * logvar) * torch.randn(B, K, generator=g)  # z_i ~ q(z | x_i)
    return [x.to(device=device, dtype=dtype).requires_grad_(True) for x in (z, mu, logvar)]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b| (the reference's scale), over finite reference entries."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    fin = torch.isfinite(b)
    assert torch.equal(fin, torch.isfinite(a)), "finite/infinite pattern differs"
    if not fin.any():
        return 0.0
    return ((a - b)[fin].abs().max() / b[fin].abs().max().clamp_min(1e-30)).item()


def mss_weights(B: int, N: float) -> tuple[float, float, float]:
    M = B - 1
    d = -math.log(N)
    strat = (N - M) / (N * M)
    n = math.log(strat) if strat > 0 else -INF
    o = -math.log(M) if B > 2 else -INF
    return d, n, o


# compiled GPU kernels use ex2.approx / FMA contraction: allow a little more there
TOL = 1e-5 if INTERPRET else 3e-5


def check(B, K, d, n, o, seed=0, tol=TOL, dtype=torch.float32):
    # gradients are returned in the input dtype: fp16/bf16 rounding bounds their accuracy
    grad_tol = max(tol, 2 * torch.finfo(dtype).eps)
    z, mu, lv = make_inputs(B, K, seed, dtype)
    joint, marg = kernels.mss_logsumexp_fused(z, mu, lv, d, n, o)
    assert joint.shape == (B,) and marg.shape == (B, K)
    assert joint.dtype == torch.promote_types(dtype, torch.float32)
    zr, mur, lvr = (x.detach().double().requires_grad_(True) for x in (z, mu, lv))
    rj, rm = dense_reference(zr, mur, lvr, d, n, o)
    errs = {"joint": rel_err(joint, rj), "marg": rel_err(marg, rm)}

    g = torch.Generator().manual_seed(seed + 1)
    gj = torch.randn(B, generator=g, dtype=torch.float64).to(z.device)
    gm = torch.randn(B, K, generator=g, dtype=torch.float64).to(z.device)
    grads = torch.autograd.grad((joint, marg), (z, mu, lv), (gj.to(joint.dtype), gm.to(marg.dtype)))
    rgrads = torch.autograd.grad((rj, rm), (zr, mur, lvr), (gj, gm))
    for name, a, b, x in zip(("z", "mu", "logvar"), grads, rgrads, (z, mu, lv), strict=True):
        assert a.dtype == x.dtype and a.shape == x.shape
        assert torch.isfinite(a).all()
        errs["grad_" + name] = rel_err(a, b)
    assert max(errs["joint"], errs["marg"]) <= tol, errs
    assert max(errs.values()) <= grad_tol, errs
    return errs


CASES = [
    # (B, K, weights): MSS (N finite), MWS-style equal weights, -inf weights
    (1, 1, (0.0, 0.0, 0.0)),
    (1, 10, (-3.0, -1.0, -2.0)),
    (2, 3, mss_weights(2, 100.0)),  # log_w_other = -inf (B == 2)
    (5, 10, mss_weights(5, 1000.0)),
    (5, 32, (-math.log(5),) * 3),  # MWS
    (37, 3, mss_weights(37, 5000.0)),
    (37, 32, (-INF, -math.log(36), -math.log(36))),  # N = inf: diagonal weight 0
    (64, 10, (-math.log(100.0), -INF, -math.log(63))),  # log_w_next = -inf
    (64, 1, (-math.log(64),) * 3),  # MWS, K = 1
    (130, 10, mss_weights(130, 60000.0)),
    (130, 32, (-math.log(130),) * 3),  # MWS
]


@pytest.mark.parametrize("B,K,w", CASES, ids=[f"B{b}-K{k}" for b, k, _ in CASES])
def test_matches_dense_reference(B, K, w):
    check(B, K, *w)


def test_k64_and_odd_k():
    check(37, 64, *mss_weights(37, 1000.0))
    check(5, 17, *mss_weights(5, 1000.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_inputs(dtype):
    # the reference is computed from the same (rounded) inputs, so fp32 accuracy is expected
    check(37, 10, *mss_weights(37, 1000.0), dtype=dtype)


def test_diagonal_weight_on_the_diagonal_not_column_zero():
    B, K = 7, 3
    z, mu, lv = make_inputs(B, K, seed=3)
    # only the diagonal has weight: joint[i] = Σ_k t[i, i, k], marg[i, k] = t[i, i, k]
    joint, marg = kernels.mss_logsumexp_fused(z, mu, lv, 0.0, -INF, -INF)
    t = -0.5 * (LOG_2PI + lv[None] + (z[:, None] - mu[None]) ** 2 * torch.exp(-lv[None]))
    t = t.detach().double()
    idx = torch.arange(B)
    assert rel_err(marg, t[idx, idx]) < 1e-5
    assert rel_err(joint, t[idx, idx].sum(-1)) < 1e-5
    assert (joint.double() - t[:, 0].sum(-1)).abs()[1:].min() > 1e-3  # not column 0
    # only the (i, (i+1) % B) entry has weight
    joint, marg = kernels.mss_logsumexp_fused(z, mu, lv, -INF, 0.0, -INF)
    nxt = (idx + 1) % B
    assert rel_err(marg, t[idx, nxt]) < 1e-5
    assert rel_err(joint, t[idx, nxt].sum(-1)) < 1e-5


def test_single_gradient_paths():
    B, K = 37, 10
    w = mss_weights(B, 1000.0)
    z, mu, lv = make_inputs(B, K, seed=5)
    zr, mur, lvr = (x.detach().double().requires_grad_(True) for x in (z, mu, lv))
    rj, rm = dense_reference(zr, mur, lvr, *w)
    joint, marg = kernels.mss_logsumexp_fused(z, mu, lv, *w)
    # joint only (g_marg is None), marg only (g_joint is None)
    for out, ref in ((joint, rj), (marg, rm)):
        grads = torch.autograd.grad(out.sum(), (z, mu, lv), retain_graph=True)
        rgrads = torch.autograd.grad(ref.sum(), (zr, mur, lvr), retain_graph=True)
        for a, b in zip(grads, rgrads, strict=True):
            assert rel_err(a, b) < 1e-5
    # gradient w.r.t. z only (the mu/logvar pass is skipped)
    z2 = z.detach().requires_grad_(True)
    j2, _ = kernels.mss_logsumexp_fused(z2, mu.detach(), lv.detach(), *w)
    (gz,) = torch.autograd.grad(j2.sum(), z2)
    (rgz,) = torch.autograd.grad(rj.sum(), zr)
    assert rel_err(gz, rgz) < 1e-5


def test_all_minus_inf_row_gives_minus_inf_and_zero_grads():
    z, mu, lv = make_inputs(1, 4, seed=7)
    joint, marg = kernels.mss_logsumexp_fused(z, mu, lv, -INF, 0.0, 0.0)  # B == 1: only diag
    assert torch.isneginf(joint).all() and torch.isneginf(marg).all()
    grads = torch.autograd.grad((joint.sum() * 0 + marg.sum() * 0), (z, mu, lv), allow_unused=True)
    for g in grads:
        assert g is not None and torch.equal(g, torch.zeros_like(g))


def test_large_log_densities_no_overflow():
    # far-apart posteriors: off-diagonal log densities around -1e3; must stay finite, no NaN
    B, K = 9, 5
    z, mu, lv = make_inputs(B, K, seed=11)
    with torch.no_grad():
        mu.mul_(20.0)
        z.copy_(mu + 0.1 * torch.randn(B, K, generator=torch.Generator().manual_seed(0)).to(z.device))
    joint, marg = kernels.mss_logsumexp_fused(z, mu, lv, *mss_weights(B, 100.0))
    rj, rm = dense_reference(z, mu, lv, *mss_weights(B, 100.0))
    assert rel_err(joint, rj) < 1e-5 and rel_err(marg, rm) < 1e-5
    grads = torch.autograd.grad((joint.sum() + marg.sum()), (z, mu, lv))
    assert all(torch.isfinite(g).all() for g in grads)


def test_validation_errors():
    z = torch.zeros(4, 3, device=DEVICE)
    with pytest.raises(ValueError, match="one shape"):
        kernels.mss_logsumexp_fused(z, torch.zeros(4, 2, device=DEVICE), z, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        kernels.mss_logsumexp_fused(z[0], z[0], z[0], 0.0, 0.0, 0.0)
    big = torch.zeros(4, kernels.MAX_K + 1, device=DEVICE)
    with pytest.raises(ValueError, match="blocked"):
        kernels.mss_logsumexp_fused(big, big, big, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="floating"):
        zi = torch.zeros(4, 3, dtype=torch.long, device=DEVICE)
        kernels.mss_logsumexp_fused(zi, zi, zi, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="log_w_other"):
        kernels.mss_logsumexp_fused(z, z, z, 0.0, 0.0, math.nan)
    with pytest.raises(ValueError, match="empty"):
        e = torch.zeros(0, 3, device=DEVICE)
        kernels.mss_logsumexp_fused(e, e, e, 0.0, 0.0, 0.0)
    if torch.cuda.is_available() and DEVICE == "cpu":
        with pytest.raises(ValueError, match="one device"):
            kernels.mss_logsumexp_fused(z, z.cuda(), z, 0.0, 0.0, 0.0)


def test_triton_available_and_block_sizes():
    assert kernels.triton_available()
    for K in (1, 3, 8, 10, 16, 32, 33, 64):
        k_pad, own, stream = kernels._block_sizes(K)
        assert k_pad >= K and k_pad & (k_pad - 1) == 0
        assert own & (own - 1) == 0 and stream & (stream - 1) == 0
        assert own * stream * k_pad <= 8192


@pytest.mark.cuda
@pytest.mark.skipif(INTERPRET or not torch.cuda.is_available(), reason="compiled GPU kernels only")
def test_cuda_matches_dense():
    for B, K in ((1000, 64), (513, 10), (2048, 32)):
        check(B, K, *mss_weights(B, 50000.0))
