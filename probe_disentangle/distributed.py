"""Data-parallel training on torch.distributed: the launch environment, the process group, the
rows of a global batch each rank owns, exact reductions, and the gradient all-reduce.

The contract is that a data-parallel fit is the single-process fit with the same global batch:
``batch_size`` stays the global batch, rank r takes rows ``[r·b, (r+1)·b)`` of it (b = B / W), and
every random draw made per row (a VAE's ε, InfoGAN's codes) is drawn for the whole global batch
from a generator every rank holds in the same state, then sliced (:func:`randn_rows`,
:func:`local_rows`), so rank r draws exactly the numbers the single process draws for those rows.
Losses that are means over rows are computed on each rank's rows; losses that couple the rows of a
batch (β-TCVAE's MSS/MWS estimators, DIP-VAE's covariance, FactorVAE's permutation) see the global
batch through an all-gather (:func:`gather_rows`, with autograd). Gradients are summed across ranks
and divided by W, so the step equals the single-process step to float rounding.

Why not ``DistributedDataParallel``: heads train through their own ``training_step`` (several
optimisers, parts frozen per step, calls other than ``forward``), which DDP's forward-hooked
reducer does not follow; an explicit all-reduce of each optimiser's gradients before its step
(one flat tensor per step) does the same reduction for every head.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What torchrun (and ``torch.distributed.launch``) sets for each process it starts."""


@dataclass(frozen=True)
class LaunchEnv:
    """One process's place in a torchrun job, read from its environment."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def launch_env(environ: dict[str, str] | None = None) -> LaunchEnv | None:
    """The torchrun environment of this process, or None when it was not launched by torchrun
    (no ``WORLD_SIZE``). A partial or inconsistent environment is an error naming what is wrong."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    missing = [k for k in LAUNCH_VARIABLES if k not in env]
    if missing:
        raise ValueError(
            f"WORLD_SIZE is set but {', '.join(missing)} is not: launch with torchrun "
            "(torchrun --nproc-per-node N ...), which sets all of " + ", ".join(LAUNCH_VARIABLES)
        )
    try:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
        port = int(env["MASTER_PORT"])
    except ValueError as err:
        raise ValueError(f"RANK, WORLD_SIZE, LOCAL_RANK and MASTER_PORT must be integers ({err})") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"RANK={rank} must lie in [0, WORLD_SIZE={world}) and LOCAL_RANK={local} be ≥ 0")
    return LaunchEnv(rank, world, local, env["MASTER_ADDR"], port)


