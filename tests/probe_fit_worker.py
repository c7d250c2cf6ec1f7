"""A Probe.fit on a tiny seeded host, shared by tests/test_probe_resume.py and the child process it
SIGKILLs: ``python probe_fit_worker.py CHECKPOINT_DIR`` fits with checkpoints there, slowly."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

HOOK = "mid"
STEPS = 80


class Host(nn.Module):
    """Linear → tanh → Linear ``mid``: 16-wide activations; ``delay`` seconds per forward."""

    def __init__(self, delay: float = 0.0, fail_at: int | None = None) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.inp = nn.Linear(6, 16)
            self.mid = nn.Linear(16, 16)
        self.delay, self.fail_at, self.forwards = delay, fail_at, 0

    def forward(self, x):
        self.forwards += 1
        if self.fail_at is not None and self.forwards == self.fail_at:
            raise RuntimeError("host failure")
        if self.delay:
            time.sleep(self.delay)
        return self.mid(torch.tanh(self.inp(x)))


def batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(16, 6, generator=g) for _ in range(12)]  # 192 vectors a pass: ~6 batches


def fit(host: Host, checkpoint_dir: str | Path | None, resume=None, init=None):
    """(probe, result) of the fit every run of the tests makes: 80 steps over ~14 passes."""
    from probe_disentangle import Probe, TrainConfig

    probe = Probe(host, HOOK, head_config=dict(latent_dim=3, hidden=16))
    train = TrainConfig(
        steps=STEPS,
        batch_size=32,
        lr=3e-3,
        progress=False,
        log_every=10,
        checkpoint_every=10 if checkpoint_dir else 0,
        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
    )
    result = probe.fit(
        batches(),
        train,
        buffer_size=128,
        normalizer_vectors=100,
        init=init,
        init_vectors=192,
        init_steps=5,
        resume=resume,
    )
    return probe, result


if __name__ == "__main__":
    torch.set_num_threads(1)
    fit(Host(delay=0.006), sys.argv[1], init=sys.argv[2] if len(sys.argv) > 2 else None)
