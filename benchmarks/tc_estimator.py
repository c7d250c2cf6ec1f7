"""MSS total correlation, forward + backward: the dense B×B×K computation (what public
implementations do) against ours (blocked PyTorch; fused Triton on CUDA), in the same run.

Prints a table of time, peak memory and the relative difference of the values and gradients,
and writes JSON. Each configuration runs in a fresh subprocess so CPU peak memory (max RSS)
is its own; on CUDA peak memory is ``torch.cuda.max_memory_allocated``.

    python benchmarks/tc_estimator.py                       # B ∈ {1024, 4096, 8192}, K ∈ {10, 32}
    python benchmarks/tc_estimator.py --sizes 1024x10 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

N_DATA = 1_000_000  # dataset size for the MSS weights


def _inputs(B: int, K: int, device: str):
    g = torch.Generator(device="cpu").manual_seed(0)
    mu = torch.randn(B, K, generator=g).to(device)
    logvar = (0.5 * torch.randn(B, K, generator=g) - 1.0).to(device)
    eps = torch.randn(B, K, generator=g).to(device)
    return mu.requires_grad_(), logvar.requires_grad_(), eps


def _run_once(backend: str, B: int, K: int, device: str):
    from probe_disentangle import losses

    mu, logvar, eps = _inputs(B, K, device)
    z = mu + torch.exp(0.5 * logvar) * eps
    tc = losses.total_correlation(z, mu, logvar, N_DATA, "mss", backend=backend)
    tc.backward()
    return tc.detach(), mu.grad.detach(), logvar.grad.detach()


def child(backend: str, B: int, K: int, device: str, repeats: int) -> dict:
    """Time one backend in this process; report peak memory above the inputs."""
    torch.set_num_threads(os.cpu_count() or 1)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    _run_once(backend, min(B, 256), K, device)  # warm-up (kernels compiled, allocator primed)
    sync()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        tc, gmu, glv = _run_once(backend, B, K, device)
        sync()
        times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    out = Path(os.environ["TC_BENCH_OUT"])
    save_file({"tc": tc.cpu().reshape(1), "gmu": gmu.cpu(), "glv": glv.cpu()}, str(out))  # values for the parent
    return {"ms": 1000 * min(times), "peak_bytes": max(0, int(peak))}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _dense_bytes(B: int, K: int) -> int:
    return 4 * B * B * K * 6  # several B×B×K float32 tensors live at once in forward + backward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1024x10,1024x32,4096x10,4096x32,8192x10,8192x32")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dense-limit-gb", type=float, default=None, help="skip dense runs estimated above this")
    ap.add_argument("--out", default="benchmarks/results/tc_estimator.json")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        backend, B, K = args.child[0], int(args.child[1]), int(args.child[2])
        print(json.dumps(child(backend, B, K, args.device, args.repeats)))
        return

    ours = ["blocked"]
    if args.device == "cuda":
        from probe_disentangle import kernels

        if kernels.triton_available():
            ours = ["fused", "blocked"]
    if args.dense_limit_gb is None:
        if args.device == "cuda":
            limit = torch.cuda.get_device_properties(0).total_memory * 0.9
        else:
            limit = 0.6 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    else:
        limit = args.dense_limit_gb * 2**30

    rows = []
    tmp = Path(args.out).parent
    tmp.mkdir(parents=True, exist_ok=True)
    for spec in args.sizes.split(","):
        B, K = (int(v) for v in spec.lower().split("x"))
        results = {}
        for backend in ["dense", *ours]:
            if backend == "dense" and _dense_bytes(B, K) > limit:
                results[backend] = {"skipped": f"needs ≈{_dense_bytes(B, K) / 2**30:.0f} GiB"}
                continue
            out = tmp / f".tc_{backend}_{B}_{K}.safetensors"
            env = {**os.environ, "TC_BENCH_OUT": str(out)}
            cmd = [
                sys.executable,
                __file__,
                "--child",
                backend,
                str(B),
                str(K),
                "--device",
                args.device,
                "--repeats",
                str(args.repeats),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                results[backend] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["values"] = load_file(str(out))
            out.unlink()
            results[backend] = r
        ref = results.get("dense", {}).get("values")
        for backend in ours:
            r = results[backend]
            row = {"B": B, "K": K, "backend": backend, "device": args.device}
            for name, rr in (("dense", results["dense"]), ("ours", r)):
                if "ms" in rr:
                    row[f"{name}_ms"] = round(rr["ms"], 2)
                    row[f"{name}_peak_MiB"] = round(rr["peak_bytes"] / 2**20, 1)
                else:
                    row[f"{name}_note"] = rr.get("skipped") or rr.get("error")
            if "ms" in r and ref is not None:
                v = r["values"]
                row["speedup"] = round(results["dense"]["ms"] / r["ms"], 2)
                row["mem_ratio"] = round(results["dense"]["peak_bytes"] / max(1, r["peak_bytes"]), 1)
                row["rel_diff_tc"] = _rel(v["tc"], ref["tc"])
                row["rel_diff_grad"] = max(_rel(v["gmu"], ref["gmu"]), _rel(v["glv"], ref["glv"]))
            if "ms" in r:
                row["tc"] = float(r["values"]["tc"])
            rows.append(row)

    hdr = f"{'B':>6} {'K':>3} {'ours':>8} {'dense ms':>10} {'dense MiB':>10} {'ours ms':>9} {'ours MiB':>9} {'speedup':>8} {'mem÷':>7} {'rel Δ tc':>10} {'rel Δ grad':>10}"
    print(
        f"MSS total correlation, forward + backward, {args.device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:

        def f(key, fmt, r=r):
            return format(r[key], fmt) if key in r else "—"

        print(
            f"{r['B']:>6} {r['K']:>3} {r['backend']:>8} {f('dense_ms', '10.1f')} {f('dense_peak_MiB', '10.0f')} "
            f"{f('ours_ms', '9.1f')} {f('ours_peak_MiB', '9.0f')} {f('speedup', '8.2f')} {f('mem_ratio', '7.1f')} "
            f"{f('rel_diff_tc', '10.1e')} {f('rel_diff_grad', '10.1e')}"
            + (f"   dense: {r['dense_note']}" if "dense_note" in r else "")
        )
    meta = {"device": args.device, "torch": torch.__version__, "python": platform.python_version(), "N": N_DATA}
    if args.device == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(0)
    Path(args.out).write_text(
        json.dumps(
            {"meta": meta, "rows": rows},
            indent=2,
            default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o),
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