@dataclass(frozen=True)
class DataParallel:
    """The process group a data-parallel fit reduces over: this process's rank, the world size."""

    rank: int
    world_size: int
    group: Any = None  # None: the default group

    @classmethod
    def current(cls) -> DataParallel | None:
        """The initialised default group, when it holds more than one process; else None."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_batch(self, global_batch: int) -> int:
        """Rows of a global batch each rank owns; the global batch must split evenly."""
        if global_batch % self.world_size:
            raise ValueError(
                f"batch_size {global_batch} does not split over {self.world_size} processes: use a global batch "
                f"divisible by the world size (e.g. {global_batch // self.world_size * self.world_size or self.world_size}) "
                "so every rank owns the same number of rows"
            )
        return global_batch // self.world_size


def init_from_env(
    backend: str | None = None,
    timeout_s: float = 600.0,
    min_world_size: int = 2,
    device: str | torch.device | None = None,
) -> DataParallel | None:
    """Under torchrun with at least ``min_world_size`` processes, initialise the default process
    group unless it already is, and return it. ``backend`` None: NCCL when each rank has a GPU of
    its own (rank on GPU ``LOCAL_RANK``) and ``device`` is not the CPU, else gloo. Without torchrun, or with fewer processes, return None: the fit runs as a
    single process. ``min_world_size=1`` sets up a group of one (to measure the data-parallel
    path's own cost on one GPU)."""
    env = launch_env()
    if env is None or env.world_size < max(1, min_world_size):
        return None
    if dist.is_initialized():
        return DataParallel(dist.get_rank(), dist.get_world_size())
    if backend is None:
        on_cpu = device is not None and torch.device(device).type == "cpu"
        own_gpu = torch.cuda.is_available() and env.local_rank < torch.cuda.device_count()
        backend = "nccl" if own_gpu and not on_cpu else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(
        backend,
        init_method="env://",
        rank=env.rank,
        world_size=env.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return DataParallel(dist.get_rank(), dist.get_world_size())


def destroy(wait: bool = False) -> None:
    """Tear down the default process group, if one is initialised. ``wait``: first a barrier, so
    that no rank tears its end down while another still uses it (gloo can then abort a process
    with "terminate called without an active exception"); for a job's normal end only — a rank
    leaving on an error must not wait for the others."""
    if dist.is_available() and dist.is_initialized():
        if wait and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def exit_process(code: int = 0) -> None:
    """End this process of a data-parallel job now, after :func:`destroy`: stdio flushed, then
    ``os._exit(code)``, skipping the interpreter's and the C++ runtime's teardown, where gloo's
    transport threads can abort a process that has finished its work ("terminate called without an
    active exception", seen about once in four 2-process CPU jobs here). Call it last, with every
    file closed."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def is_main_process() -> bool:
    """True outside a data-parallel job, and on its rank 0."""
    dp = DataParallel.current()
    return dp is None or dp.is_main


def barrier(dp: DataParallel | None) -> None:
    if dp is not None:
        dist.barrier(group=dp.group)


# ------------------------------------------------------------------ the rows of a global batch

_ACTIVE: ContextVar[DataParallel | None] = ContextVar("probe_disentangle_data_parallel", default=None)


@contextlib.contextmanager
def rows_of(dp: DataParallel | None) -> Iterator[None]:
    """Inside, the batch a training step sees is rank ``dp.rank``'s rows of a global batch: the
    row helpers below draw, slice and gather accordingly. Outside (or with None) they are plain."""
    token = _ACTIVE.set(dp)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active() -> DataParallel | None:
    """The data-parallel group of the step being run, or None in a single-process step."""
    return _ACTIVE.get()


def global_rows(n_local: int) -> int:
    """The rows of the global batch whose local part has ``n_local`` rows."""
    dp = _ACTIVE.get()
    return n_local if dp is None else n_local * dp.world_size


def local_rows(*tensors: Tensor) -> Any:
    """This rank's rows of tensors ``[B_global, ...]`` (the tensors themselves in a single process);
    one tensor in, one out."""
    dp = _ACTIVE.get()
    if dp is not None:
        out = []
        for t in tensors:
            b = dp.local_batch(t.shape[0])
            out.append(t[dp.rank * b : (dp.rank + 1) * b])
        tensors = tuple(out)
    return tensors[0] if len(tensors) == 1 else tensors


def randn_rows(like: Tensor) -> Tensor:
    """Standard normal noise shaped like ``like`` ``[b, ...]``: in a data-parallel step, this
    rank's rows of the global batch's draw, so the noise is the single-process run's."""
    shape = (global_rows(like.shape[0]), *like.shape[1:])
    return local_rows(torch.randn(shape, dtype=like.dtype, device=like.device))


def gather_rows(*tensors: Tensor) -> Any:
    """The global batch ``[B_global, ...]`` of every rank's rows ``[b, ...]``, in rank order, with
    autograd: the gradient of each gathered row flows back to the rank that owns it, summed over
    the ranks that used it (a loss every rank computes on the whole batch then gets W times its
    gradient on each rank, which the all-reduce's division by W undoes). Identity in one process."""
    dp = _ACTIVE.get()
    if dp is not None:
        tensors = tuple(_GatherRows.apply(t, dp) for t in tensors)
    return tensors[0] if len(tensors) == 1 else tensors


class _GatherRows(torch.autograd.Function):
    """all_gather along rows; backward sums each row's gradient over the ranks (an all-reduce,
    which gloo has; it has no reduce-scatter) and keeps this rank's rows."""

    @staticmethod
    def forward(ctx, t: Tensor, dp: DataParallel) -> Tensor:  # type: ignore[override]
        ctx.dp, ctx.rows = dp, t.shape[0]
        parts = [torch.empty_like(t) for _ in range(dp.world_size)]
        dist.all_gather(parts, t.contiguous(), group=dp.group)
        return torch.cat(parts)  # [W·b, ...]

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        dp, b = ctx.dp, ctx.rows
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=dp.group)
        return grad[dp.rank * b : (dp.rank + 1) * b], None


# ------------------------------------------------------------------ reductions


def _comm_device(dp: DataParallel) -> torch.device:
    """Where a small tensor sent between ranks must live: this rank's GPU for NCCL, else the CPU."""
    if dist.get_backend(dp.group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_grads(params: Sequence[torch.nn.Parameter], dp: DataParallel) -> None:
    """Average the gradients of ``params`` over the ranks in one flat all-reduce (params without a
    gradient are skipped; every rank runs the same step, so they are the same params everywhere)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=dp.group)
    flat /= dp.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def any_rank(flag: Tensor, dp: DataParallel | None) -> Tensor:
    """A 0-d bool: is ``flag`` true on any rank? (the non-finite guard stops every rank together)."""
    if dp is None:
        return flag
    t = flag.detach().reshape(()).to(device=_comm_device(dp), dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=dp.group)
    return t.bool()


def mean_scalars(scalars: dict[str, float], dp: DataParallel | None) -> dict[str, float]:
    """Logged scalars averaged over the ranks (equal shards: the global batch's mean)."""
    if dp is None or not scalars:
        return scalars
    keys = sorted(scalars)
    t = torch.tensor([float(scalars[k]) for k in keys], dtype=torch.float64, device=_comm_device(dp))
    dist.all_reduce(t, group=dp.group)
    t /= dp.world_size
    return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}


def combine_moments(parts: Iterable[tuple[float, Tensor, Tensor]]) -> tuple[float, Tensor | None, Tensor | None]:
    """(count, mean, M2) of the union of parts given as (count, mean, M2), by Chan et al.'s
    parallel formula in float64, parts combined in order (so every rank gets the same bits)."""
    n, mean, m2 = 0.0, None, None
    for n_b, mean_b, m2_b in parts:
        if n_b == 0:
            continue
        mean_b, m2_b = mean_b.to(torch.float64), m2_b.to(torch.float64)
        if mean is None:
            n, mean, m2 = n_b, mean_b, m2_b
            continue
        tot = n + n_b
        delta = mean_b - mean
        mean = mean + delta * (n_b / tot)
        m2 = m2 + m2_b + delta**2 * (n * n_b / tot)
        n = tot
    return n, mean, m2


def reduce_moments(
    n: int, mean: Tensor | None, m2: Tensor | None, dp: DataParallel | None
) -> tuple[int, Tensor | None, Tensor | None]:
    """Every rank's (count, mean, M2) of d-dimensional vectors combined exactly (not rank 0's):
    counts, means and centred second moments are gathered in float64 and merged by Chan's formula."""
    if dp is None:
        return n, mean, m2
    if mean is None:
        raise ValueError(
            f"rank {dp.rank} saw no activation vectors to estimate the normaliser from: give every rank data "
            "(at least world_size host batches) or run fewer processes"
        )
    d = mean.numel()
    row = torch.zeros(2 * d + 1, dtype=torch.float64, device=_comm_device(dp))
    row[0] = n
    if mean is not None:
        row[1 : d + 1], row[d + 1 :] = mean.to(row), m2.to(row)
    rows = [torch.empty_like(row) for _ in range(dp.world_size)]
    dist.all_gather(rows, row, group=dp.group)
    total, mean_all, m2_all = combine_moments((float(r[0]), r[1 : d + 1], r[d + 1 :]) for r in rows)
    if mean_all is None:
        return 0, None, None
    out_device = mean.device if mean is not None else torch.device("cpu")
    return int(round(total)), mean_all.to(out_device), m2_all.to(out_device)


def reduce_stats(stats: Any, dp: DataParallel | None) -> Any:
    """A ``store.RunningStats`` of every rank's vectors (its own when not data-parallel)."""
    stats.n, stats.mean, stats.m2 = reduce_moments(stats.n, stats.mean, stats.m2, dp)
    return stats


def gather_bytes(data: bytes, dp: DataParallel) -> list[bytes]:
    """Every rank's ``data`` (any length), in rank order, on every rank; sent as uint8 tensors
    (no pickling, unlike ``all_gather_object``)."""
    device = _comm_device(dp)
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(size) for _ in range(dp.world_size)]
    dist.all_gather(sizes, size, group=dp.group)
    longest = int(max(int(s) for s in sizes))
    buf = torch.zeros(longest, dtype=torch.uint8, device=device)
    if data:
        buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    bufs = [torch.empty_like(buf) for _ in range(dp.world_size)]
    dist.all_gather(bufs, buf, group=dp.group)
    return [bytes(b[: int(s)].cpu().numpy().tobytes()) for b, s in zip(bufs, sizes, strict=True)]


def broadcast_module(module: torch.nn.Module, dp: DataParallel) -> None:
    """Rank 0's parameters and buffers on every rank (as DDP does when it wraps a module)."""
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0, group=dp.group)


# ------------------------------------------------------------------ the data of each rank


class ShardedBatches:
    """Host input batches ``i`` with ``i % world_size == rank``: each rank runs the host on its own
    shard of the data (re-iterable when ``data`` is)."""

    def __init__(self, data: Iterable[Any], dp: DataParallel) -> None:
        self.data, self.dp = data, dp

    def __iter__(self) -> Iterator[Any]:
        for i, batch in enumerate(self.data):
            if i % self.dp.world_size == self.dp.rank:
                yield batch
