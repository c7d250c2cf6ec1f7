"""Several probes from one host forward: a head per hook, trained side by side.

The host's forward is what a probe fit costs on a large model, and one probe per layer is what
a user wants; fitting them one by one runs the host once per probe. :func:`fit_probes` runs it
once per data batch for all of them: a :class:`~probe_disentangle.store.SharedForward` reads every
hook in one forward (which ends after the deepest hook) and feeds one
:class:`~probe_disentangle.store.ActivationStore` per hook. Each probe keeps its own normaliser,
head, optimisers, RNG stream and checkpoints, so with the same seeds each ends bit-identical
(CPU) to the probe a single-hook :meth:`Probe.fit` gives on the same data.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import registry
from .adapters import Adapter, attach
from .constants import LATEST_FILE, PROBE_FILE
from .probe import Probe
from .store import SharedForward
from .train import TrainConfig, Trainer, TrainResult

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def hook_folder(hook: str) -> str:
    """The folder name of ``hook``'s probe and checkpoints: the hook name itself, with every
    character other than a letter, digit, ``.``, ``_`` or ``-`` replaced by ``_``, and a leading
    ``.`` too (``blocks.3.hook_resid_post`` stays as it is; ``model.layers[3]`` → ``model.layers_3_``)."""
    name = _UNSAFE.sub("_", hook)
    return "_" + name[1:] if name.startswith(".") else name


class FittedProbes(dict):
    """What :func:`fit_probes` returns: a dict hook → fitted :class:`Probe` (in the order the
    hooks were given), with ``results``: hook → that probe's :class:`TrainResult`."""

    def __init__(self, probes: Mapping[str, Probe], results: Mapping[str, TrainResult]) -> None:
        super().__init__(probes)
        self.results = dict(results)


@dataclass
class _Run:
    """One probe's fit in progress: its trainer's steps and its own global RNG state."""

    hook: str
    probe: Probe
    reference: Tensor
    steps: Iterator[int]
    rng: tuple[Tensor, list[Tensor] | None]
    result: TrainResult | None = None

    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        """The global RNG holds this run's state inside the context, and keeps it after."""
        torch.set_rng_state(self.rng[0])
        if self.rng[1] is not None:
            torch.cuda.set_rng_state_all(self.rng[1])
        try:
            yield
        finally:
            self.rng = _rng_state()


