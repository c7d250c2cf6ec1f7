"""Data-parallel fit speed: steps/s of one process against N torchrun processes (gloo on the CPU,
NCCL on GPUs), the same head, data and global batch, in one run. Each configuration runs in its
own launch; the data-parallel ones report rank 0's time (every rank waits for the others at each
all-reduce). Also checks the data-parallel head ends equal to the single-process one.

    python benchmarks/distributed_fit.py                            # CPU: 1 process vs 2 gloo processes
    python benchmarks/distributed_fit.py --objectives beta_vae --steps 40 --batch 1024
    python benchmarks/distributed_fit.py --device cuda --nprocs 1   # one GPU: torchrun, NCCL group of one

On a CPU the two gloo processes share the machine's cores with each other: the ratio says what
splitting one CPU's work over processes costs (communication, duplicated whole-batch terms), not
what N machines would gain. ``--threads`` sets each process's torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _head(objective: str, d: int, latents: int, hidden: int):
    from probe_disentangle.heads import VAEHead, VAEHeadConfig

    args = {"beta_tcvae": {"beta": 6.0, "dataset_size": 1_000_000}, "beta_vae": {"beta": 4.0}}.get(objective, {})
    torch.manual_seed(0)
    return VAEHead(VAEHeadConfig(d_in=d, latent_dim=latents, hidden=hidden, objective=objective, objective_args=args))


def worker(args: argparse.Namespace) -> None:
    """One configuration: time ``--steps`` steps after ``--warmup`` (rank 0 writes the JSON)."""
    from probe_disentangle import TrainConfig, distributed
    from probe_disentangle.train import Trainer

    torch.set_num_threads(args.threads)
    # under torchrun: the data-parallel path, also for one process (a group of one on one GPU
    # measures what the path itself costs); a plain process trains without it
    dp = distributed.init_from_env(min_world_size=1)
    device = args.device
    if device == "cuda" and dp is not None:
        device = f"cuda:{torch.cuda.current_device()}"
    g = torch.Generator().manual_seed(1)
    data = torch.randn(args.rows, args.width, generator=g).to(device)
    out: dict = {}
    for objective in args.objectives.split(","):
        head = _head(objective, args.width, args.latents, args.hidden)
        cfg = TrainConfig(
            steps=args.warmup, batch_size=args.batch, lr=1e-3, progress=False, device=device, log_every=10**9
        )
        trainer = Trainer(head, cfg, data_parallel=dp if dp is not None else False)
        trainer.fit(data)
        trainer.config.steps = args.warmup + args.steps
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        sync()
        distributed.barrier(dp)
        t0 = time.perf_counter()
        trainer.fit(data)  # carries on from the warm-up
        sync()
        seconds = time.perf_counter() - t0
        out[objective] = {
            "steps_per_s": args.steps / seconds,
            "seconds": seconds,
            "weights": {k: v.detach().cpu().flatten()[:64].tolist() for k, v in head.state_dict().items()},
        }
    if dp is None or dp.is_main:
        Path(args.worker_out).write_text(json.dumps(out))
    distributed.destroy()


def launch(args: argparse.Namespace, nprocs: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        res = Path(tmp) / "result.json"
        own = [__file__, "--worker-out", str(res), "--threads", str(threads)]
        for k in ("objectives", "steps", "warmup", "batch", "rows", "width", "latents", "hidden", "device"):
            own += [f"--{k}", str(getattr(args, k))]
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        env["OMP_NUM_THREADS"] = str(threads)
        if nprocs == 0:  # a plain process, no torchrun
            cmd = [sys.executable, *own]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nprocs}", *own]
        subprocess.run(cmd, check=True, env=env)
        return json.loads(res.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objectives", default="beta_vae,beta_tcvae")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1024, help="the global batch")
    ap.add_argument("--rows", type=int, default=16_384, help="rows of data")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--latents", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nprocs", type=int, default=2, help="processes of the data-parallel run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--out", default="benchmarks/results/distributed_fit.json")
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_out:
        worker(args)
        return
    runs = {
        "1 process": launch(args, 0, args.threads),
        f"{args.nprocs} processes (torchrun)": launch(args, args.nprocs, args.threads),
    }
    if args.device == "cpu" and args.nprocs > 1:
        runs[f"1 process, {args.nprocs * args.threads} threads"] = launch(args, 0, args.nprocs * args.threads)
    base = runs["1 process"]
    print(
        f"\nglobal batch {args.batch}, width {args.width}, hidden {args.hidden}, {args.latents} latents, device {args.device}"
    )
    print(f"{'objective':<12} {'run':<34} {'steps/s':>9} {'vs 1 process':>13} {'max |Δw| vs 1':>15}")
    table = []
    for name, run in runs.items():
        for obj, r in run.items():
            diff = max(
                (
                    abs(a - b)
                    for k in r["weights"]
                    for a, b in zip(r["weights"][k], base[obj]["weights"][k], strict=True)
                ),
                default=0.0,
            )
            ratio = r["steps_per_s"] / base[obj]["steps_per_s"]
            print(f"{obj:<12} {name:<34} {r['steps_per_s']:9.2f} {ratio:12.2f}× {diff:15.2e}")
            table.append(
                {"objective": obj, "run": name, "steps_per_s": r["steps_per_s"], "ratio": ratio, "max_dw": diff}
            )
    meta = {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "args": {k: v for k, v in vars(args).items() if k != "worker_out"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": table}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
