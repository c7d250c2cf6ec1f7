"""One trainer for heads, image models and activation streams.

The model defines its step (``configure_optimizers(lr) -> {name: optimizer}`` and
``training_step(batch, step, optimize) -> LossResult``, with ``optimize(name, result)`` doing
one optimiser's update, so FactorVAE and InfoGAN alternate their optimisers); the trainer owns
device placement, bf16 autocast (CUDA; CPU on request), gradient clipping, LR schedules, the progress bar,
optional TensorBoard logging, atomic checkpoints, bit-identical resume (CPU), the
non-finite guard and data-parallel training on torch.distributed (``data_parallel``: the same
global batch split over the ranks, gradients all-reduced, rank 0 writing the checkpoints; see
:mod:`probe_disentangle.distributed`). It knows nothing about transformers or UNets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Collection, Generator, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import distributed, io
from .constants import (
    CHECKPOINT_META_FILE,
    CHECKPOINT_PREFIX,
    CHECKPOINT_STATE_FILE,
    CONFIG_FILE,
    LATEST_FILE,
)

log = logging.getLogger(__name__)


def _last_good(checkpoint: str | None) -> str:
    return f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written yet"


class NonFiniteError(RuntimeError):
    """A non-finite input, loss term or gradient stopped training; nothing was updated with it."""

    def __init__(self, step: int, term: str, checkpoint: str | None) -> None:
        where = _last_good(checkpoint)
        super().__init__(
            f"non-finite {term} at step {step}; training stopped before updating with it ({where}). "
            "Check the data for NaN/inf, lower the learning rate or enable grad_clip, then resume."
        )
        self.step, self.term, self.checkpoint = step, term, checkpoint


class DeferredNonFiniteError(NonFiniteError):
    """With ``check_every > 1`` the guard reads its flag only every few steps (a GPU sync per step
    costs as much as a small head's step): the bad step lies in a range, and the parameters may
    hold its update. Checkpoints are written only after a clean check, so they stay good."""

    def __init__(self, first: int, last: int, checkpoint: str | None) -> None:
        where = _last_good(checkpoint)
        RuntimeError.__init__(  # its own message, not NonFiniteError's single-step one
            self,
            f"non-finite input, loss or gradient between steps {first} and {last} (checked every "
            f"{last - first + 1} steps; the parameters in memory may hold it, {where}). Check the data for "
            "NaN/inf, lower the learning rate or enable grad_clip, then resume; check_every=1 stops at the "
            "first bad step with the parameters untouched.",
        )
        self.step, self.term, self.checkpoint = first, "input, loss or gradient", checkpoint


# TrainConfig fields that change a run's trajectory: a resume that changes one says so (Trainer.fit).
# The schedule's may change where the learning rate up to the checkpoint stays the same (a run
# extended with a final decay, warmup–stable–decay).
RUN_SETTINGS = ("batch_size", "lr", "grad_clip", "amp", "amp_cpu", "seed")
SCHEDULE_SETTINGS = ("steps", "lr_schedule", "warmup_steps", "decay_steps")


@dataclass
class TrainConfig:
    """Everything the loop needs; saved with each checkpoint."""

    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant | cosine | linear (after warmup)
    warmup_steps: int = 0
    # > 0: hold the LR after warmup, then run the schedule (cosine or linear) to 0 over only the last
    # decay_steps steps (warmup–stable–decay). A long run can then be extended with a short decay at
    # its end; a decay of 16 000 steps after 91 000 at lr 5e-4 sharpened a sprites β-TCVAE's codes
    decay_steps: int = 0
    grad_clip: float | None = 10.0
    device: str = "auto"  # auto → cuda when available
    amp: bool = True  # bf16 autocast on CUDA
    # bf16 autocast on the CPU too: about twice the conv/matmul speed on CPUs with AVX512-BF16 or
    # AMX, at bf16's precision inside those ops (losses stay float32); off by default
    amp_cpu: bool = False
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 0  # 0: only when fit ends (if checkpoint_dir is set)
    checkpoint_dir: str | None = None
    keep_checkpoints: int = 2
    tensorboard_dir: str | None = None
    progress: bool = True
    # read the non-finite guard every this many steps: None → 1 on CPU (free there), 32 on CUDA,
    # where each read is a device sync that stalls the queue of kernels
    check_every: int | None = None

    def __post_init__(self) -> None:
        from .registry import check_field_types

        check_field_types(self)
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError("steps must be ≥ 0 and batch_size ≥ 1")
        if self.lr_schedule not in ("constant", "cosine", "linear"):
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; use 'constant', 'cosine' or 'linear'")
        if self.decay_steps < 0 or self.warmup_steps < 0:
            raise ValueError("warmup_steps and decay_steps must be ≥ 0")
        if self.decay_steps and self.lr_schedule == "constant":
            raise ValueError("decay_steps needs lr_schedule='linear' or 'cosine': the shape of the final decay")
        if self.decay_steps and self.warmup_steps + self.decay_steps > self.steps:
            raise ValueError(
                f"warmup_steps + decay_steps ({self.warmup_steps} + {self.decay_steps}) exceed steps ({self.steps}); "
                "shorten them or train longer"
            )
        if self.checkpoint_every and not self.checkpoint_dir:
            raise ValueError("checkpoint_every needs checkpoint_dir: say where checkpoints go")
        if self.check_every is not None and self.check_every < 1:
            raise ValueError(f"check_every must be ≥ 1 (or None for the device's default), got {self.check_every}")


@dataclass
class TrainResult:
    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: str | None = None

    @property
    def last(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        begin = cfg.steps - cfg.decay_steps if cfg.decay_steps else cfg.warmup_steps
        span = max(1, cfg.steps - begin)
        frac = min(1.0, max(0.0, (step - begin) / span))
        return 0.5 * (1 + math.cos(math.pi * frac)) if cfg.lr_schedule == "cosine" else 1.0 - frac

    return f


# ------------------------------------------------------------------ state (de)serialisation


def _encode(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """JSON-ready structure with tensors moved to ``tensors`` (keys keep types: int dict keys, tuples)."""
    if isinstance(obj, Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _encode(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__} at {prefix}")


def _decode(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


# ------------------------------------------------------------------ data


class _TensorBatches:
    """Epochs of random permutations over in-memory tensors, drawn from the trainer's own generator."""

    def __init__(
        self,
        tensors: tuple[Tensor, ...],
        batch_size: int,
        generator: torch.Generator,
        dp: distributed.DataParallel | None = None,
    ) -> None:
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise ValueError(f"all data tensors need the same first dimension, got {[t.shape[0] for t in tensors]}")
        if n == 0:
            raise ValueError("the data is empty")
        self.tensors, self.batch_size, self.g = tensors, min(batch_size, n), generator
        # data parallel: every rank holds the data and the generator in the same state, draws the
        # global batch's indices and keeps its rows of them
        self.dp = dp
        self.rows = slice(None)
        if dp is not None:
            b = dp.local_batch(self.batch_size)
            self.rows = slice(dp.rank * b, (dp.rank + 1) * b)
        self.perm = torch.randperm(n, generator=generator)
        self.pos = 0

    def next(self):
        if self.pos + self.batch_size > self.perm.numel():
            self.perm = torch.randperm(self.perm.numel(), generator=self.g)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch_size][self.rows]
        self.pos += self.batch_size
        out = tuple(t[idx] for t in self.tensors)
        return out[0] if len(out) == 1 else out

    def state(self) -> dict[str, Any]:
        return {"perm": self.perm, "pos": self.pos}

    def load(self, st: dict[str, Any]) -> None:
        self.perm, self.pos = st["perm"], int(st["pos"])


