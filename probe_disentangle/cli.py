"""The ``probe-disentangle`` command."""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__, io, registry


def _architectures(args: argparse.Namespace) -> int:
    for name in registry.names():
        cls, cfg = registry.get(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:<16} {cls.__module__}.{cls.__name__:<14} {doc}")
    return 0


def _info(args: argparse.Namespace) -> int:
    meta = io.read_config(args.path)
    model = io.load(args.path)
    n = sum(p.numel() for p in model.parameters())
    print(
        f"{args.path}: {meta['architecture']} ({n:,} parameters), saved by probe_disentangle {meta.get('probe_disentangle_version', '?')}"
    )
    print(json.dumps(meta["config"], indent=2))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    cfg = DemoConfig(
        out=args.out,
        hook=args.hook,
        steps=args.steps,
        seed=args.seed,
        n_steer=args.n_steer,
        strength=args.strength,
        progress=not args.no_progress,
    )
    run_demo(cfg)
    return 0


def _hooks(args: argparse.Namespace) -> int:
    from .adapters import attach, load_transformer

    if args.model == "factor_lm":
        from .zoo import load_factor_lm

        model = load_factor_lm()[0]
    else:
        model = load_transformer(args.model, device="cpu")
    adapter = attach(model)
    names = adapter.hook_names()
    if args.filter:
        names = [n for n in names if args.filter in n]
    for n in names:
        print(n)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="probe-disentangle", description="Find and steer disentangled directions inside pretrained networks."
    )
    ap.add_argument("--version", action="version", version=f"probe_disentangle {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("architectures", help="list the registered head and model architectures").set_defaults(
        fn=_architectures
    )
    p = sub.add_parser("info", help="describe a saved head or model folder (and check it loads)")
    p.add_argument("path")
    p.set_defaults(fn=_info)
    p = sub.add_parser("demo", help="fit a β-TCVAE probe on the shipped factor LM, measure it, steer it (offline)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--hook", default="blocks.1.hook_resid_post")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--n-steer", type=int, default=100, help="generated sentences per steered factor value")
    p.add_argument("--strength", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(fn=_demo)
    p = sub.add_parser(
        "hooks", help="list the hook points of a model (Hugging Face name or local folder, or factor_lm)"
    )
    p.add_argument("model")
    p.add_argument("--filter", default="", help="only names containing this text")
    p.set_defaults(fn=_hooks)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
