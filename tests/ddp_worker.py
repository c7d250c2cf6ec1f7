"""Data-parallel fits for tests/test_distributed.py: the models, data and configs both the test
(single-process references) and the torchrun workers use.

``torchrun --standalone --nproc-per-node 2 ddp_worker.py SCENARIO OUT_DIR``:
- ``equal``: every kind of :data:`KINDS` fitted data-parallel, the normaliser's moments reduced
  over the ranks, and a Probe.fit on a tiny host; rank 0 writes ``OUT_DIR/equal.safetensors``.
- ``fail``: rank 1 raises at step 7 of a checkpointed fit (checkpoints every 3 steps).
- ``kill``: rank 0 SIGKILLs itself at step 7 of that fit; ``resume`` carries it on to the end and
  rank 0 writes ``OUT_DIR/resume.safetensors``.
- ``nan``: a NaN in one row of the data; the non-finite guard stops both ranks at one step.
- ``probe_full`` / ``probe_kill`` / ``probe_resume``: the same for a checkpointed Probe.fit, whose
  ranks each stream their own shard of the host's data.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch
from torch import nn

KINDS = ("beta_vae", "factor_vae", "infogan", "beta_tcvae", "dip_vae", "capacity")
STEPS = 12
BATCH = 16
D = 8
FAIL_STEP = 7
FAIL_MESSAGE = "rank 1 failed on purpose at step 7"


def data() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(96, D, generator=g) @ torch.randn(D, D, generator=g)


def stats_data() -> torch.Tensor:
    """float64 vectors with a large offset (where a naive sum of squares loses digits)."""
    g = torch.Generator().manual_seed(2)
    return 1e3 + torch.randn(301, 5, generator=g, dtype=torch.float64) * torch.arange(1, 6, dtype=torch.float64)


# Adam's ε for these fits. At the default 1e-8 a step moves a weight by lr·g/(|g| + ε): where a
# gradient is the rounding residue of terms that cancel (an InfoGAN generator weight whose ReLU unit
# is barely active had g = −2.5e-8 at step 0), a change of summation order, which splitting a batch
# over ranks is, moves that weight by up to lr. At 1e-4 a step is Lipschitz in g with constant lr/ε,
# so "equal to float rounding" is a claim the data-parallel fit can be held to.
ADAM_EPS = 1e-4


def _with_adam_eps(model: nn.Module) -> nn.Module:
    configure = model.configure_optimizers

    def configure_optimizers(lr: float) -> dict[str, torch.optim.Optimizer]:
        optimizers = configure(lr)
        for opt in optimizers.values():
            assert isinstance(opt, torch.optim.Adam), type(opt)
            for group in opt.param_groups:
                group["eps"] = ADAM_EPS
        return optimizers

    model.configure_optimizers = configure_optimizers
    return model


def make(kind: str) -> nn.Module:
    from probe_disentangle.heads import InfoGANHead, InfoGANHeadConfig, VAEHead, VAEHeadConfig

    torch.manual_seed(0)
    if kind == "infogan":
        cfg = InfoGANHeadConfig(d_in=D, noise_dim=3, categorical=[3], continuous=1, hidden=16, depth=1)
        return _with_adam_eps(InfoGANHead(cfg))
    args = {
        "beta_vae": {"beta": 4.0},
        "factor_vae": {"gamma": 6.0, "disc_hidden": 16, "disc_depth": 2},
        "beta_tcvae": {"beta": 6.0, "dataset_size": 96},
        "dip_vae": {"lambda_od": 5.0},
        "capacity": {"gamma": 50.0, "c_max": 5.0, "c_steps": 8},
    }[kind]
    return _with_adam_eps(
        VAEHead(VAEHeadConfig(d_in=D, latent_dim=3, hidden=16, depth=1, objective=kind, objective_args=args))
    )


def config(**kw):
    from probe_disentangle import TrainConfig

    cfg = {"steps": STEPS, "batch_size": BATCH, "lr": 3e-3, "progress": False, "log_every": 4, "device": "cpu"}
    return TrainConfig(**{**cfg, **kw})


def fit(kind: str, data_parallel=None, **kw) -> nn.Module:
    from probe_disentangle.train import Trainer

    model = make(kind)
    Trainer(model, config(**kw), data_parallel=data_parallel).fit(data())
    return model


class Host(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.inp, self.mid = nn.Linear(4, D), nn.Linear(D, D)

    def forward(self, x):
        return self.mid(torch.tanh(self.inp(x)))


def host_batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    return [torch.randn(8, 4, generator=g) for _ in range(8)]


def probe_fit():
    """A Probe.fit reading every vector for its normaliser (so one process and two agree)."""
    from probe_disentangle import Probe

    probe = Probe(Host(), "mid", head_config={"latent_dim": 2, "hidden": 8, "depth": 1, "objective": "beta_vae"})
    probe.fit(host_batches(), config(steps=4, batch_size=8), buffer_size=32, normalizer_vectors=10_000, device="cpu")
    return probe


def faulty(mode: str, model: nn.Module | None = None) -> nn.Module:
    """A β-VAE head whose step ``FAIL_STEP`` fails: rank 1 raises ("fail"), rank 0 kills itself ("kill")."""
    from probe_disentangle import distributed

    model = model if model is not None else make("beta_vae")
    step_fn = model.training_step

    def training_step(batch, step, optimize):
        dp = distributed.active()
        if step == FAIL_STEP and dp is not None:
            if mode == "fail" and dp.rank == 1:
                raise RuntimeError(FAIL_MESSAGE)
            if mode == "kill" and dp.rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        return step_fn(batch, step, optimize)

    model.training_step = training_step
    return model


def probe_run(mode: str, out: Path) -> nn.Module:
    """A checkpointed data-parallel Probe.fit ("probe_full"), killed at step 7 ("probe_kill") or
    resumed from its last checkpoint ("probe_resume"); returns the head."""
    from probe_disentangle import Probe
    from probe_disentangle.heads import VAEHead, VAEHeadConfig

    torch.manual_seed(5)
    head = VAEHead(VAEHeadConfig(d_in=D, latent_dim=2, hidden=8, depth=1, objective="beta_vae"))
    head = faulty("kill" if mode == "probe_kill" else "none", head)
    ckpt = out / ("pfull" if mode == "probe_full" else "pckpt")
    train = config(steps=STEPS, batch_size=8, checkpoint_dir=str(ckpt), checkpoint_every=3)
    resume = True if mode == "probe_resume" else None
    Probe(Host(), "mid", head=head).fit(host_batches(), train, buffer_size=16, device="cpu", resume=resume)
    return head


def main(scenario: str, out: Path) -> None:
    from probe_disentangle import distributed, io
    from probe_disentangle.store import RunningStats
    from probe_disentangle.train import Trainer

    torch.set_num_threads(1)
    dp = distributed.init_from_env(backend="gloo")  # CPU processes, also where a GPU is visible
    assert dp is not None and dp.world_size == 2, "launch with torchrun --nproc-per-node 2"
    tensors: dict[str, torch.Tensor] = {}
    if scenario == "equal":
        for kind in KINDS:
            for k, v in fit(kind).state_dict().items():
                tensors[f"{kind}.{k}"] = v
        x = stats_data()
        stats = RunningStats()
        shard = x[dp.rank * 150 : (dp.rank + 1) * 150] if dp.rank == 0 else x[150:]
        for chunk in shard.split(37):  # uneven shards and chunks
            stats.update(chunk)
        stats = distributed.reduce_stats(stats, dp)
        tensors.update({"stats.n": torch.tensor(stats.n), "stats.mean": stats.mean, "stats.m2": stats.m2})
        probe = probe_fit()
        tensors.update({"probe.mean": probe.normalizer.mean, "probe.std": probe.normalizer.std})
        probe.save_pretrained(out / "probe")
    elif scenario == "nan":  # a NaN in one row of the data: whichever rank draws it, both stop
        x = data()
        x[5, 2] = float("nan")
        Trainer(make("beta_vae"), config()).fit(x)
    elif scenario.startswith("probe_"):
        tensors = dict(probe_run(scenario, out).state_dict())
    else:
        model = faulty(scenario)
        trainer = Trainer(model, config(checkpoint_dir=str(out / "ckpt"), checkpoint_every=3))
        trainer.fit(data(), resume=True if scenario == "resume" else None)
        tensors = dict(model.state_dict())
    if dp.is_main:
        io.atomic_write_bytes(out / f"{scenario}.safetensors", io.tensors_to_bytes(tensors))
    distributed.destroy(wait=True)
    distributed.exit_process(0)  # no runtime teardown, where gloo can abort a finished rank


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