def _check_batch(batch: Any, index: int) -> None:
    """A batch is a tensor, or a tuple/list whose first item is the tensor the model trains on."""
    first = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    if not isinstance(first, Tensor):
        raise TypeError(
            f"batch {index} of the data is a {type(first).__name__}, not a tensor: the trainer takes a tensor "
            "[N, ...], a tuple of them, or an iterable of tensor batches (for text or token ids, fit a Probe on the "
            "host instead)"
        )


class _IterableBatches:
    """Any iterable of batches, restarted when exhausted; resume skips the batches already used."""

    def __init__(self, data: Iterable) -> None:
        if isinstance(data, (str, bytes, dict)) or not isinstance(data, Iterable):
            raise TypeError(
                f"data must be a tensor [N, ...], a tuple of tensors or an iterable of batches, got a {type(data).__name__}"
            )
        self.data = data
        self.it: Iterator = iter(data)
        self.consumed = 0

    def next(self):
        try:
            b = next(self.it)
        except StopIteration:
            self.it = iter(self.data)
            try:
                b = next(self.it)
            except StopIteration:
                raise ValueError("the data iterable yielded no batches") from None
        _check_batch(b, self.consumed)
        self.consumed += 1
        return b

    def _stateful(self) -> bool:
        """An iterable with ``stream_state()`` / ``load_stream_state(state)`` (the activation store)
        is asked for its position at each checkpoint and put back there on resume, so it skips what
        was used without replaying every earlier pass; any other iterable is replayed batch by batch."""
        return callable(getattr(self.data, "stream_state", None)) and callable(
            getattr(self.data, "load_stream_state", None)
        )

    def state(self) -> dict[str, Any]:
        st: dict[str, Any] = {"consumed": self.consumed}
        if self._stateful():
            st["stream"] = self.data.stream_state()
        return st

    def load(self, st: dict[str, Any]) -> None:
        if st.get("stream") is not None and self._stateful():
            self.data.load_stream_state(st["stream"])
            self.it = iter(self.data)  # a fresh pass, begun where the saved one stood
            self.consumed = int(st["consumed"])
            return
        for _ in range(int(st["consumed"])):
            self.next()


