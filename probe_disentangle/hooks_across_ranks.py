"""Hooks across ranks: many probes, each trained on one rank, from one host forward per batch per rank.

Under ``torchrun --nproc-per-node N``, :func:`~probe_disentangle.multi_hook.fit_probes` splits the
hooks over the ranks (hook i is owned by rank i mod N, as EleutherAI's sparsify does with
``--distribute_modules``). Every rank runs the host on its own shard of the data (host batches
r, r + N, r + 2N, … for rank r), reading every hook still wanted in one forward; each hook's
vectors are all-gathered and kept by its owner only, one chunk per host batch, in the order of
the host batches. So each owner's store sees exactly the stream a single process would read, and
each probe ends bit-identical (CPU) to the one a single-process ``fit_probes`` gives, while the
host costs each rank 1/N of the data.

When to use which: one probe (or a few) on a large dataset → ``Probe.fit`` under torchrun (data
parallel: each head trained on every rank, gradients all-reduced); many probes, one per layer →
``fit_probes`` under torchrun (hooks across ranks: each head lives on one rank, no gradient
traffic; what crosses ranks is the activations of the hooks, every batch).

The forwards run in a background thread on every rank, in lockstep (every collective in the same
order on every rank): each round the ranks agree, by one all-reduce, which hooks are still
wanted, which pass of the data their stores are reading, and whether every store has enough
queued to wait; then each runs one forward and one all-gather per wanted hook. The training
thread takes its owned hooks' chunks from queues and issues no collective of its own.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from . import distributed
from .adapters import Adapter
from .store import SharedForward

__all__ = ["GatheredForward", "owner_of"]

MAX_QUEUED = 8  # chunks an owned hook's queue may hold before the forwards wait for its store


def owner_of(hooks: Sequence[str], world_size: int) -> dict[str, int]:
    """The rank that trains each hook's probe: hook i → rank i mod ``world_size``."""
    return {h: i % world_size for i, h in enumerate(hooks)}


