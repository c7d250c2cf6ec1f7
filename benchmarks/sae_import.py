"""Probe.from_sae against SAELens itself (issue 23): agreement, edit exactness, speed, file sizes.

Per SAELens inference architecture (standard, topk, jumprelu, gated), an SAE built by SAELens with
random weights (``d_in`` × ``d_sae``) is saved with ``save_model`` and imported with
``Probe.from_sae`` on a tiny TransformerBridge host (``d_in`` wide). On ``n`` random activation
vectors:

- agreement: max |ours − SAELens| of encode, and of decode on SAELens's features;
- edit exactness: max |(a' − a) − Δf·W_dec[i]| of a one-feature set edit through
  ``Probe.edit_vectors``, and whether a' equals a + Δf·W_dec[i] bit for bit;
- speed, side by side in one run (median of ``repeats``): encode, ours vs SAELens's; a
  one-feature edit, ours (``edit_vectors``: encode, Δf @ W_dec) vs SAELens's own error-preserving
  edit (encode, decode f and f', a + dec(f') − dec(f));
- sizes: the SAELens folder, and the probe folder ``save_pretrained`` writes (the head's weights,
  ``directions.safetensors`` — the decoder rows again, as every probe writes them —, ``probe.json``
  and the ``README.md`` card).

    python benchmarks/sae_import.py               # d_in 256, d_sae 4096, n 4096
    python benchmarks/sae_import.py --smoke       # seconds, for the test
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from probe_disentangle.probe import Probe
from probe_disentangle.steering import sae as S

ARCHITECTURES = ("standard", "topk", "jumprelu", "gated")


def _saelens_sae(sae_lens: Any, architecture: str, d_in: int, d_sae: int, seed: int) -> Any:
    from sae_lens.saes.sae import SAEMetadata

    cfg_cls = {
        "standard": sae_lens.StandardSAEConfig,
        "topk": sae_lens.TopKSAEConfig,
        "jumprelu": sae_lens.JumpReLUSAEConfig,
        "gated": sae_lens.GatedSAEConfig,
    }[architecture]
    cls = {
        "standard": sae_lens.StandardSAE,
        "topk": sae_lens.TopKSAE,
        "jumprelu": sae_lens.JumpReLUSAE,
        "gated": sae_lens.GatedSAE,
    }[architecture]
    extra = {"k": 32} if architecture == "topk" else {}
    torch.manual_seed(seed)
    sae = cls(cfg_cls(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(hook_name="blocks.1.hook_resid_post"), **extra))
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn_like(p) * (0.02 if name == "threshold" else 1 / d_in**0.5))
            if name == "threshold":
                p.abs_()
    return sae.eval()


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _folder_bytes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def run(architecture: str, d_in: int, d_sae: int, n: int, repeats: int, host: Any, tmp: Path) -> dict[str, Any]:
    sae_lens = S._import_saelens()
    theirs = _saelens_sae(sae_lens, architecture, d_in, d_sae, seed=0)
    theirs.save_model(tmp / f"sae_{architecture}")
    t = time.perf_counter()
    probe = Probe.from_sae(host, tmp / f"sae_{architecture}")
    import_s = time.perf_counter() - t
    a = torch.randn(n, d_in, generator=torch.Generator().manual_seed(1))
    j, v = 3, 2.0
    with torch.no_grad():
        f = theirs.encode(a)
        ours_f = probe.encode(a)
        out = probe.edit_vectors(a, {j: v})
        delta_f = v - f[:, j]
        expected = delta_f[:, None] * theirs.W_dec[j]
        row = {
            "encode_max_abs_diff": float((ours_f - f).abs().max()),
            "decode_max_abs_diff": float((probe.decode(f) - theirs.decode(f)).abs().max()),
            "edit_max_abs_error": float(((out - a) - expected).abs().max()),
            "edit_bit_identical": bool(torch.equal(out, a + expected)),
            "l0": float((f > 0).float().sum(1).mean()),
            "import_s": import_s,
        }

        def saelens_edit() -> torch.Tensor:
            g = theirs.encode(a)
            g2 = g.clone()
            g2[:, j] = v
            return a + theirs.decode(g2) - theirs.decode(g)

        row["encode_ms"] = {
            "ours": _median_ms(lambda: probe.encode(a), repeats),
            "saelens": _median_ms(lambda: theirs.encode(a), repeats),
        }
        row["edit_ms"] = {
            "ours": _median_ms(lambda: probe.edit_vectors(a, {j: v}), repeats),
            "saelens": _median_ms(saelens_edit, repeats),
        }
        row["edit_max_abs_diff_vs_saelens_edit"] = float((out - saelens_edit()).abs().max())
    probe.metrics = {"l0": row["l0"]}
    folder = probe.save_pretrained(tmp / f"probe_{architecture}")
    row["bytes"] = {
        "saelens_folder": sum(_folder_bytes(tmp / f"sae_{architecture}").values()),
        "probe_folder": sum(_folder_bytes(folder).values()),
        "probe_files": _folder_bytes(folder),
    }
    again = Probe.from_pretrained(folder, host)
    row["round_trip_bit_identical"] = bool(torch.equal(again.encode(a), ours_f))
    return row


def format_table(results: dict[str, Any]) -> str:
    c = results["config"]
    lines = [
        f"Probe.from_sae vs SAELens {results['saelens_version']} (d_in {c['d_in']}, d_sae {c['d_sae']}, "
        f"{c['n']} vectors, median of {c['repeats']}; CPU, {torch.get_num_threads()} threads)",
        "",
        "| SAE | encode max diff | decode max diff | edit max error | edit bit-identical | "
        "encode ms ours / SAELens | edit ms ours / SAELens (ratio) | SAELens folder | probe folder (card) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, r in results["architectures"].items():
        e, s, b = r["encode_ms"], r["edit_ms"], r["bytes"]
        lines.append(
            f"| {arch} | {r['encode_max_abs_diff']:.1e} | {r['decode_max_abs_diff']:.1e} | "
            f"{r['edit_max_abs_error']:.1e} | {r['edit_bit_identical']} | {e['ours']:.1f} / {e['saelens']:.1f} | "
            f"{s['ours']:.1f} / {s['saelens']:.1f} ({s['ours'] / s['saelens']:.2f}) | "
            f"{b['saelens_folder'] / 1e6:.2f} MB | {b['probe_folder'] / 1e6:.2f} MB "
            f"({b['probe_files'].get('README.md', 0)} B) |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d-in", type=int, default=256)
    ap.add_argument("--d-sae", type=int, default=4096)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--architectures", default=",".join(ARCHITECTURES))
    ap.add_argument("--out", default="runs/sae_import.json")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (seconds), for the test")
    args = ap.parse_args(argv)
    if args.smoke:
        args.d_in, args.d_sae, args.n, args.repeats = 32, 64, 64, 1
    import importlib.metadata

    import transformer_lens as tl

    host = tl.TransformerBridge.boot_native(
        tl.TransformerBridgeConfig(
            d_model=args.d_in, d_head=8, n_layers=2, n_ctx=16, n_heads=args.d_in // 8, d_vocab=20, act_fn="gelu", seed=0
        )
    ).eval()
    results: dict[str, Any] = {
        "config": {"d_in": args.d_in, "d_sae": args.d_sae, "n": args.n, "repeats": args.repeats},
        "saelens_version": importlib.metadata.version("sae-lens"),
        "architectures": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.architectures.split(","):
            results["architectures"][arch] = run(arch, args.d_in, args.d_sae, args.n, args.repeats, host, Path(tmp))
    print(format_table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
