"""Several probes from one host forward (``fit_probes``) against one ``Probe.fit`` per hook, same
data, same head, in one run: tokens/s of fitting N probes (N = 1, 2, 4) both ways.

    python benchmarks/multi_hook.py                        # CPU: the shipped factor LM (4 blocks)
    python benchmarks/multi_hook.py --host gpt2-mini       # a config-built GPT-2-shaped host, 8 blocks, d 256
    python benchmarks/multi_hook.py --host gpt2-small      # GPT-2-small shape (random weights), bf16 on CUDA

For N hooks the deepest is always the last block, the others spread below it, so one forward and
each separate fit run the host to the same depth. "tok/s" is data tokens ÷ the wall time to fit
all N probes on them (each probe reads every token once); "speedup" is the separate fits' time ÷
the shared forward's (best of ``--repeats`` alternated runs each); "forwards" counts host forwards; "same" says whether every probe of
``fit_probes`` equals its separate fit bit for bit. Prints a table and writes JSON
(benchmarks/results/multi_hook.json). "CPU-time speedup" is the same ratio of process CPU
time, which other jobs on a shared machine disturb less than wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def build_host(name: str, device: str, dtype: torch.dtype):
    """(model, vocab, tokens per sequence, number of blocks)."""
    if name == "factor_lm":
        from probe_disentangle.zoo import load_factor_lm

        model, world = load_factor_lm(device)
        return model, world.vocab_size, world.max_length - 1, model.cfg.n_layers
    from transformer_lens import TransformerBridge, TransformerBridgeConfig

    shape = {"gpt2-mini": (256, 4, 8, 64), "gpt2-small": (768, 12, 12, 256)}[name]
    d, heads, layers, seq = shape
    cfg = TransformerBridgeConfig(
        d_model=d,
        d_head=d // heads,
        n_heads=heads,
        n_layers=layers,
        n_ctx=1024,
        d_vocab=50257,
        act_fn="gelu_new",
        seed=0,
        model_name=f"{name}-shape",
    )
    model = TransformerBridge.boot_native(cfg, device=device, dtype=dtype)
    return model.eval(), 50257, seq, layers


def spread_hooks(n: int, layers: int) -> list[str]:
    """``n`` resid_post hooks, the deepest at the last block, the rest evenly below it."""
    blocks = sorted({layers - 1 - round(i * layers / n) for i in range(n)})
    return [f"blocks.{b}.hook_resid_post" for b in blocks]


class _Forwards:
    """Counts host forwards (pre-hook on the first block)."""

    def __init__(self, model) -> None:
        self.calls = 0
        self.handle = model.blocks[0].register_forward_pre_hook(self._count)

    def _count(self, *args) -> None:
        self.calls += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="factor_lm", choices=["factor_lm", "gpt2-mini", "gpt2-small"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, nargs="+", default=[1, 2, 4], help="numbers of hooks")
    ap.add_argument("--batch", type=int, default=32, help="sequences per host batch")
    ap.add_argument("--batches", type=int, default=24)
    ap.add_argument("--head-batch", type=int, default=1024)
    ap.add_argument("--latents", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument(
        "--objective", default="beta_tcvae", help="the heads' objective (beta_vae: a cheap step, the host's cost shows)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (0: torch's default); one is steadiest on a machine shared with other jobs",
    )
    ap.add_argument("--repeats", type=int, default=3, help="alternated runs of each mode; the best time counts")
    ap.add_argument("--out", default="benchmarks/results/multi_hook.json")
    args = ap.parse_args()
    from probe_disentangle import Probe, TrainConfig, fit_probes

    if args.threads:
        torch.set_num_threads(args.threads)

    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model, vocab, seq, layers = build_host(args.host, args.device, dtype)
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(3, vocab, (args.batch, seq), generator=g).to(args.device) for _ in range(args.batches)]
    tokens = args.batch * seq * args.batches
    vectors = args.batch * (seq - 1) * args.batches  # BOS excluded
    steps = max(1, vectors // args.head_batch)  # about one pass over the data
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    head = {"latent_dim": args.latents, "hidden": args.hidden, "objective": args.objective}
    train = TrainConfig(steps=steps, batch_size=args.head_batch, progress=False, log_every=10**9, device=args.device)
    fit_args = dict(buffer_size=4 * args.head_batch, normalizer_vectors=2 * args.head_batch, device=args.device)
    warm = max(1, -(-4 * args.head_batch // (args.batch * (seq - 1))))
    fit_probes(model, {spread_hooks(1, layers)[0]: head}, data[:warm], TrainConfig(steps=1, **_small(train)))
    counter = _Forwards(model)
    rows = []

    def separate_fits(hooks):
        out = {}
        for h in hooks:
            probe = Probe(model, h, head_config=head)
            probe.fit(data, train, **fit_args)
            out[h] = probe
        return out

    def timed(fn, hooks):
        counter.calls = 0
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(hooks)
        sync()
        return (time.perf_counter() - t0, time.process_time() - c0), counter.calls, out

    for n in args.n:
        hooks = spread_hooks(n, layers)
        t_sep, t_one = [], []
        for _ in range(args.repeats):  # alternated, best of: the machine's load changes between runs
            t, f_sep, separate = timed(separate_fits, hooks)
            t_sep.append(t)
            t, f_one, shared = timed(
                lambda hs: fit_probes(model, dict.fromkeys(hs, head), data, train, **fit_args), hooks
            )
            t_one.append(t)
        (t_sep, c_sep), (t_one, c_one) = (tuple(map(min, zip(*t, strict=True))) for t in (t_sep, t_one))
        same = all(
            all(
                torch.equal(a, b)
                for a, b in zip(
                    separate[h].head.state_dict().values(), shared[h].head.state_dict().values(), strict=True
                )
            )
            for h in hooks
        )
        rows.append(
            {
                "host": args.host,
                "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
                "n_hooks": n,
                "hooks": hooks,
                "tokens": tokens,
                "head_steps": steps,
                "head_batch": args.head_batch,
                "objective": args.objective,
                "repeats": args.repeats,
                "separate_s": round(t_sep, 3),
                "shared_s": round(t_one, 3),
                "separate_cpu_s": round(c_sep, 3),
                "shared_cpu_s": round(c_one, 3),
                "separate_tok_s": round(tokens / t_sep),
                "shared_tok_s": round(tokens / t_one),
                "speedup": round(t_sep / t_one, 3),
                "separate_tok_per_cpu_s": round(tokens / c_sep),
                "shared_tok_per_cpu_s": round(tokens / c_one),
                "cpu_speedup": round(c_sep / c_one, 3),
                "separate_forwards": f_sep,
                "shared_forwards": f_one,
                "same": same,
            }
        )
    counter.handle.remove()
    hdr = f"{'host':<11} {'device':<10} {'objective':<10} {'N':>2} {'separate tok/s':>15} {'one forward tok/s':>18}"
    hdr += f" {'speedup':>8} {'CPU-time speedup':>17} {'forwards (sep/one)':>19} {'same':>5}"
    print(hdr)
    for r in rows:
        print(
            f"{r['host']:<11} {r['device'][:10]:<10} {r['objective']:<10} {r['n_hooks']:>2} {r['separate_tok_s']:>15,} "
            f"{r['shared_tok_s']:>18,} {r['speedup']:>8.2f} {r['cpu_speedup']:>17.2f} "
            f"{r['separate_forwards']:>9}/{r['shared_forwards']:<9} {str(r['same']):>5}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads()}
    Path(args.out).write_text(json.dumps({"rows": rows, **meta}, indent=2))
    print(f"wrote {args.out}")


def _small(train) -> dict:
    return {"batch_size": train.batch_size, "progress": False, "device": train.device}


if __name__ == "__main__":
    main()
