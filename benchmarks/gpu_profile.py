"""Where the probe pipeline's GPU time goes, to guide optimisation (CUDA only).

1. The fused MSS kernel's tile sweep: forward + backward time of ``log_qz`` (B = 4096, K = 32)
   for several (BLOCK_OWN, BLOCK_STREAM, num_warps) choices against the shipped heuristic.
2. One β-TCVAE head step (k = 32, d = 768, batch 4096) split into its parts: encoder+decoder
   MLP alone, the MSS term alone, the whole training step.
3. ``torch.profiler`` over ``Probe.fit`` on the GPT-2-small-shaped bridge (as benchmarks/pipeline.py):
   the top CUDA kernels and CPU ops by total time.

    python benchmarks/gpu_profile.py --out benchmarks/results/gpu_profile.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def _time(fn, repeats: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0) / repeats


def kernel_sweep(B: int = 4096, K: int = 32) -> list[dict]:
    from probe_disentangle import kernels, losses

    g = torch.Generator(device="cuda").manual_seed(0)
    mu = torch.randn(B, K, device="cuda", generator=g).requires_grad_()
    lv = (0.5 * torch.randn(B, K, device="cuda", generator=g) - 1).requires_grad_()
    z = (mu + torch.randn(B, K, device="cuda", generator=g) * (0.5 * lv).exp()).detach().requires_grad_()

    def step():
        joint, marg = losses.log_qz(z, mu, lv, dataset_size=1_000_000, backend="fused")
        (joint.sum() + marg.sum()).backward()

    rows = []
    original, warps = kernels._block_sizes, kernels._NUM_WARPS
    k_pad = max(4, 1 << (K - 1).bit_length())
    configs = [
        (None, None, 8),
        (32, 16, 8),
        (64, 8, 8),
        (16, 8, 4),
        (32, 8, 4),
        (64, 16, 8),
        (128, 4, 8),
        (32, 32, 8),
        (64, 4, 4),
    ]
    for own, stream, nw in configs:
        try:
            if own is not None:
                kernels._block_sizes = lambda K, o=own, s=stream: (k_pad, o, s)
            kernels._NUM_WARPS = nw
            ms = _time(step)
            label = "heuristic" if own is None else f"own={own} stream={stream}"
            rows.append({"config": label, "num_warps": nw, "ms_fwd_bwd": round(ms, 3)})
            print(f"  MSS B={B} K={K} {label:<22} warps={nw}: {ms:.2f} ms", flush=True)
        except Exception as e:  # a config that does not compile or runs out of registers
            rows.append({"config": f"own={own} stream={stream}", "num_warps": nw, "error": str(e)[:200]})
            print(f"  {own},{stream},{nw}: failed {str(e)[:120]}", flush=True)
        finally:
            kernels._block_sizes, kernels._NUM_WARPS = original, warps
    return rows


def head_step_breakdown(B: int = 4096, d: int = 768, k: int = 32) -> dict:
    from probe_disentangle import losses
    from probe_disentangle.heads import VAEHead, VAEHeadConfig
    from probe_disentangle.train import TrainConfig, Trainer

    head = VAEHead(
        VAEHeadConfig(
            d_in=d,
            latent_dim=k,
            hidden=512,
            objective="beta_tcvae",
            objective_args={"beta": 6.0, "dataset_size": 1_000_000},
        )
    ).cuda()
    x = torch.randn(B, d, device="cuda")
    opt = torch.optim.Adam(head.parameters(), 1e-3)

    def mlp():
        mu, lv = head.encode(x)
        out = head.decode(mu + torch.randn_like(mu) * (0.5 * lv).exp())
        ((out - x) ** 2).sum().backward()

    def mss():
        mu, lv = head.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * lv).exp()
        losses.total_correlation(z, mu, lv, 1_000_000, estimator="mss").backward()

    def full():
        opt.zero_grad(set_to_none=True)
        res = head.loss(x)
        res.total.backward()
        opt.step()

    trainer = Trainer(
        head, TrainConfig(steps=10**9, batch_size=B, lr=1e-3, progress=False, log_every=10**9, device="cuda")
    )
    data = torch.randn(8 * B, d, device="cuda")

    def trainer_step():
        trainer.fit(data, until=trainer.step + 1)

    out = {
        "mlp_fwd_bwd_ms": _time(mlp),
        "mlp_plus_mss_ms": _time(mss),
        "loss_backward_adam_ms": _time(full),
        "trainer_step_ms": _time(trainer_step, 20),
    }
    for key, v in out.items():
        print(f"  head B={B} d={d} k={k}: {key} {v:.2f}", flush=True)
    return {k2: round(v, 3) for k2, v in out.items()}


def profile_fit() -> dict:
    from pipeline import build_host  # benchmarks/pipeline.py, beside this script

    from probe_disentangle.probe import Probe
    from probe_disentangle.train import TrainConfig

    model, _, _, hook = build_host("gpt2-small", "cuda", torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(3, 50257, (32, 256), generator=g).cuda() for _ in range(12)]

    def run():
        probe = Probe(
            model,
            hook,
            head_config=dict(latent_dim=32, hidden=512, objective="beta_tcvae", objective_args={"beta": 6.0}),
        )
        probe.fit(
            data,
            TrainConfig(steps=20, batch_size=4096, lr=1e-3, progress=False, log_every=10**9, device="cuda"),
            buffer_size=8 * 32 * 256,
            device="cuda",
            normalizer_vectors=4 * 32 * 256,
        )

    run()
    torch.cuda.synchronize()
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    cuda_table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25)
    cpu_table = prof.key_averages().table(sort_by="cpu_time_total", row_limit=25)
    print(cuda_table[:6000], flush=True)
    print(cpu_table[:4000], flush=True)
    return {"cuda_table": cuda_table, "cpu_table": cpu_table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/gpu_profile.json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_profile.py needs a CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = True
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    for name, fn in (("kernel_sweep", kernel_sweep), ("head_step", head_step_breakdown), ("fit_profile", profile_fit)):
        print(f"== {name}", flush=True)
        try:
            result[name] = fn()
        except Exception as e:  # keep what the other parts measured
            result[name] = {"error": f"{type(e).__name__}: {e}"}
            print(f"{name} failed: {e}", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