def resolve_device(name: str | torch.device) -> torch.device:
    """A ``device`` setting as a torch device: "auto" is CUDA when a GPU is visible, else the CPU.

    Asking for CUDA where none is visible fails here, with the fix, rather than deep inside the
    first forward pass.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:<index>'") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: no CUDA GPU is visible here; use 'cpu' (or 'auto')")
    return device


def _to_device(batch, device):
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    return batch


def _nonfinite_flags(batch) -> list[Tensor]:
    """One 0-d bool tensor per floating tensor of the batch: does it hold a NaN or inf?"""
    if isinstance(batch, Tensor):
        return [~torch.isfinite(batch).all()] if batch.is_floating_point() else []
    if isinstance(batch, (tuple, list)):
        return [f for b in batch for f in _nonfinite_flags(b)]
    return []


# ------------------------------------------------------------------ checkpoint folders


def _checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step of a ``step_NNNNNNNN`` checkpoint folder's name (None for any other name)."""
    name = Path(path).name
    if not name.startswith(CHECKPOINT_PREFIX) or not name[len(CHECKPOINT_PREFIX) :].isdigit():
        return None
    return int(name[len(CHECKPOINT_PREFIX) :])


def _checkpoints_in(root: str | os.PathLike) -> list[Path]:
    """The checkpoint folders in ``root``, by step."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _checkpoint_step(p) is not None]
    return sorted(found, key=_checkpoint_step)


def prepare_checkpoint_dir(
    checkpoint_dir: str | os.PathLike | None, overwrite: bool, own: Collection[str] = ()
) -> None:
    """Before a run that does not resume writes to ``checkpoint_dir``: refuse a folder holding
    another run's checkpoints (any not named in ``own``), or with ``overwrite`` delete them and
    the ``latest`` pointer. Mixing two runs' checkpoints let pruning delete the new run's work."""
    if not checkpoint_dir:
        return
    root = Path(checkpoint_dir)
    foreign = [p for p in _checkpoints_in(root) if p.name not in own]
    if not foreign:
        return
    if not overwrite:
        latest = root / LATEST_FILE
        pointer = f", {LATEST_FILE} → {latest.read_text().strip()}" if latest.is_file() else ""
        raise FileExistsError(
            f"{root} holds checkpoints of another run ({', '.join(p.name for p in foreign[-3:])}{pointer}); "
            "pass resume=True to continue that run, overwrite=True to delete its checkpoints and start anew, "
            "or choose another checkpoint_dir"
        )
    for p in foreign:
        _discard(p)
    with contextlib.suppress(FileNotFoundError):
        (root / LATEST_FILE).unlink()
    io.fsync_dir(root)


_DEBRIS = re.compile(rf"^\.(tmp|trash)-{re.escape(CHECKPOINT_PREFIX)}\d+-(\d+)$")


def remove_debris(root: str | os.PathLike) -> list[Path]:
    """Delete what killed runs left in checkpoint folder ``root``: half-written checkpoints
    (``.tmp-step_N-PID``), checkpoints caught between being pruned and being deleted
    (``.trash-step_N-PID``) and half-written ``latest`` pointers — only names the trainer's own
    patterns match, and only those whose writer process is gone. Returns what it removed."""
    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for p in root.iterdir():
        m = _DEBRIS.match(p.name)
        if m and int(m.group(2)) != os.getpid() and not io.pid_alive(int(m.group(2))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    removed += io.remove_strays(root / LATEST_FILE)
    return removed


def _discard(folder: Path) -> None:
    """Delete a checkpoint folder so that a kill at any moment leaves it whole or gone: rename it
    out of the ``step_*`` namespace first (one atomic step), then delete the renamed folder. A
    kill during the deletion leaves a ``.trash-*`` folder, which the next start removes."""
    trash = folder.parent / f".trash-{folder.name}-{os.getpid()}"
    if trash.exists():
        shutil.rmtree(trash)
    os.rename(folder, trash)
    io.fsync_dir(folder.parent)
    shutil.rmtree(trash, ignore_errors=True)


# ------------------------------------------------------------------ trainer


class Trainer:
    """Train ``model`` (a head or image model defining its own step) with ``config``.

    ``data_parallel``: None (the default) trains data-parallel when a torch.distributed default
    group of more than one process is initialised (torchrun, then
    :func:`distributed.init_from_env`); True requires one; False never; or a
    :class:`distributed.DataParallel`. Data-parallel, ``batch_size`` is the global batch: with
    tensor data every rank holds the data and takes its rows of each global batch, so the run is
    the single-process run with that batch (to float rounding); an iterable yields each rank's own
    batches of ``batch_size / world_size`` rows. Gradients are averaged over the ranks before each
    optimiser's step (every optimiser of the model), the non-finite guard stops all ranks together,
    and rank 0 alone writes checkpoints (atomically) while the others wait; a checkpoint holds every
    rank's data position and resumes only with the same world size."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig | None = None,
        data_parallel: bool | distributed.DataParallel | None = None,
    ) -> None:
        for attr in ("configure_optimizers", "training_step"):
            if not hasattr(model, attr):
                raise TypeError(
                    f"{type(model).__name__} has no {attr}(); the trainer needs configure_optimizers and training_step"
                )
        self.config = config or TrainConfig()
        self.dp = _data_parallel(data_parallel, model)
        self.device = resolve_device(self.config.device)
        self.model = model.to(self.device)
        if self.dp is not None:
            distributed.broadcast_module(self.model, self.dp)  # one start on every rank, as DDP does
        self.optimizers: dict[str, torch.optim.Optimizer] = model.configure_optimizers(self.config.lr)
        lam = _lr_lambda(self.config)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, lam) for k, o in self.optimizers.items()}
        self.step = 0
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.last_checkpoint: str | None = None
        # names of the checkpoint folders of this run (written by it, or its past when resumed):
        # the only ones pruning may delete
        self._own: set[str] = set()
        self._batches: tuple[Any, _TensorBatches | _IterableBatches] | None = None
        self._rng: tuple[Tensor, list[Tensor] | None] | None = None
        ce = self.config.check_every
        self.check_every = ce if ce is not None else (32 if self.device.type == "cuda" else 1)
        self._bad: Tensor | None = None  # deferred guard: any non-finite value since the last check
        self._checked = 0  # the step of the last clean check

    # -------------------------------------------------------------- the non-finite guard
    def _guard(self, flag: Tensor, what: str) -> None:
        """Raise at once (check_every = 1) or fold ``flag`` into the deferred flag."""
        if self.check_every == 1:
            if bool(distributed.any_rank(flag, self.dp)):
                raise NonFiniteError(self.step, what, self.last_checkpoint)
            return
        self._bad = flag.clone() if self._bad is None else self._bad.logical_or_(flag)

    def _check(self) -> None:
        """Read the deferred flag (one sync); raise if anything since the last check was non-finite."""
        bad = self._bad
        if self.dp is not None:  # every rank reads the same verdict, so all stop or none
            bad = distributed.any_rank(
                bad if bad is not None else torch.zeros((), dtype=torch.bool, device=self.device), self.dp
            )
        if bad is not None and bool(bad):
            self._bad = None
            raise DeferredNonFiniteError(self._checked, self.step - 1, self.last_checkpoint)
        self._bad = None
        self._checked = self.step

    # -------------------------------------------------------------- the step's optimiser update
    def _optimize(self, name: str, result) -> None:
        total = result.total if hasattr(result, "total") else result
        if self.check_every > 1:
            self._guard(~torch.isfinite(total.detach()).all(), "loss")
        elif bool(distributed.any_rank(~torch.isfinite(total.detach()).all(), self.dp)):
            terms = getattr(result, "terms", {})
            bad = [k for k, v in terms.items() if not bool(torch.isfinite(v.detach()).all())]
            raise NonFiniteError(
                self.step, f"loss term {bad[0]!r} ({name})" if bad else f"loss ({name})", self.last_checkpoint
            )
        if name not in self.optimizers:
            raise KeyError(
                f"training_step asked for optimiser {name!r}; configure_optimizers made {sorted(self.optimizers)}"
            )
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        total.backward()
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if self.dp is not None:  # the global batch's gradient, before clipping sees its norm
            distributed.all_reduce_grads(params, self.dp)
        if self.config.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        else:
            norm = (
                torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params]))
                if params
                else torch.zeros(())
            )
        self._guard(~torch.isfinite(norm), f"gradient ({name})")
        opt.step()

    # -------------------------------------------------------------- fit
    def fit(
        self,
        data,
        resume: str | os.PathLike | bool | None = None,
        until: int | None = None,
        resume_config: str = "error",
        overwrite: bool = False,
    ) -> TrainResult:
        """Train until ``config.steps``. ``data``: a tensor ``[N, ...]`` (or a tuple of tensors),
        sampled in shuffled epochs by the trainer's own seeded generator (bit-identical resume), or
        any iterable of batches (cycled; resume skips the batches already used). ``resume``: a
        checkpoint folder, or True for the latest in ``checkpoint_dir``. ``until``: stop this call
        after that step (for time-limited jobs; a later ``fit(resume=True)`` carries on).

        A run that does not resume refuses a ``checkpoint_dir`` holding another run's checkpoints;
        ``overwrite=True`` deletes them first. Pruning (``keep_checkpoints``) only ever deletes
        this run's own checkpoints, so ``latest`` always names one that exists.

        ``resume_config``: what to do when this trainer's config differs from the checkpoint's in a
        setting that changes the run (batch size, learning rate and its schedule, seed, clipping,
        precision): "error" (the default) refuses, naming both values; "override" carries on with
        this trainer's values and logs a warning. Settings that do not change the run (device,
        logging, checkpointing) may always differ."""
        steps = self.fit_steps(data, resume=resume, until=until, resume_config=resume_config, overwrite=overwrite)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def fit_steps(
        self,
        data,
        resume: str | os.PathLike | bool | None = None,
        until: int | None = None,
        resume_config: str = "error",
        overwrite: bool = False,
    ) -> Generator[int, None, TrainResult]:
        """:meth:`fit` one step at a time: each ``next()`` trains one step and yields its number;
        the generator returns the :class:`TrainResult`. Several trainers driven in turn (one probe
        per hook, :func:`probe_disentangle.multi_hook.fit_probes`) each run exactly as :meth:`fit`
        would, provided the caller gives each its own global RNG state between steps."""
        if resume_config not in ("error", "override"):
            raise ValueError(f"resume_config must be 'error' or 'override', got {resume_config!r}")
        cfg = self.config
        main = self.dp is None or self.dp.is_main
        if cfg.checkpoint_dir and main:
            remove_debris(cfg.checkpoint_dir)
        # a trainer carrying on its own run (resumed, or trained before, in this folder) is no fresh
        # run: a checkpoint beyond its step (written by a run killed before it moved ``latest``) is
        # left alone by pruning and replaced when this run writes that step again
        carrying_on = bool(
            self.last_checkpoint
            and cfg.checkpoint_dir
            and Path(self.last_checkpoint).parent.resolve() == Path(cfg.checkpoint_dir).resolve()
        )
        if not resume and not carrying_on and main:
            prepare_checkpoint_dir(cfg.checkpoint_dir, overwrite, own=self._own)
        distributed.barrier(self.dp)  # the folder is ready before any rank reads or writes it
        if isinstance(data, Tensor):
            data = (data,)
        key = tuple(id(t) for t in data) if isinstance(data, tuple) else id(data)
        if not resume and self.step > 0 and self._batches is not None and self._batches[0] == key:
            batches = self._batches[1]  # a later call on the same data carries on where the last stopped
            torch.set_rng_state(self._rng[0])
            if self._rng[1] is not None:
                torch.cuda.set_rng_state_all(self._rng[1])
        else:
            if isinstance(data, tuple) and all(isinstance(t, Tensor) for t in data):
                batches: _TensorBatches | _IterableBatches = _TensorBatches(
                    data, cfg.batch_size, self.generator, self.dp
                )
            else:
                batches = _IterableBatches(data)
            if resume:
                self._resume(resume, batches, resume_config)
            elif self.step == 0:
                torch.manual_seed(cfg.seed)
        self._batches = (key, batches)
        writer = self._tensorboard() if main else None
        result = TrainResult(step=self.step, checkpoint=self.last_checkpoint)
        amp = (cfg.amp and self.device.type == "cuda") or (cfg.amp_cpu and self.device.type == "cpu")
        bar = _progress(cfg, self.step) if main else None
        self._bad, self._checked = None, self.step
        try:
            stop = cfg.steps if until is None else min(cfg.steps, until)
            while self.step < stop:
                batch = _to_device(batches.next(), self.device)
                for flag in _nonfinite_flags(batch):
                    self._guard(flag, "input batch")
                self.model.train()
                ctx = torch.autocast(self.device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
                with ctx, distributed.rows_of(self.dp):
                    out = self.model.training_step(batch, self.step, self._optimize)
                for s in self.schedulers.values():
                    s.step()
                self.step += 1
                if self.step % self.check_every == 0:
                    self._check()
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    scalars = {
                        "step": self.step,
                        **distributed.mean_scalars(out.scalars(), self.dp),  # the global batch's
                        "lr": self.schedulers[next(iter(self.schedulers))].get_last_lr()[0],
                    }
                    result.history.append(scalars)
                    if bar is not None:
                        bar.set_postfix(
                            {k: f"{v:.4g}" for k, v in scalars.items() if k not in ("step",)}, refresh=False
                        )
                    if writer is not None:
                        for k, v in scalars.items():
                            if k != "step":
                                writer.add_scalar(k, v, self.step)
                    log.debug("step %d %s", self.step, scalars)
                if bar is not None:
                    bar.update(1)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self._check()  # a checkpoint is written only after a clean check
                    self.save_checkpoint(batches)
                yield self.step
            self._check()
            if cfg.checkpoint_dir and self.last_checkpoint != self._ckpt_path(self.step):
                self.save_checkpoint(batches)
        finally:
            self._rng = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        result.step, result.checkpoint = self.step, self.last_checkpoint
        self.model.eval()
        return result

    def _tensorboard(self):
        if not self.config.tensorboard_dir:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "TensorBoard logging needs the tensorboard package: pip install 'probe-disentangle[tensorboard]'"
            ) from err
        return SummaryWriter(self.config.tensorboard_dir)

    # -------------------------------------------------------------- checkpoints
    def _ckpt_path(self, step: int) -> str:
        return str(Path(self.config.checkpoint_dir) / f"{CHECKPOINT_PREFIX}{step:08d}")

    def save_checkpoint(self, batches=None) -> str:
        """Write model + optimisers + schedulers + RNG + data position atomically; return the folder.
        On any failure the half-written temp folder is removed and the previous checkpoints stay.
        Data-parallel, every rank calls it: each sends its data position to rank 0, which alone
        writes; the others wait for the folder to be in place."""
        root = Path(self.config.checkpoint_dir)
        data_ranks = self._gather_data_states(batches) if self.dp is not None else None
        if self.dp is not None and not self.dp.is_main:
            distributed.barrier(self.dp)
            self.last_checkpoint = self._ckpt_path(self.step)
            self._own.add(Path(self.last_checkpoint).name)
            return self.last_checkpoint
        root.mkdir(parents=True, exist_ok=True)
        remove_debris(root)
        final = Path(self._ckpt_path(self.step))
        tmp = root / f".tmp-{final.name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            self._write_checkpoint(tmp, batches, data_ranks)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if not final.exists():
            os.rename(tmp, final)
        elif io.swap_paths(tmp, final):  # the same step written again (a resumed run): swap, then drop the old
            _discard(tmp)
        else:  # no atomic swap here: the old one leaves the step_* namespace first
            _discard(final)
            os.rename(tmp, final)
        io.fsync_dir(root)
        self._own.add(final.name)
        io.atomic_write_bytes(root / LATEST_FILE, final.name.encode())
        self.last_checkpoint = str(final)
        self._prune(root)
        distributed.barrier(self.dp)
        return str(final)

    def _gather_data_states(self, batches) -> tuple[list[Any], dict[str, Tensor]] | None:
        """Every rank's data position (encoded, tensors keyed ``data.<rank>...``), on rank 0."""
        if batches is None:
            return None
        tensors: dict[str, Tensor] = {}
        enc = _encode(batches.state(), f"data.{self.dp.rank}", tensors)
        metas = distributed.gather_bytes(json.dumps(enc).encode(), self.dp)
        blobs = distributed.gather_bytes(io.tensors_to_bytes({k: v.cpu() for k, v in tensors.items()}), self.dp)
        from safetensors.torch import load as load_safetensors_bytes

        merged: dict[str, Tensor] = {}
        for blob in blobs:
            merged.update(load_safetensors_bytes(blob))
        return [json.loads(m) for m in metas], merged

    def _write_checkpoint(self, tmp: Path, batches, data_ranks=None) -> None:
        io.write_saved(self.model, tmp)  # into the fresh temp folder, renamed whole below
        tensors: dict[str, Tensor] = {}
        state = {
            "step": self.step,
            "optimizers": {k: _encode(o.state_dict(), f"opt.{k}", tensors) for k, o in self.optimizers.items()},
            "schedulers": {k: _encode(s.state_dict(), f"sched.{k}", tensors) for k, s in self.schedulers.items()},
            "rng": _encode({"torch": torch.get_rng_state(), "trainer": self.generator.get_state()}, "rng", tensors),
            "cuda_rng": _encode(torch.cuda.get_rng_state_all(), "cuda_rng", tensors)
            if torch.cuda.is_available()
            else None,
            "data": _encode(batches.state(), "data", tensors) if batches is not None and data_ranks is None else None,
            "train_config": asdict(self.config),
            "world_size": 1 if self.dp is None else self.dp.world_size,
        }
        if data_ranks is not None:  # data parallel: each rank's own position in its data
            state["data_ranks"] = data_ranks[0]
            tensors.update(data_ranks[1])
        blob = io.tensors_to_bytes(tensors)
        io.atomic_write_bytes(tmp / CHECKPOINT_STATE_FILE, blob)
        import hashlib

        state["state_sha256"] = hashlib.sha256(blob).hexdigest()
        io.atomic_write_json(tmp / CHECKPOINT_META_FILE, state)

    def _prune(self, root: Path) -> None:
        """Keep this run's newest ``keep_checkpoints`` (by step); never touch another run's."""
        ckpts = [p for p in _checkpoints_in(root) if p.name in self._own]
        for old in ckpts[: max(0, len(ckpts) - max(1, self.config.keep_checkpoints))]:
            if str(old) != self.last_checkpoint:
                _discard(old)
                self._own.discard(old.name)

    def _check_resumed_config(self, saved: dict[str, Any] | None, step: int, path: Path, policy: str) -> None:
        if not isinstance(saved, dict):
            return
        now = asdict(self.config)
        diff = {k: (saved[k], now[k]) for k in RUN_SETTINGS + SCHEDULE_SETTINGS if k in saved and saved[k] != now[k]}
        if diff.keys() & set(SCHEDULE_SETTINGS) and not diff.keys() & set(RUN_SETTINGS):
            try:
                old = TrainConfig(**{k: v for k, v in saved.items() if k in now})
            except (TypeError, ValueError):
                old = None
            if old is not None:
                f_old, f_new = _lr_lambda(old), _lr_lambda(self.config)
                if all(math.isclose(f_old(s), f_new(s), rel_tol=1e-12, abs_tol=1e-15) for s in range(step + 1)):
                    return  # the same learning rates up to the checkpoint: the schedule only changes ahead
        if not diff:
            return
        listed = ", ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in diff.items())
        if policy == "error":
            raise ValueError(
                f"resuming {path} with a different training config ({listed}): the run would not be the one that was "
                "checkpointed. Resume with the checkpoint's values, or pass resume_config='override' to carry on "
                "with the new ones"
            )
        log.warning("resuming %s with a different training config (%s): carrying on with the new values", path, listed)

    def _resume(self, resume, batches, resume_config: str = "error") -> None:
        path = Path(self.config.checkpoint_dir or "") if resume is True else Path(resume)
        if resume is True:
            if not self.config.checkpoint_dir:
                raise ValueError("resume=True needs config.checkpoint_dir; or pass the checkpoint folder")
            latest = path / LATEST_FILE
            if not latest.is_file():
                raise FileNotFoundError(f"no {LATEST_FILE} in {path}: nothing to resume from; start without resume")
            path = path / latest.read_text().strip()
        meta_path = path / CHECKPOINT_META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{meta_path} is missing; pass a checkpoint folder ({CHECKPOINT_PREFIX}NNNNNNNN) written by the trainer"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_path} is not valid JSON ({err}); resume from an earlier checkpoint") from err
        saved_world, world = int(meta.get("world_size", 1)), 1 if self.dp is None else self.dp.world_size
        if saved_world != world:
            raise ValueError(
                f"checkpoint {path} was written by a run of {saved_world} process(es), this one has {world}: each "
                f"rank's data position belongs to its world size. Resume with the same number of processes "
                f"(torchrun --nproc-per-node {saved_world} ..., or a single process for 1), or start a new run "
                "without resume"
            )
        self._check_resumed_config(meta.get("train_config"), int(meta.get("step", 0)), path, resume_config)
        saved = io.read_config(path)
        if saved["architecture"] != getattr(self.model, "architecture", None):
            raise ValueError(
                f"checkpoint {path} holds a {saved['architecture']!r}, not a {getattr(self.model, 'architecture', None)!r}"
            )
        weights = io.load_tensors(path / io.WEIGHTS_FILE, saved.get("files", {}).get(io.WEIGHTS_FILE))
        io.load_state_into(self.model, weights, str(path / CONFIG_FILE))
        tensors = io.load_tensors(
            path / CHECKPOINT_STATE_FILE, {"sha256": meta.get("state_sha256")} if meta.get("state_sha256") else None
        )
        for k, o in self.optimizers.items():
            if k not in meta["optimizers"]:
                raise ValueError(f"checkpoint {path} has no state for optimiser {k!r}")
            o.load_state_dict(_decode(meta["optimizers"][k], tensors))
        for k, s in self.schedulers.items():
            s.load_state_dict(_decode(meta["schedulers"][k], tensors))
        rng = _decode(meta["rng"], tensors)
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["trainer"])
        if meta.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(_decode(meta["cuda_rng"], tensors))
        if meta.get("data_ranks") is not None:
            batches.load(_decode(meta["data_ranks"][self.dp.rank], tensors))
        elif meta.get("data") is not None:
            batches.load(_decode(meta["data"], tensors))
        self.step = int(meta["step"])
        self.last_checkpoint = str(path)
        root = Path(self.config.checkpoint_dir) if self.config.checkpoint_dir else None
        if root is not None and root.resolve() == path.parent.resolve():
            # the run's past in its folder is its own; checkpoints after the resumed step are not
            self._own = {p.name for p in _checkpoints_in(root) if _checkpoint_step(p) <= self.step}
        else:
            self._own = set()
        self.model.to(self.device)
        for o in self.optimizers.values():  # optimiser state onto the model's device
            for st in o.state.values():
                for key, v in st.items():
                    if isinstance(v, Tensor) and key != "step":
                        st[key] = v.to(self.device)


