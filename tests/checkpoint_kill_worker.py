"""A checkpointed training run killed at random moments: the child's loop. Imported by the
forkserver (children start with torch loaded), so it holds no pytest code."""

from __future__ import annotations

from pathlib import Path

import torch

from probe_disentangle.constants import LATEST_FILE
from probe_disentangle.heads import VAEHead, VAEHeadConfig
from probe_disentangle.train import TrainConfig, Trainer

D_IN = 32


def data() -> torch.Tensor:
    return torch.randn(512, D_IN, generator=torch.Generator().manual_seed(0))


def config(folder: str) -> TrainConfig:
    # a checkpoint every step and only two kept: the run is almost always writing or pruning
    return TrainConfig(
        steps=100_000,
        batch_size=64,
        lr=1e-3,
        checkpoint_dir=folder,
        checkpoint_every=1,
        keep_checkpoints=2,
        progress=False,
        log_every=1000,
        device="cpu",
    )


def head() -> VAEHead:
    torch.manual_seed(0)
    return VAEHead(VAEHeadConfig(d_in=D_IN, latent_dim=4, hidden=256, objective="beta_vae"))


def train_loop(folder: str, ready) -> None:
    """Carry on the run in ``folder`` (or start it), one step per call, until killed; ``ready`` is
    set once this start has passed its clean-up and written a checkpoint."""
    torch.set_num_threads(1)
    trainer = Trainer(head(), config(folder))
    resume = (Path(folder) / LATEST_FILE).is_file()
    x = data()
    if resume:
        trainer.fit(x, resume=True, until=0)  # load only
    trainer.fit(x, until=trainer.step + 1)
    ready.set()
    while True:
        trainer.fit(x, until=trainer.step + 1)