class GatheredForward(SharedForward):
    """A :class:`SharedForward` whose host forwards run on every rank over its own shard of
    ``data`` (pass it unsharded) and whose vectors reach each hook's owner only (see the module).
    ``chunks`` / ``taken`` / ``release`` work for the hooks this rank owns."""

    def __init__(self, adapter: Adapter, hooks: Sequence[str], data: Iterable[Any], dp: distributed.DataParallel):
        super().__init__(adapter, hooks, distributed.ShardedBatches(data, dp))
        self.dp = dp
        self.owner = owner_of(self.hooks, dp.world_size)
        self.owned = [h for h in self.hooks if self.owner[h] == dp.rank]
        self._cv = threading.Condition()
        self._queues: dict[str, deque] = {h: deque() for h in self.owned}  # (pass, tensor | None = end of pass)
        self._reading: dict[str, int] = {}  # the pass each owned store reads (once it reads)
        self._delivered: dict[str, int] = {}  # chunks of that pass given to it
        self._ended: dict[str, int] = {}  # the last pass whose end is queued, per owned hook
        self._local_done = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="probe-disentangle-forwards", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- the training thread's side
    def chunks(self, hook: str) -> Iterator[Tensor]:
        if hook not in self._queues:
            owner = self.owner.get(hook)
            raise KeyError(
                f"hook {hook!r} is trained on rank {owner}, not on this rank ({self.dp.rank})"
                if owner is not None
                else f"hook {hook!r} is not read by this GatheredForward (it reads {self.hooks})"
            )
        if hook not in self._active:
            raise RuntimeError(f"hook {hook!r} was released; a released hook is read no more")
        k = self._next_pass[hook]
        self._next_pass[hook] = k + 1
        with self._cv:
            self._reading[hook], self._delivered[hook] = k, 0
            self._cv.notify_all()
        while True:
            with self._cv:
                q = self._queues[hook]
                while not q and self._error is None:
                    self._cv.wait()
                if self._error is not None:
                    raise RuntimeError("the host forwards failed on some rank") from self._error
                p, chunk = q.popleft()
                self._cv.notify_all()
            if p < k:  # what is left of a pass this store abandoned
                continue
            if chunk is None:
                return
            self._taken[hook] += 1
            yield chunk

    def release(self, hook: str) -> None:
        with self._cv:
            if hook in self._active:
                self._active.remove(hook)
            self._queues.get(hook, deque()).clear()
            self._cv.notify_all()

    def close(self) -> None:
        """This rank is done: the forwards go on until every rank is, then the thread ends."""
        with self._cv:
            self._local_done = True
            for h in list(self._active):
                if h in self._queues:
                    self._active.remove(h)
                    self._queues[h].clear()
            self._cv.notify_all()
        self._thread.join()
        if self._error is not None:
            raise RuntimeError("the host forwards failed on some rank") from self._error

    # ---------------------------------------------------------------- the forwards' thread
    def _state(self) -> Tensor:
        """This rank's view as one int64 vector, reduced by MAX over the ranks. Per hook, from its
        owner: wanted; the pass its store reads + 1 (0: not reading yet); low (fewer than
        ``MAX_QUEUED`` chunks queued and that pass's end not queued); the chunks of that pass it
        has been given. Then: this rank still trains."""
        n = len(self.hooks)
        v = torch.zeros(4 * n + 1, dtype=torch.int64)
        with self._cv:
            for i, h in enumerate(self.hooks):
                if h in self._queues and h in self._active:
                    k = self._reading.get(h)
                    v[i] = 1
                    if k is not None:
                        v[n + i] = k + 1
                        v[2 * n + i] = int(len(self._queues[h]) < MAX_QUEUED and self._ended.get(h) != k)
                        v[3 * n + i] = self._delivered[h]
            v[4 * n] = 0 if self._local_done else 1
        return v

    def _run(self) -> None:
        """Rounds in lockstep: agree on the state; advance the earliest pass a low store reads (from
        its start again when a store joins it late), one forward and one all-gather per hook
        reading that pass; queue a pass's end once every rank's shard of it is over."""
        dev = distributed._comm_device(self.dp)
        n, world = len(self.hooks), self.dp.world_size
        cur, batches, counter = None, None, 0  # the pass being read, its iterator, its chunks read
        try:
            while True:
                state = self._state().to(dev)
                dist.all_reduce(state, op=dist.ReduceOp.MAX)
                state = state.cpu().tolist()
                if not state[4 * n] or not any(state[:n]):
                    return  # every rank is done, or no hook is wanted any more
                reading = {h: state[n + i] - 1 for i, h in enumerate(self.hooks) if state[i] and state[n + i]}
                low = [h for i, h in enumerate(self.hooks) if h in reading and state[2 * n + i]]
                if not low:  # nobody reads yet, or every store has enough queued: wait for them
                    with self._cv:
                        self._cv.wait(timeout=0.005)
                    continue
                target = min(reading[h] for h in low)
                need = min(state[3 * n + self.hooks.index(h)] for h in low if reading[h] == target)
                if target != cur or need < counter:  # a new pass, or a store joined this one late
                    cur, batches, counter = target, iter(self.data), 0
                hooks = [h for h in self.hooks if reading.get(h) == target]
                batch = next(batches, None)
                local = self.adapter.collect_many(batch, hooks) if batch is not None else {}
                if batch is not None:
                    self.forwards += 1
                sizes = torch.zeros(world, dtype=torch.int64)
                sizes[self.dp.rank] = local[hooks[0]].vectors.shape[0] if batch is not None else 0
                sizes = sizes.to(dev)
                dist.all_reduce(sizes)  # each rank's rows this round (0: its shard of the pass is over)
                sizes = sizes.cpu()
                if not bool(sizes.any()):  # the pass is over on every rank
                    self._put(target, counter, {h: None for h in hooks})
                    continue
                got = {h: self._gather(local[h].vectors if batch is not None else None, sizes, dev) for h in hooks}
                self._put(target, counter, got)
                counter += int((sizes > 0).sum())
        except BaseException as err:  # noqa: BLE001 - handed to the training thread
            with self._cv:
                self._error = err
                self._cv.notify_all()

    def _gather(self, vectors: Tensor | None, sizes: Tensor, dev: torch.device) -> list[Tensor] | None:
        """Every rank's rows of one hook, in rank order (the owner keeps them, the others drop)."""
        top = int(sizes.max())
        d = torch.zeros(1, dtype=torch.int64)
        if vectors is not None:
            d[0] = vectors.shape[1]
        d = d.to(dev)
        dist.all_reduce(d, op=dist.ReduceOp.MAX)
        width = int(d.item())
        pad = torch.zeros(top, width, dtype=torch.float32, device=dev)
        if vectors is not None:
            pad[: vectors.shape[0]] = vectors.to(dev, torch.float32)
        parts = [torch.empty_like(pad) for _ in range(self.dp.world_size)]
        dist.all_gather(parts, pad)
        return [p[: int(s)].cpu() for p, s in zip(parts, sizes.tolist(), strict=True) if s]

    def _put(self, k: int, first: int, got: dict[str, list[Tensor] | None]) -> None:
        """Queue pass ``k``'s chunks ``first, first + 1, …`` (``None``: the pass's end) for the owned
        hooks reading it, each chunk once: a hook already given a chunk (before a restart) skips it."""
        with self._cv:
            for h, parts in got.items():
                if h not in self._queues or h not in self._active or self._reading.get(h) != k:
                    continue
                if parts is None:
                    if self._delivered[h] == first and self._ended.get(h) != k:  # it has every chunk
                        self._queues[h].append((k, None))
                        self._ended[h] = k
                    continue
                for c, part in enumerate(parts, start=first):
                    if c == self._delivered[h]:
                        self._queues[h].append((k, part))
                        self._delivered[h] += 1
                    elif c > self._delivered[h]:
                        raise RuntimeError(f"chunk {c} of pass {k} reached {h!r} before chunk {self._delivered[h]}")
            self._cv.notify_all()