def _data_parallel(setting: bool | distributed.DataParallel | None, model: torch.nn.Module):
    """The trainer's ``data_parallel`` argument as a group (or None), checked against the model."""
    if isinstance(setting, distributed.DataParallel):
        dp = setting
    elif setting is None or setting is True:
        dp = distributed.DataParallel.current()
        if dp is None and setting is True:
            raise ValueError(
                "data_parallel=True needs an initialised torch.distributed group of ≥ 2 processes: launch with "
                "torchrun --nproc-per-node N and call probe_disentangle.distributed.init_from_env() first "
                "(Probe.fit and the CLI do), or pass data_parallel=None/False"
            )
    elif setting is False:
        return None
    else:
        raise TypeError(f"data_parallel must be None, True, False or a distributed.DataParallel, got {setting!r}")
    if dp is not None and not getattr(model, "data_parallel_rows", False):
        raise ValueError(
            f"{type(model).__name__} does not draw its per-row noise through probe_disentangle.distributed "
            "(randn_rows / local_rows), so its ranks would draw the same noise: train it in one process "
            "(data_parallel=False), or make its training_step use those helpers and set data_parallel_rows = True"
        )
    return dp


def _progress(cfg: TrainConfig, start: int):
    if not cfg.progress:
        return None
    from .progress import progress_bar

    return progress_bar(cfg.steps, "train", initial=start)


def fit(model: torch.nn.Module, data, config: TrainConfig | None = None, **overrides) -> TrainResult:
    """Shortcut: ``Trainer(model, TrainConfig(**overrides)).fit(data)``."""
    cfg = config or TrainConfig(**overrides)
    return Trainer(model, cfg).fit(data)
