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
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
