"""Where the shipped factor LM's verb reads the action from (issue 20, research half).

Teacher-forced interchange: base and source sentences differ only in ``action``; the source's
residual at a hook is patched into the base's forward at a set of positions, and the next-token
argmax at the position before the verb is compared with the source's and the base's verb.

    python benchmarks/action_locus.py blocks.0.hook_resid_post blocks.1.hook_resid_post blocks.2.hook_resid_post
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from probe_disentangle import steering
from probe_disentangle.adapters import attach
from probe_disentangle.hosts import load_host


def main(hooks: list[str], n: int = 400, seed: int = 3) -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)
    host = load_host("factor_lm")
    model, world = host.model, host.world
    action = world.factor_names.index("action")
    tag = 1 + action  # the plan's action tag
    rng = np.random.default_rng(seed)
    base = world.sample_factors(n, rng)
    src = base.copy()
    src[:, action] = (base[:, action] + rng.integers(1, 5, n)) % 5
    tb, ts = world.render(base), world.render(src)
    start = world.num_factors + 2  # the sentence's first word
    verb = (tb != ts)[:, start:].argmax(1) + start
    pred = verb - 1
    rows = np.arange(n)
    sets = {
        "tag": lambda r: [tag],
        "plan after the tag": lambda r: list(range(tag + 1, start)),
        "sentence up to the verb": lambda r: list(range(start, pred[r] + 1)),
        "the position before the verb": lambda r: [pred[r]],
    }
    out: dict[str, dict[str, float]] = {}
    for hook in hooks:
        adapter = attach(model, hook)
        source = steering.sequence_activations(adapter, hook, ts)
        out[hook] = {}
        for name, positions in sets.items():
            mask = torch.zeros(tb.shape, dtype=torch.bool)
            for r in range(n):
                mask[r, positions(r)] = True

            def edit(act, mask=mask, source=source):
                T = act.shape[1]
                return torch.where(mask[:, :T, None], source[:, :T].to(act), act)

            with torch.no_grad(), adapter.hook(hook, edit):
                logits = model(torch.as_tensor(tb))
            top = logits[rows, pred].argmax(-1).numpy()
            out[hook][name] = float(np.mean(top == ts[rows, verb]))
            print(f"{hook} {name:<30} verb = the source's {out[hook][name]:.2f}", flush=True)
    return out


if __name__ == "__main__":
    main(sys.argv[1:] or ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.2.hook_resid_post"])
