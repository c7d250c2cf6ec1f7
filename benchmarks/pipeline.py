"""Throughput of ``Probe.fit`` (collection + shuffle buffer + β-TCVAE head training, k = 32)
against the host forward alone, stopped at the hook's layer, same model and batch, one run; and
the same for the per-token prefix-code head (heads/sequence.py: read every position with its
token id and position, then ``fit_prefix_code`` over as many vectors, k = 12), in the same run.

    python benchmarks/pipeline.py                         # CPU: the shipped factor LM
    python benchmarks/pipeline.py --host gpt2-small       # a GPT-2-small-shaped TransformerBridge
                                                          # (random weights), bf16 on CUDA

Prints a table and writes JSON (benchmarks/results/pipeline.json). The ratio
fit tokens/s ÷ forward tokens/s says how much of the host's own speed the probe keeps.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def build_host(name: str, device: str, dtype: torch.dtype):
    if name == "factor_lm":
        from probe_disentangle.zoo import load_factor_lm

        model, world = load_factor_lm(device)
        return model, world.vocab_size, world.max_length - 1, "blocks.1.hook_resid_post"
    from transformer_lens import TransformerBridge, TransformerBridgeConfig

    cfg = TransformerBridgeConfig(
        d_model=768,
        d_head=64,
        n_heads=12,
        n_layers=12,
        n_ctx=1024,
        d_vocab=50257,
        act_fn="gelu_new",
        seed=0,
        model_name="gpt2-small-shape",
    )
    model = TransformerBridge.boot_native(cfg, device=device, dtype=dtype)
    return model.eval(), 50257, 256, "blocks.6.hook_resid_post"


def prefix_fit_seconds(adapter, hook, data, vocab, seq, head_batch, steps, device) -> float:
    """Seconds to read every batch's sequences (vectors + token ids + positions) and fit a
    prefix-code head for ``steps`` steps of ``head_batch`` vectors (a warm-up step first)."""
    from probe_disentangle.heads.sequence import PrefixCodeConfig, PrefixCodeHead, PrefixFitConfig, fit_prefix_code
    from probe_disentangle.steering.sequence import read_sequences

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    d = adapter.collect(data[0][:1], hook).vectors.shape[-1]
    centre = "token_position" if vocab * seq * d <= (1 << 24) else "position"
    cfg = PrefixCodeConfig(d_in=d, vocab=vocab, n_pos=seq, latent_dim=12, hidden=256, centre=centre)

    def run(batches, n_steps):
        parts = [read_sequences(adapter, hook, b.cpu(), batch=len(b)) for b in batches]
        acts, cond, mask = (torch.cat(x).to(device) for x in zip(*parts, strict=True))
        head = PrefixCodeHead(cfg).to(device)
        fit_prefix_code(head, acts, cond, mask, PrefixFitConfig(steps=n_steps, batch_size=head_batch))

    run(data[:1], 1)  # warm-up
    sync()
    t0 = time.perf_counter()
    run(data, steps)
    sync()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="factor_lm", choices=["factor_lm", "gpt2-small"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=32, help="sequences per host batch")
    ap.add_argument("--seq", type=int, default=None, help="tokens per sequence (default: the host's)")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--head-batch", type=int, default=4096)
    ap.add_argument(
        "--tc-batch", type=int, default=None, help="estimate TC on this many of each head batch (default: all)"
    )
    ap.add_argument("--check-every", type=int, default=None, help="non-finite guard reads (default: the device's)")
    ap.add_argument("--out", default="benchmarks/results/pipeline.json")
    args = ap.parse_args()
    from probe_disentangle.adapters import attach
    from probe_disentangle.probe import Probe
    from probe_disentangle.train import TrainConfig

    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model, vocab, seq, hook = build_host(args.host, args.device, dtype)
    seq = args.seq or seq
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(3, vocab, (args.batch, seq), generator=g).to(args.device) for _ in range(args.batches)]
    tokens = args.batch * seq * args.batches
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    adapter = attach(model, hook)

    with torch.no_grad():
        adapter.forward(data[0], stop_after=hook)  # warm-up
        sync()
        t0 = time.perf_counter()
        for b in data:
            adapter.forward(b, stop_after=hook)
        sync()
    t_fwd = time.perf_counter() - t0

    vectors = args.batch * (seq - 1) * args.batches  # BOS excluded
    steps = max(1, vectors // args.head_batch)
    probe = Probe(
        model,
        hook,
        head_config=dict(
            latent_dim=32,
            hidden=512 if args.host != "factor_lm" else 128,
            objective="beta_tcvae",
            objective_args={"beta": 6.0, "tc_batch": args.tc_batch},
        ),
    )
    train = TrainConfig(
        steps=steps,
        batch_size=args.head_batch,
        lr=1e-3,
        progress=False,
        log_every=10**9,
        device=args.device,
        check_every=args.check_every,
    )
    warm = -(-2 * args.head_batch // (args.batch * (seq - 1)))  # batches for two head batches
    probe.fit(
        data[:warm],
        TrainConfig(steps=1, batch_size=args.head_batch, progress=False, device=args.device),
        buffer_size=2 * args.head_batch,
        device=args.device,
        normalizer_vectors=args.head_batch,
    )  # warm-up
    probe.head = None
    sync()
    t0 = time.perf_counter()
    probe.fit(
        data,
        train,
        buffer_size=max(2 * args.head_batch, 8 * args.batch * seq),
        device=args.device,
        normalizer_vectors=args.batch * seq * 4,
    )
    sync()
    t_fit = time.perf_counter() - t0
    # the normaliser sample and the reference vectors come from the same pass: the host runs once per batch
    rows = [{"head": "vae_head (probe)"}, {"head": "prefix_code"}]
    rows[0].update(
        {
            "host": args.host,
            "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
            "dtype": str(dtype),
            "batch": f"{args.batch}x{seq}",
            "head_steps": steps,
            "head_batch": args.head_batch,
            "tc_batch": args.tc_batch,
            "check_every": args.check_every,
            "forward_tok_s": round(tokens / t_fwd),
            "fit_tok_s": round(tokens / t_fit),
            "ratio": round(t_fwd / t_fit, 3),
            "forward_ms_per_batch": round(1000 * t_fwd / args.batches, 2),
        }
    )
    t_seq = prefix_fit_seconds(adapter, hook, data, vocab, seq, args.head_batch, steps, args.device)
    rows[1].update({k: v for k, v in rows[0].items() if k not in ("head", "tc_batch", "check_every")})
    rows[1].update({"fit_tok_s": round(tokens / t_seq), "ratio": round(t_fwd / t_seq, 3), "tc_batch": None})
    hdr = f"{'host':<12} {'head':<18} {'device':<26} {'batch':>9} {'head batch':>10} {'forward tok/s':>14}"
    print(hdr + f" {'fit tok/s':>10} {'ratio':>6}")
    for row in rows:
        print(
            f"{row['host']:<12} {row['head']:<18} {row['device']:<26} {row['batch']:>9} {row['head_batch']:>10} "
            f"{row['forward_tok_s']:>14,} {row['fit_tok_s']:>10,} {row['ratio']:>6.3f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"rows": rows, "torch": torch.__version__, "python": platform.python_version()}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
