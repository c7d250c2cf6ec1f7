"""Hooks across ranks: ``fit_probes`` on N hooks in one process against the same fit under
``torchrun --nproc-per-node P`` (each rank trains the hooks it owns, the host runs on each rank's
shard, vectors all-gathered to their owners), same data, one run.

    python benchmarks/hooks_across_ranks.py                      # CPU, gloo: 1 and 2 processes
    python benchmarks/hooks_across_ranks.py --procs 1 2 4 --device cuda

Per process count: the job's wall time (the slowest rank's ``fit_probes``), tokens/s, the speed-up
over one process, the host forwards each rank ran, and whether every probe equals the
one-process probe bit for bit (CPU). Prints a table and writes JSON
(``benchmarks/results/hooks_across_ranks.json``). ``--worker`` is the per-rank entry point.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_scripts.py: the shared loader
from _scripts import script  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    """One rank (or the single process): build the host and data, time fit_probes, save, report."""
    from probe_disentangle import TrainConfig, distributed, fit_probes

    torch.set_num_threads(1)
    mh = script("multi_hook")
    model, vocab, seq, layers = mh.build_host(args.host, args.device, torch.float32)
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(3, vocab, (args.batch, seq), generator=g) for _ in range(args.batches)]
    hooks = mh.spread_hooks(args.hooks, layers)
    head = {"latent_dim": args.latents, "hidden": args.hidden, "objective": "beta_vae"}
    steps = max(1, args.batch * (seq - 1) * args.batches // args.head_batch)
    train = TrainConfig(steps=steps, batch_size=args.head_batch, progress=False, log_every=10**9, device=args.device)
    counter = mh._Forwards(model)
    t0 = time.perf_counter()
    fitted = fit_probes(
        model, dict.fromkeys(hooks, head), data, train, out=args.out_dir, overwrite=True,
        buffer_size=4 * args.head_batch, normalizer_vectors=2 * args.head_batch, device=args.device,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    dp = distributed.DataParallel.current()
    rank = 0 if dp is None else dp.rank
    report = {"rank": rank, "seconds": seconds, "forwards": counter.calls, "hooks": list(fitted)}
    (Path(args.out_dir) / f"rank{rank}.json").write_text(json.dumps(report))
    distributed.destroy(wait=True)


def _launch(args, procs: int, out_dir: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    script = [__file__, "--worker", "--out-dir", str(out_dir), "--host", args.host, "--hooks", str(args.hooks)]
    script += ["--batch", str(args.batch), "--batches", str(args.batches), "--head-batch", str(args.head_batch)]
    script += ["--latents", str(args.latents), "--hidden", str(args.hidden), "--device", args.device]
    cmd = [sys.executable, *script] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), *script
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{procs} processes failed:\n{done.stderr[-3000:]}")
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(procs)]


def _same(a: Path, b: Path, hooks: list[str]) -> bool:
    from safetensors.torch import load_file

    from probe_disentangle import hook_folder

    for h in hooks:
        wa = load_file(str(a / hook_folder(h) / "head" / "model.safetensors"))
        wb = load_file(str(b / hook_folder(h) / "head" / "model.safetensors"))
        if wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa):
            return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--host", default="gpt2-mini", choices=["factor_lm", "gpt2-mini", "gpt2-small"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--hooks", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=24)
    ap.add_argument("--head-batch", type=int, default=1024)
    ap.add_argument("--latents", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--out", default="benchmarks/results/hooks_across_ranks.json")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    import tempfile

    mh = script("multi_hook")
    _, _, seq, layers = mh.build_host(args.host, "cpu", torch.float32)
    hooks = mh.spread_hooks(args.hooks, layers)
    tokens = args.batch * seq * args.batches
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for p in args.procs:
            out_dir = Path(tmp) / f"p{p}"
            out_dir.mkdir()
            ranks = _launch(args, p, out_dir)
            seconds = max(r["seconds"] for r in ranks)
            base = base or (p, seconds, out_dir)
            rows.append({
                "procs": p, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
                "speedup": round(base[1] / seconds, 2), "forwards": [r["forwards"] for r in ranks],
                "hooks_per_rank": [r["hooks"] for r in ranks],
                "same_as_first": _same(base[2], out_dir, hooks) if args.device == "cpu" else None,
            })  # fmt: skip
    print(f"{args.host}, {len(hooks)} hooks ({', '.join(hooks)}), β-VAE heads, {tokens} tokens, {args.device}")
    print("| processes | seconds | tok/s | speedup | host forwards per rank | same probes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['procs']} | {r['seconds']} | {r['tokens_per_s']} | {r['speedup']} | {r['forwards']} | {r['same_as_first']} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"config": vars(args), "hooks": hooks, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
