"""What each factor of a K-factor host is worth to a prefix-code head's reconstruction.

The capacity study's heads (``benchmarks/capacity_lm.py``) leave the plan's last factors unencoded
at K ≥ 16. This asks the host why. The head reconstructs every position's vector, centred per
(token, position) and scaled per position, so a factor is worth to it about the share of each
position's centred variance that the factor's value explains, summed over positions:

    gain_j = Σ_t  Σ_v n_v ‖mean(c_t | f_j = v)‖² / Σ_i ‖c_{i,t}‖²,   c = a − mean(a | token, position)

It also counts the positions where f_j explains more than 1 %, and, as a check that the host
carries every factor at all, the held-out accuracy of a logistic regression reading f_j from the
vector at the position that predicts the sentence's word j (at every block's output).

    python benchmarks/capacity_lm_factor_gain.py --ks 16,32 --out benchmarks/studies/capacity_lm
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_scripts.py: the shared loader
from _scripts import script  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def factor_gain(
    acts: np.ndarray, tokens: np.ndarray, factors: np.ndarray, values: int
) -> tuple[np.ndarray, np.ndarray]:
    """(gain [K], share [K, T]): per factor, the share of each position's (token, position)-centred
    variance its value explains (between-value over total), and that share summed over positions."""
    a = np.asarray(acts, dtype=np.float64)
    n, t_len, _ = a.shape
    c = np.empty_like(a)
    for t in range(t_len):
        _, inv = np.unique(tokens[:, t], return_inverse=True)
        sums = np.zeros((inv.max() + 1, a.shape[2]))
        np.add.at(sums, inv, a[:, t])
        c[:, t] = a[:, t] - (sums / np.bincount(inv)[:, None])[inv]
    total = np.maximum((c**2).sum(axis=(0, 2)), 1e-12)  # [T]
    share = np.zeros((factors.shape[1], t_len))
    for j in range(factors.shape[1]):
        for v in range(values):
            m = factors[:, j] == v
            if m.any():
                share[j] += m.sum() * (c[m].mean(0) ** 2).sum(-1)
    share /= total
    return share.sum(1), share


def carried(adapter, world, factors: np.ndarray, layers: int, seed: int = 0) -> dict[str, list[float]]:
    """Per block output and factor j: held-out accuracy (last quarter) of a logistic regression
    reading f_j from the vector at the position that predicts the sentence's word j."""
    from probe_disentangle.metrics import linear_decodability
    from probe_disentangle.steering.sequence import read_world_sequences

    k = world.num_factors
    out = {}
    for layer in range(layers):
        hook = f"blocks.{layer}.hook_resid_post"
        acts = read_world_sequences(adapter, hook, world, factors)[0].numpy()
        row = []
        for j in range(k):
            x = acts[:, k + 1 + j]
            x = (x - x.mean(0)) / (x.std(0) + 1e-6)
            acc = linear_decodability(x, factors[:, [j]], ["f"], seed=seed, max_iter=500)["f"]
            row.append(round(acc, 3))
        out[hook] = row
    return out


def encoded(cells: dict[str, dict], k: int, threshold: float = 0.9) -> dict[str, list[int]]:
    """Per head cell of the study at K: the factors its final code holds (``decodable`` ≥ threshold)."""
    return {
        key: [int(n[1:]) for n, acc in c["decodable"].items() if acc >= threshold]
        for key, c in sorted(cells.items())
        if c.get("K") == k and "decodable" in c
    }


def run(k: int, args) -> dict[str, Any]:
    from probe_disentangle.adapters import attach
    from probe_disentangle.steering.sequence import read_world_sequences

    cl = script("capacity_lm")
    model, world, _ = cl.host_for(k, args)
    adapter = attach(model)
    f = world.sample_factors(args.n, np.random.default_rng(args.data_seed))
    acts, cond, _ = read_world_sequences(adapter, args.hook, world, f)
    gain, share = factor_gain(acts.numpy(), cond[..., 0].numpy(), f, args.values)
    return {
        "K": k,
        "hook": args.hook,
        "n": args.n,
        "gain": [round(float(g), 3) for g in gain],
        "positions_over_1pct": [int(x) for x in (share > 0.01).sum(1)],
        "carried": carried(adapter, world, f[: args.n_carry], int(model.cfg.n_layers)),
    }


def markdown(results: dict[str, dict], study_cells: dict[str, dict]) -> str:
    lines = []
    for r in results.values():
        k = r["K"]
        lines += [f"**K = {k}** (`{r['hook']}`, {r['n']} sequences)", ""]
        lines += ["| factor | " + " | ".join(f"f{j}" for j in range(k)) + " |", "|---|" + "---|" * k]
        lines.append("| gain | " + " | ".join(f"{g:.2f}" for g in r["gain"]) + " |")
        lines.append("| positions > 1 % | " + " | ".join(str(p) for p in r["positions_over_1pct"]) + " |")
        at = r["carried"][r["hook"]]
        lines.append(f"| carried at `{r['hook']}` | " + " | ".join(f"{a:.2f}" for a in at) + " |")
        for key, js in encoded(study_cells, k).items():
            lines.append(f"| encoded: {key} | " + " | ".join("✓" if j in js else "·" for j in range(k)) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default="16,32")
    script("capacity_lm").add_host_args(ap)  # the same hosts, built or reused by capacity_lm.host_for
    ap.add_argument("--n", type=int, default=4000, help="sequences for the gains")
    ap.add_argument("--n-carry", type=int, default=3000, help="sequences for the carried check")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--cells", nargs="*", default=[], help="capacity_lm.json files whose cells' decodable to show")
    ap.add_argument("--out", default="benchmarks/studies/capacity_lm")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {f"K{k}": run(int(k), args) for k in args.ks.split(",")}
    cells: dict[str, dict] = {}
    for path in args.cells:
        tag = Path(path).parent.name
        cells.update({f"{tag}:{key}": c for key, c in json.loads(Path(path).read_text())["cells"].items()})
    from probe_disentangle.io import atomic_write_json

    atomic_write_json(out / "factor_gain.json", results)
    text = markdown(results, cells)
    (out / "factor_gain.md").write_text(text)
    print(text)
    return results


if __name__ == "__main__":
    main()
