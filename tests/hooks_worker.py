"""Hooks across ranks for tests/test_hooks_across_ranks.py: the host, data and fit both the test
(the single-process reference) and the torchrun workers use.

``torchrun --standalone --nproc-per-node 2 hooks_worker.py OUT_DIR``: ``fit_probes`` on three hooks
(hook i trained by rank i mod 2), each probe saved to ``OUT_DIR/probes/<hook>``; each rank writes
``OUT_DIR/rank<r>.json`` with the hooks it trained and the host forwards it ran.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

HOOKS = ("l0", "l2", "l1")  # l2 before l1: the order given, not the depth, decides the owner
HEADS = {
    "l0": {"latent_dim": 2, "hidden": 8, "depth": 1, "objective": "beta_vae"},
    "l2": {"latent_dim": 2, "hidden": 8, "depth": 1, "objective": "factor_vae"},
    "l1": {"latent_dim": 3, "hidden": 8, "depth": 1, "objective": "beta_tcvae"},
}
FIT = dict(buffer_size=48, normalizer_vectors=30, device="cpu")  # the normaliser leaves its pass early


class Host(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.l0, self.l1, self.l2, self.l3 = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 5), nn.Linear(5, 2)

    def forward(self, x):
        return self.l3(torch.tanh(self.l2(torch.tanh(self.l1(torch.tanh(self.l0(x)))))))


def batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    return [torch.randn(8, 4, generator=g) for _ in range(11)]  # 11: the ranks' shards differ by one


def train():
    from probe_disentangle import TrainConfig

    return TrainConfig(steps=20, batch_size=16, progress=False, seed=0)


def main(out: Path) -> None:
    from probe_disentangle import distributed, fit_probes

    torch.set_num_threads(1)
    host = Host().eval()
    counter = {"forwards": 0}
    host.l0.register_forward_pre_hook(lambda *a: counter.__setitem__("forwards", counter["forwards"] + 1))
    fitted = fit_probes(host, HEADS, batches(), train(), out=out / "probes", **FIT)
    dp = distributed.DataParallel.current()
    (out / f"rank{dp.rank}.json").write_text(json.dumps({"hooks": list(fitted), **counter}))
    distributed.destroy(wait=True)
    distributed.exit_process(0)  # no runtime teardown, where gloo can abort a finished rank


if __name__ == "__main__":
    main(Path(sys.argv[1]))