def _rng_state() -> tuple[Tensor, list[Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _head_spec(hook: str, spec: Any) -> tuple[str, dict[str, Any]]:
    """(architecture, head config fields) from one value of ``heads``."""
    if spec is None:
        return "vae_head", {}
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"heads[{hook!r}] is a {type(spec).__name__}; give each hook a dict of head config fields "
            "(optionally with 'architecture'), e.g. {'latent_dim': 8}, or None for the default head"
        )
    cfg = dict(spec)
    architecture = cfg.pop("architecture", "vae_head")
    if "d_in" in cfg:
        raise ValueError(f"heads[{hook!r}] sets d_in; drop it: the activations at the hook set the width")
    registry.get(architecture)  # an unknown name lists the registered ones
    return architecture, cfg


def _has_checkpoint(directory: Path) -> bool:
    return (directory / LATEST_FILE).is_file()


def fit_probes(
    model: nn.Module | Adapter,
    heads: Mapping[str, Mapping[str, Any] | None],
    data: Iterable[Any],
    train: TrainConfig | None = None,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    adapter_options: Mapping[str, Any] | None = None,
    buffer_size: int = 65_536,
    normalize: bool = True,
    normalizer_vectors: int = 50_000,
    device: str | torch.device | None = None,
    init: str | None = None,
    init_vectors: int = 20_000,
    init_steps: int | None = None,
    resume: bool = False,
    resume_config: str = "error",
) -> FittedProbes:
    """Fit one probe per hook of ``heads`` (hook → head config fields, optionally with
    ``architecture``; None: the default head) from one host forward per batch of ``data``.

    Every probe trains as :meth:`Probe.fit` would alone with ``train`` and the other arguments
    (the same meaning there), with its own optimisers and RNG stream; its checkpoints, and its
    TensorBoard logs, go to ``<dir>/<hook_folder(hook)>`` under ``train.checkpoint_dir`` (and
    ``train.tensorboard_dir``). ``resume=True`` carries each probe on from its latest checkpoint
    there; a probe killed before its first checkpoint starts again. ``out``: save each probe to
    ``out/<hook_folder(hook)>`` (:meth:`Probe.save_pretrained`); a folder already holding a probe
    is refused unless ``overwrite``, which also deletes old checkpoints as in :meth:`Probe.fit`.

    The host forward ends after the deepest hook still training; each store's vectors wait in a
    queue until its probe takes them, and the probe that has taken the fewest host batches steps
    next, so the queues stay within about one shuffle buffer. The host must be deterministic
    (eval mode) for the probes to equal single-hook fits.

    Under ``torchrun --nproc-per-node N`` the hooks are split over the ranks
    (:mod:`~probe_disentangle.hooks_across_ranks`: hook i trained by rank i mod N, each rank running
    the host on its own shard, vectors all-gathered to their owner): each probe still equals the
    single-process one, and the returned dict holds this rank's probes only. Each hook's setup
    (normaliser, reference vectors) re-reads the start of a pass once on every rank."""
    if not isinstance(heads, Mapping):
        raise TypeError(
            f"heads must be a dict {{hook: head config}}, got a {type(heads).__name__}; "
            "e.g. {'blocks.1.hook_resid_post': {'latent_dim': 8}}"
        )
    if not heads:
        raise ValueError("heads is empty: name at least one hook, e.g. {'blocks.1.hook_resid_post': None}")
    options = dict(adapter_options or {})
    adapter = attach(model, **options)
    hooks = adapter.check_hooks(list(heads))
    specs = {h: _head_spec(h, heads[h]) for h in hooks}
    folders: dict[str, str] = {}
    for h in hooks:
        other = next((g for g, f in folders.items() if f == hook_folder(h)), None)
        if other is not None:
            raise ValueError(
                f"hooks {other!r} and {h!r} share the folder name {hook_folder(h)!r}; fit them in separate runs"
            )
        folders[h] = hook_folder(h)
    train = train or TrainConfig()
    from . import distributed
    from .train import resolve_device

    # under torchrun: hooks across ranks (each rank trains the probes of the hooks it owns)
    dp = distributed.init_from_env(device=resolve_device(train.device)) or distributed.DataParallel.current()
    if resume and not train.checkpoint_dir:
        raise ValueError("resume needs train.checkpoint_dir: the folder holding each probe's checkpoints")
    if out is not None and not overwrite:
        taken = [Path(out) / folders[h] for h in hooks if (Path(out) / folders[h] / PROBE_FILE).exists()]
        if taken:
            raise FileExistsError(f"{taken[0]} already holds a probe; pass overwrite=True or choose another out")
    configs = {
        h: replace(
            train,
            checkpoint_dir=str(Path(train.checkpoint_dir) / folders[h]) if train.checkpoint_dir else None,
            tensorboard_dir=str(Path(train.tensorboard_dir) / folders[h]) if train.tensorboard_dir else None,
            progress=False,
        )
        for h in hooks
    }
    resumed = {h: bool(resume) and _has_checkpoint(Path(configs[h].checkpoint_dir)) for h in hooks}
    if resume and not any(resumed.values()):
        raise FileNotFoundError(
            f"no probe under {train.checkpoint_dir} has a checkpoint ({LATEST_FILE}) to resume from; "
            "start without resume"
        )
    if dp is None:
        shared: SharedForward = SharedForward(adapter, hooks, data)
        mine = list(hooks)
    else:
        from .hooks_across_ranks import GatheredForward

        shared = GatheredForward(adapter, hooks, data, dp)
        mine = shared.owned
    runs: list[_Run] = []
    caller_rng = _rng_state()
    try:
        for h in mine:
            architecture, head_config = specs[h]
            probe = Probe(adapter, h, architecture=architecture, head_config=head_config, adapter_options=options)
            cfg = configs[h]
            store = probe._fit_store(shared, cfg, buffer_size, None, device)
            again = resume and not resumed[h]
            if again:
                log.info("%s has no checkpoint in %s: its fit starts again", h, cfg.checkpoint_dir)
            reference = probe._begin_fit(
                store,
                cfg,
                normalize,
                normalizer_vectors,
                init,
                init_vectors,
                init_steps,
                resumed[h],
                overwrite or again,
            )
            steps = Trainer(probe.head, cfg, data_parallel=False).fit_steps(
                store, resume=True if resumed[h] else None, resume_config=resume_config
            )
            runs.append(_Run(h, probe, reference, steps, _rng_state()))
        _train_side_by_side(runs, shared, train)
        if dp is not None:  # the forwards go on until every rank is done (an error ends this rank at once)
            shared.close()
    finally:
        for run in runs:
            run.steps.close()  # a run left unfinished by an error elsewhere ends its own way
        torch.set_rng_state(caller_rng[0])  # the caller's global RNG, as it was
        if caller_rng[1] is not None:
            torch.cuda.set_rng_state_all(caller_rng[1])
    for run in runs:
        run.probe._end_fit(run.reference)
        if out is not None:  # each probe by the rank that trained it
            run.probe.save_pretrained(Path(out) / folders[run.hook], local=True)
    return FittedProbes({r.hook: r.probe for r in runs}, {r.hook: r.result for r in runs})


def _train_side_by_side(runs: list[_Run], shared: SharedForward, train: TrainConfig) -> None:
    """Step the runs in turn until each is done: always the one whose store has taken the fewest
    host batches (ties: the first hook), each inside its own RNG state."""
    bar = None
    if train.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=train.steps * len(runs), desc=f"train {len(runs)} probes", leave=False, disable=None)
    pending = list(runs)
    try:
        while pending:
            run = min(pending, key=lambda r: shared.taken(r.hook))
            with run.own_rng():
                try:
                    next(run.steps)
                except StopIteration as done:
                    run.result = done.value
                    pending.remove(run)
                    shared.release(run.hook)  # later forwards read it no more, and may stop earlier
                    continue
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


__all__ = ["FittedProbes", "fit_probes", "hook_folder"]
