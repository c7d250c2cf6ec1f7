"""Fused Triton kernels for the β-TCVAE minibatch log-density log-sum-exps (forward and backward).

What is computed
----------------
For ``z, mu, logvar`` of shape ``[B, K]`` and the never-materialised log-weight matrix
``logw[i, j] = log_w_diag`` if ``j == i``, ``log_w_next`` if ``j == (i + 1) % B`` (only for B > 1;
the diagonal wins for B == 1), ``log_w_other`` otherwise, with

    t[i, j, k] = −½ (log 2π + logvar[j, k] + (z[i, k] − mu[j, k])² · exp(−logvar[j, k])),

:func:`mss_logsumexp_fused` returns

    joint[i]   = logsumexp_j (logw[i, j] + Σ_k t[i, j, k])     [B]
    marg[i, k] = logsumexp_j (logw[i, j] + t[i, j, k])          [B, K]

and is differentiable w.r.t. ``z``, ``mu`` and ``logvar``. Neither the ``[B, B, K]`` nor the
``[B, B]`` tensor is ever stored: memory is O(B·K) in forward and backward (only ``z``, ``mu``,
``logvar``, ``joint`` and ``marg`` are saved for backward).

Kernel structure
----------------
Every kernel works on register tiles ``[BLOCK_I, BLOCK_J, K_PAD]`` (i = sample, j = posterior,
all of K padded to a power of two inside one program, so Σ_k is complete inside a tile), fp32
accumulation, masked loads/stores for B not a multiple of the block and K < K_PAD.

* forward, grid ``cdiv(B, BLOCK_I)``: a program owns BLOCK_I rows of z and streams over j in
  blocks of BLOCK_J, keeping flash-attention style online log-sum-exp state (running max and
  rescaled sum) ``[BLOCK_I, K_PAD]`` for marg and ``[BLOCK_I]`` for joint.
* backward pass 1 (grad_z), grid ``cdiv(B, BLOCK_I)``: like forward, recomputes the tile and the
  softmax weights ``s_m = exp(logw + t − marg)``, ``s_j = exp(logw + Σ_k t − joint)`` from the
  saved log-sum-exps, ``c = g_marg·s_m + g_joint·s_j`` and accumulates ``grad_z = −Σ_j c·d·p``.
* backward pass 2 (grad_mu, grad_logvar), grid ``cdiv(B, BLOCK_J)``: a program owns BLOCK_J
  posteriors and streams over i (flash attention's dK/dV pass): ``grad_mu = Σ_i c·d·p``,
  ``grad_logvar = Σ_i c·(½·d²·p − ½)``. No atomics, so the backward is deterministic.
  Constexpr flags skip the ``s_m`` (per-element exp) or ``s_j`` work when an upstream gradient
  is ``None``; a pass is skipped entirely when autograd does not need its inputs' gradients.

-inf weights are handled with a "safe max" (a running max of −inf is replaced by 0 before it is
subtracted), so no ``−inf − (−inf)`` ever occurs: a row with at least one finite term never
yields NaN; a row with no finite term yields −inf and zero gradients.

Block sizes (host-side heuristic :func:`_block_sizes`)
------------------------------------------------------
The tile is elementwise work (no tensor cores), so it is sized by registers: ``_TILE_ELEMS`` =
8192 fp32 elements per tile with ``_NUM_WARPS`` = 8 (32 elements per thread per live 3-D
temporary). The owning dimension (rows a program keeps) is the larger one because each streamed
block is re-read once per program: L2 traffic ∝ 1/BLOCK_OWN. The streamed dimension is kept ≥ 8
because the online rescale costs one extra exp per ``[own, K]`` state element per streamed block
(1/BLOCK_STREAM of the main exps).

    K_PAD   BLOCK_OWN  BLOCK_STREAM   (forward & grad_z: OWN = BLOCK_I; grad_mu/logvar: OWN = BLOCK_J)
    4          32         32          (K_PAD is at least 4, so K = 1..3 waste some lanes)
    8          32         32
    16         32         16
    32         16         16
    64         16          8

Ahead-of-time compilation for sm_90 with Triton 3.9 (no GPU needed; ``cuobjdump -res-usage``)
gives 190–255 registers per thread, no local-memory spills, for all three kernels at K = 10, 32,
64: one 8-warp program per SM, latency hidden by in-thread ILP (flash-attention-like). With
4096-element tiles the forward / grad_mu kernels drop to ≈ 110–160 registers (two programs per
SM) at the price of more rescale exps; which wins was NOT measured (no GPU was available when
this was written): ``_TILE_ELEMS`` and ``_NUM_WARPS`` are the knobs for a GPU sweep.

K ≤ 64 is supported (``MAX_K``); larger K raises ``ValueError`` (use the blocked PyTorch
backend of :func:`probe_disentangle.losses.log_qz`).

Cost model (for judging a GPU benchmark; E = B²·K pairwise elements)
--------------------------------------------------------------------
* forward: ≈ 10 FLOP + 1 exp per element (sub, 2 mul, add, scale, add logw, max, sub, sum for
  marg, sum over k for joint) plus (1/BLOCK_J)·E rescale exps and O(B²) joint work: ≈ 10·E FLOP,
  ≈ 1.1·E exp. HBM compulsory traffic 3·B·K·s_in bytes read + 4·B·(K + 1) written; each program
  re-reads mu/logvar (8·B·K bytes, mostly from L2): ≈ 8·B²·K / BLOCK_I bytes of L2 traffic.
* backward: two recompute passes, ≈ 14 + 19 FLOP and 2 exp per element (one exp per element for
  s_m in each pass; s_j is O(B²)): ≈ 33·E FLOP, ≈ 2·E exp; HBM compulsory ≈ 3·B·K·s_in +
  4·(2·B·K + 2·B) read (saved outputs and upstream grads) + 3·B·K·4 written; L2 traffic
  ≈ 8·B²·K / BLOCK_I + ≈ 16·B²·K / BLOCK_J bytes.
* e.g. B = 16384, K = 64: E = 1.7e10 → forward ≈ 1.7e11 FLOP + 1.9e10 exp (exp/SFU-bound on an
  H100: ~16 ex2 per SM per clock ≈ 3.7e12/s → ~5 ms lower bound), backward ≈ 5.7e11 FLOP +
  3.4e10 exp (~10 ms lower bound).

Precision and dtypes
--------------------
Inputs of any floating dtype (fp16, bf16, fp32, fp64) are loaded and computed in fp32.
Outputs are fp32 for fp16/bf16/fp32 inputs and fp64 for fp64 inputs (``promote_types(dtype,
float32)``, matching :func:`probe_disentangle.losses.log_qz`), but their values are fp32-accurate.
Gradients are returned in the inputs' dtype. If the three inputs differ in dtype they are first
cast (differentiably) to their promoted dtype.

Triton is imported lazily: importing this module never needs Triton. Kernels are compiled on
first use, for the mode (GPU or ``TRITON_INTERPRET=1`` CPU interpreter) active at that moment.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["MAX_K", "mss_logsumexp_fused", "triton_available"]

MAX_K = 64
"""Largest latent size K the fused kernels support (all of K lives in one tile)."""

tl = None  # triton.language, bound by _get_kernels() before any kernel is compiled

_NUM_WARPS = 8
_TILE_ELEMS = 8192
_LOG_2PI = math.log(2.0 * math.pi)


def _interpret_mode() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def triton_available() -> bool:
    """True if Triton imports and either CUDA is available or ``TRITON_INTERPRET=1`` is set."""
    try:
        import triton  # noqa: F401
    except Exception:  # ImportError, or a broken install raising something else
        return False
    return _interpret_mode() or torch.cuda.is_available()


# --------------------------------------------------------------------------------------------
# Kernel sources. These are plain functions; _get_kernels() wraps them with triton.jit on first
# use (so the interpreter / GPU choice is made then, and importing this module needs no Triton).
# They reference the module-global ``tl``, bound at that time. Keep them free of helper calls.
# --------------------------------------------------------------------------------------------


def _mss_fwd_kernel(
    Z, MU, LV, JOINT, MARG,
    B, K,
    lw_diag, lw_next, lw_other,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, K_PAD: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    offs_i = pid * BLOCK_I + tl.arange(0, BLOCK_I)
    offs_k = tl.arange(0, K_PAD)
    mask_i = offs_i < B
    mask_k = offs_k < K
    mask_ik = mask_i[:, None] & mask_k[None, :]
    zi = tl.load(Z + offs_i[:, None] * K + offs_k[None, :], mask=mask_ik, other=0.0).to(tl.float32)
    i_next = offs_i + 1
    i_next = tl.where(i_next >= B, i_next - B, i_next)  # (i + 1) % B; equals i when B == 1

    m_marg = tl.full([BLOCK_I, K_PAD], float("-inf"), tl.float32)
    l_marg = tl.zeros([BLOCK_I, K_PAD], tl.float32)
    m_joint = tl.full([BLOCK_I], float("-inf"), tl.float32)
    l_joint = tl.zeros([BLOCK_I], tl.float32)

    for j0 in range(0, B, BLOCK_J):
        offs_j = j0 + tl.arange(0, BLOCK_J)
        mask_j = offs_j < B
        mask_jk = mask_j[:, None] & mask_k[None, :]
        ptr_j = offs_j[:, None] * K + offs_k[None, :]
        mu_j = tl.load(MU + ptr_j, mask=mask_jk, other=0.0).to(tl.float32)
        lv_j = tl.load(LV + ptr_j, mask=mask_jk, other=0.0).to(tl.float32)
        p_j = tl.exp(-lv_j)
        c_j = 1.8378770664093453 + lv_j  # log(2π) + logvar

        d = zi[:, None, :] - mu_j[None, :, :]
        t = -0.5 * (c_j[None, :, :] + d * d * p_j[None, :, :])
        t = tl.where(mask_k[None, None, :], t, 0.0)  # padded k contribute 0 to Σ_k

        is_diag = offs_i[:, None] == offs_j[None, :]
        is_next = i_next[:, None] == offs_j[None, :]
        lw = tl.where(is_diag, lw_diag, tl.where(is_next, lw_next, lw_other))
        lw = tl.where(mask_j[None, :], lw, float("-inf"))  # [BLOCK_I, BLOCK_J]

        # marg: online log-sum-exp over j per (i, k)
        x = lw[:, :, None] + t
        m_new = tl.maximum(m_marg, tl.max(x, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        l_marg = l_marg * tl.exp(m_marg - m_safe) + tl.sum(tl.exp(x - m_safe[:, None, :]), axis=1)
        m_marg = m_new

        # joint: online log-sum-exp over j per i
        s = tl.sum(t, axis=2) + lw
        mj_new = tl.maximum(m_joint, tl.max(s, axis=1))
        mj_safe = tl.where(mj_new == float("-inf"), 0.0, mj_new)
        l_joint = l_joint * tl.exp(m_joint - mj_safe) + tl.sum(tl.exp(s - mj_safe[:, None]), axis=1)
        m_joint = mj_new

    # an all −inf row (l == 0) gives −inf, never NaN (and no log(0) evaluation)
    marg = tl.where(l_marg > 0.0, m_marg + tl.log(tl.where(l_marg > 0.0, l_marg, 1.0)), float("-inf"))
    joint = tl.where(l_joint > 0.0, m_joint + tl.log(tl.where(l_joint > 0.0, l_joint, 1.0)), float("-inf"))
    tl.store(MARG + offs_i[:, None] * K + offs_k[None, :], marg, mask=mask_ik)
    tl.store(JOINT + offs_i, joint, mask=mask_i)


def _mss_bwd_dz_kernel(
    Z, MU, LV, JOINT, MARG, GJ, GM, GZ,
    B, K,
    lw_diag, lw_next, lw_other,
    HAS_GJ: tl.constexpr, HAS_GM: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, K_PAD: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    offs_i = pid * BLOCK_I + tl.arange(0, BLOCK_I)
    offs_k = tl.arange(0, K_PAD)
    mask_i = offs_i < B
    mask_k = offs_k < K
    mask_ik = mask_i[:, None] & mask_k[None, :]
    ptr_i = offs_i[:, None] * K + offs_k[None, :]
    zi = tl.load(Z + ptr_i, mask=mask_ik, other=0.0).to(tl.float32)
    i_next = offs_i + 1
    i_next = tl.where(i_next >= B, i_next - B, i_next)
    if HAS_GM:
        marg_i = tl.load(MARG + ptr_i, mask=mask_ik, other=0.0).to(tl.float32)
        marg_i = tl.where(marg_i == float("-inf"), 0.0, marg_i)
        gm_i = tl.load(GM + ptr_i, mask=mask_ik, other=0.0).to(tl.float32)
    if HAS_GJ:
        joint_i = tl.load(JOINT + offs_i, mask=mask_i, other=0.0).to(tl.float32)
        joint_i = tl.where(joint_i == float("-inf"), 0.0, joint_i)
        gj_i = tl.load(GJ + offs_i, mask=mask_i, other=0.0).to(tl.float32)

    acc = tl.zeros([BLOCK_I, K_PAD], tl.float32)
    for j0 in range(0, B, BLOCK_J):
        offs_j = j0 + tl.arange(0, BLOCK_J)
        mask_j = offs_j < B
        mask_jk = mask_j[:, None] & mask_k[None, :]
        ptr_j = offs_j[:, None] * K + offs_k[None, :]
        mu_j = tl.load(MU + ptr_j, mask=mask_jk, other=0.0).to(tl.float32)
        lv_j = tl.load(LV + ptr_j, mask=mask_jk, other=0.0).to(tl.float32)
        p_j = tl.exp(-lv_j)
        c_j = 1.8378770664093453 + lv_j

        d = zi[:, None, :] - mu_j[None, :, :]
        dp = d * p_j[None, :, :]
        t = -0.5 * (c_j[None, :, :] + d * dp)
        t = tl.where(mask_k[None, None, :], t, 0.0)

        is_diag = offs_i[:, None] == offs_j[None, :]
        is_next = i_next[:, None] == offs_j[None, :]
        lw = tl.where(is_diag, lw_diag, tl.where(is_next, lw_next, lw_other))
        lw = tl.where(mask_j[None, :], lw, float("-inf"))

        c = tl.zeros([BLOCK_I, BLOCK_J, K_PAD], tl.float32)
        if HAS_GM:
            c += gm_i[:, None, :] * tl.exp(lw[:, :, None] + t - marg_i[:, None, :])
        if HAS_GJ:
            s_j = tl.exp(tl.sum(t, axis=2) + lw - joint_i[:, None])
            c += (gj_i[:, None] * s_j)[:, :, None]
        c = tl.where(mask_j[None, :, None], c, 0.0)
        acc -= tl.sum(c * dp, axis=1)

    tl.store(GZ + ptr_i, acc, mask=mask_ik)


def _mss_bwd_dmu_kernel(
    Z, MU, LV, JOINT, MARG, GJ, GM, GMU, GLV,
    B, K,
    lw_diag, lw_next, lw_other,
    HAS_GJ: tl.constexpr, HAS_GM: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, K_PAD: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    offs_j = pid * BLOCK_J + tl.arange(0, BLOCK_J)
    offs_k = tl.arange(0, K_PAD)
    mask_j = offs_j < B
    mask_k = offs_k < K
    mask_jk = mask_j[:, None] & mask_k[None, :]
    ptr_j = offs_j[:, None] * K + offs_k[None, :]
    mu_j = tl.load(MU + ptr_j, mask=mask_jk, other=0.0).to(tl.float32)
    lv_j = tl.load(LV + ptr_j, mask=mask_jk, other=0.0).to(tl.float32)
    p_j = tl.exp(-lv_j)
    c_j = 1.8378770664093453 + lv_j

    acc_mu = tl.zeros([BLOCK_J, K_PAD], tl.float32)
    acc_lv = tl.zeros([BLOCK_J, K_PAD], tl.float32)
    for i0 in range(0, B, BLOCK_I):
        offs_i = i0 + tl.arange(0, BLOCK_I)
        mask_i = offs_i < B
        mask_ik = mask_i[:, None] & mask_k[None, :]
        ptr_i = offs_i[:, None] * K + offs_k[None, :]
        zi = tl.load(Z + ptr_i, mask=mask_ik, other=0.0).to(tl.float32)
        i_next = offs_i + 1
        i_next = tl.where(i_next >= B, i_next - B, i_next)

        d = zi[:, None, :] - mu_j[None, :, :]
        dp = d * p_j[None, :, :]
        t = -0.5 * (c_j[None, :, :] + d * dp)
        t = tl.where(mask_k[None, None, :], t, 0.0)

        is_diag = offs_i[:, None] == offs_j[None, :]
        is_next = i_next[:, None] == offs_j[None, :]
        lw = tl.where(is_diag, lw_diag, tl.where(is_next, lw_next, lw_other))
        lw = tl.where(mask_j[None, :], lw, float("-inf"))

        c = tl.zeros([BLOCK_I, BLOCK_J, K_PAD], tl.float32)
        if HAS_GM:
            marg_i = tl.load(MARG + ptr_i, mask=mask_ik, other=0.0).to(tl.float32)
            marg_i = tl.where(marg_i == float("-inf"), 0.0, marg_i)
            gm_i = tl.load(GM + ptr_i, mask=mask_ik, other=0.0).to(tl.float32)
            c += gm_i[:, None, :] * tl.exp(lw[:, :, None] + t - marg_i[:, None, :])
        if HAS_GJ:
            joint_i = tl.load(JOINT + offs_i, mask=mask_i, other=0.0).to(tl.float32)
            joint_i = tl.where(joint_i == float("-inf"), 0.0, joint_i)
            gj_i = tl.load(GJ + offs_i, mask=mask_i, other=0.0).to(tl.float32)
            s_j = tl.exp(tl.sum(t, axis=2) + lw - joint_i[:, None])
            c += (gj_i[:, None] * s_j)[:, :, None]
        # padded rows i >= B must not contribute (their weights/log-sum-exps are not real)
        c = tl.where(mask_i[:, None, None] & mask_j[None, :, None], c, 0.0)
        acc_mu += tl.sum(c * dp, axis=0)
        acc_lv += tl.sum(c * (0.5 * d * dp - 0.5), axis=0)

    tl.store(GMU + ptr_j, acc_mu, mask=mask_jk)
    tl.store(GLV + ptr_j, acc_lv, mask=mask_jk)


_KERNEL_CACHE: dict[bool, tuple] = {}


def _get_kernels():
    """(fwd, bwd_dz, bwd_dmu) JIT functions for the current mode (GPU or interpreter)."""
    mode = _interpret_mode()
    kernels = _KERNEL_CACHE.get(mode)
    if kernels is None:
        import triton
        import triton.language as triton_language

        global tl
        tl = triton_language
        kernels = tuple(triton.jit(fn) for fn in (_mss_fwd_kernel, _mss_bwd_dz_kernel, _mss_bwd_dmu_kernel))
        _KERNEL_CACHE[mode] = kernels
    return kernels


def _block_sizes(K: int) -> tuple[int, int, int]:
    """(K_PAD, BLOCK_OWN, BLOCK_STREAM): see the module docstring."""
    k_pad = max(4, 1 << (K - 1).bit_length())
    own = 16 if k_pad >= 32 else 32
    stream = min(32, max(1, _TILE_ELEMS // (own * k_pad)))
    return k_pad, own, stream


def _cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def _weights(log_w_diag: float, log_w_next: float, log_w_other: float) -> tuple[float, float, float]:
    out = []
    for name, w in (("log_w_diag", log_w_diag), ("log_w_next", log_w_next), ("log_w_other", log_w_other)):
        try:
            w = float(w)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a Python float (a log weight); got {w!r}") from exc
        if math.isnan(w) or w == math.inf:
            raise ValueError(f"{name}={w} is not a valid log weight; use a finite value or -inf (zero weight)")
        out.append(w)
    return out[0], out[1], out[2]


def _validate(z: Tensor, mu: Tensor, logvar: Tensor) -> None:
    for name, x in (("z", z), ("mu", mu), ("logvar", logvar)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor; got {x.dtype} (cast it with .float())")
    if z.ndim != 2 or z.shape != mu.shape or z.shape != logvar.shape:
        raise ValueError(
            f"z, mu, logvar must all be [batch, latent] of one shape; got {tuple(z.shape)}, "
            f"{tuple(mu.shape)}, {tuple(logvar.shape)}"
        )
    B, K = z.shape
    if B == 0 or K == 0:
        raise ValueError(f"empty input of shape {tuple(z.shape)}; need at least one sample and one latent")
    if K > MAX_K:
        raise ValueError(
            f"the fused kernel supports latent size K <= {MAX_K}; got K={K}. Use "
            "probe_disentangle.losses.log_qz(..., backend='blocked') for larger K"
        )
    if B * K >= 2**31:
        raise ValueError(f"B*K={B * K} overflows the kernel's int32 offsets; split the batch")
    if z.device != mu.device or z.device != logvar.device:
        raise ValueError(
            f"z, mu, logvar must be on one device; got {z.device}, {mu.device}, {logvar.device} "
            "(move them with .to(device))"
        )
    if not triton_available():
        raise RuntimeError(
            "the fused kernel needs Triton and a CUDA GPU (or TRITON_INTERPRET=1 for the CPU "
            "interpreter): pip install triton, or use log_qz(..., backend='blocked')"
        )
    if z.device.type != "cuda" and not _interpret_mode():
        raise ValueError(
            f"the fused Triton kernel runs on CUDA tensors; got device {z.device}. Move the tensors "
            "to the GPU, set TRITON_INTERPRET=1 (slow CPU interpreter), or use backend='blocked'"
        )


def _launch(z: Tensor, kernel, grid: int, args: tuple, **meta) -> None:
    if z.device.type == "cuda":
        with torch.cuda.device(z.device):
            kernel[(grid,)](*args, **meta)
    else:
        kernel[(grid,)](*args, **meta)


class _MssLogsumexp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, mu, logvar, lw_diag, lw_next, lw_other):  # type: ignore[override]
        z, mu, logvar = z.contiguous(), mu.contiguous(), logvar.contiguous()
        B, K = z.shape
        fwd, _, _ = _get_kernels()
        k_pad, own, stream = _block_sizes(K)
        joint = torch.empty(B, device=z.device, dtype=torch.float32)
        marg = torch.empty(B, K, device=z.device, dtype=torch.float32)
        _launch(
            z, fwd, _cdiv(B, own),
            (z, mu, logvar, joint, marg, B, K, lw_diag, lw_next, lw_other),
            BLOCK_I=own, BLOCK_J=stream, K_PAD=k_pad, num_warps=_NUM_WARPS,
        )  # fmt: skip
        ctx.save_for_backward(z, mu, logvar, joint, marg)
        ctx.weights = (lw_diag, lw_next, lw_other)
        out_dtype = torch.promote_types(z.dtype, torch.float32)
        return joint.to(out_dtype), marg.to(out_dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_joint, g_marg):  # type: ignore[override]
        z, mu, logvar, joint, marg = ctx.saved_tensors
        B, K = z.shape
        need_z, need_mu, need_lv = ctx.needs_input_grad[:3]
        has_gj, has_gm = g_joint is not None, g_marg is not None
        gz = gmu = glv = None
        if not (has_gj or has_gm):
            return gz, gmu, glv, None, None, None
        _, bwd_dz, bwd_dmu = _get_kernels()
        k_pad, own, stream = _block_sizes(K)
        # placeholders keep the argument list fixed; the HAS_* constexprs skip their loads
        gj = g_joint.contiguous() if has_gj else joint
        gm = g_marg.contiguous() if has_gm else marg
        if need_z:
            gz32 = torch.empty(B, K, device=z.device, dtype=torch.float32)
            _launch(
                z, bwd_dz, _cdiv(B, own),
                (z, mu, logvar, joint, marg, gj, gm, gz32, B, K, *ctx.weights),
                HAS_GJ=has_gj, HAS_GM=has_gm, BLOCK_I=own, BLOCK_J=stream, K_PAD=k_pad,
                num_warps=_NUM_WARPS,
            )  # fmt: skip
            gz = gz32.to(z.dtype)
        if need_mu or need_lv:
            gmu32 = torch.empty(B, K, device=z.device, dtype=torch.float32)
            glv32 = torch.empty(B, K, device=z.device, dtype=torch.float32)
            _launch(
                z, bwd_dmu, _cdiv(B, own),
                (z, mu, logvar, joint, marg, gj, gm, gmu32, glv32, B, K, *ctx.weights),
                HAS_GJ=has_gj, HAS_GM=has_gm, BLOCK_I=stream, BLOCK_J=own, K_PAD=k_pad,
                num_warps=_NUM_WARPS,
            )  # fmt: skip
            gmu = gmu32.to(mu.dtype) if need_mu else None
            glv = glv32.to(logvar.dtype) if need_lv else None
        return gz, gmu, glv, None, None, None


def mss_logsumexp_fused(
    z: Tensor,
    mu: Tensor,
    logvar: Tensor,
    log_w_diag: float,
    log_w_next: float,
    log_w_other: float,
) -> tuple[Tensor, Tensor]:
    """Fused (joint ``[B]``, marg ``[B, K]``) minibatch log-sum-exps; see the module docstring.

    ``joint[i] = logsumexp_j(logw[i, j] + Σ_k t[i, j, k])`` and
    ``marg[i, k] = logsumexp_j(logw[i, j] + t[i, j, k])`` with ``t`` the Gaussian log density of
    ``z[i, k]`` under posterior ``j`` and ``logw`` the (diag, next = (i + 1) % B, other) weights
    (any may be ``-inf``). Differentiable w.r.t. ``z``, ``mu`` and ``logvar`` with a fused,
    recomputing, deterministic backward; memory O(B·K). Computed in fp32; outputs are
    ``promote_types(dtype, float32)``. Needs CUDA tensors (or ``TRITON_INTERPRET=1``), K <= 64.
    """
    _validate(z, mu, logvar)
    d, n, o = _weights(log_w_diag, log_w_next, log_w_other)
    dtype = torch.promote_types(torch.promote_types(z.dtype, mu.dtype), logvar.dtype)
    z, mu, logvar = z.to(dtype), mu.to(dtype), logvar.to(dtype)
    return _MssLogsumexp.apply(z, mu, logvar, d, n, o)
