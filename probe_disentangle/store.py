"""ActivationStore: stream a host's activations at one hook into training batches.

Collection runs under ``no_grad`` and stops the host's forward after the hook. Vectors go into
a shuffle buffer (on the GPU when there is one) that, once full, is shuffled and serves half
while keeping the other half to mix with fresh activations (as SAELens does), so consecutive
batches do not come from the same few sequences. Memory is bounded by the buffer whatever the
data size. Optionally every collected vector is also written to a disk cache of safetensors
shards, which later runs read by memory map instead of running the host again.

With ``pairs=True`` the data yields pairs of host batches (two inputs that differ in some
factors, which ones unsaid: minimal pairs, contrast pairs) and the store keeps each pair's two
vectors together through the shuffle and the cache, serving batches ``[batch, 2, d]`` for pair
training (Ada-GVAE, :mod:`probe_disentangle.heads.pairs`).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from . import io
from .adapters.base import Adapter

log = logging.getLogger(__name__)

CACHE_MANIFEST = "manifest.json"
SHARD_PATTERN = "shard_{:05d}.safetensors"


@dataclass
class Normalizer:
    """Per-dimension standardisation (a − mean) / std, saved with a probe."""

    mean: Tensor
    std: Tensor

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x)) / self.std.to(x)

    def inverse(self, x: Tensor) -> Tensor:
        return x * self.std.to(x) + self.mean.to(x)

    def scale(self, x: Tensor) -> Tensor:
        """A difference in normalised units → activation units (no shift)."""
        return x * self.std.to(x)

    def pooled_over_positions(self, map_shape: tuple[int, int, int] | list[int]) -> Normalizer:
        """The same statistics with one mean and std per channel of flattened ``[C, H, W]`` maps
        (a channel's variance over every position: within plus between positions), expanded back
        to every position. A head on maps decodes each position with shared weights; per-position
        scales would stretch a quiet border's noise to the size of the object's signal."""
        c, h, w = (int(v) for v in map_shape)
        if c * h * w != self.mean.numel():
            raise ValueError(
                f"map_shape {[c, h, w]} holds {c * h * w} values but the vectors have {self.mean.numel()}: pass the "
                "shape of one collected map [C, H, W] (a flattened layout, one vector per map)"
            )
        mean, var = self.mean.reshape(c, h * w).double(), self.std.reshape(c, h * w).double() ** 2
        m = mean.mean(1, keepdim=True)
        v = (var + (mean - m) ** 2).mean(1, keepdim=True)
        return Normalizer(m.expand(c, h * w).reshape(-1).float(), v.sqrt().expand(c, h * w).reshape(-1).float())

    @classmethod
    def identity(cls, d: int) -> Normalizer:
        return cls(torch.zeros(d), torch.ones(d))


class RunningStats:
    """Streaming mean and variance (Chan et al.'s parallel update), in float64."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def update(self, x: Tensor) -> None:
        x = x.detach().to(torch.float64)
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        if self.mean is None:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        delta = mean_b - self.mean
        tot = self.n + n_b
        self.mean = self.mean + delta * n_b / tot
        self.m2 = self.m2 + m2_b + delta**2 * self.n * n_b / tot
        self.n = tot

    def normalizer(self, eps: float = 1e-6) -> Normalizer:
        if self.n < 2:
            raise ValueError("need at least 2 vectors to estimate normalisation statistics")
        var = self.m2 / (self.n - 1)
        return Normalizer(self.mean.float().cpu(), var.sqrt().clamp_min(eps).float().cpu())


@dataclass
class _OpenPass:
    """A pass over the data begun by ``collect``/``estimate_normalizer`` and paused: its chunks
    read so far, and the rest still to come."""

    chunks: Iterator[Tensor]
    read: list[Tensor] = field(default_factory=list)
    rows: int = 0
    done: bool = False


@dataclass
class _SharedPass:
    """One pass of a :class:`SharedForward` over the data: its batches (opened on first use), the
    vectors read for each hook and not yet taken, and whether the data has run out."""

    queues: dict[str, deque[Tensor]]
    batches: Iterator[Any] | None = None
    done: bool = False


class SharedForward:
    """One host forward per data batch for several hooks, each read by its own
    :class:`ActivationStore` (pass the ``SharedForward`` as the store's ``data``).

    Each store makes its own passes over the data. The k-th pass of every store is the same
    source pass: whichever store first needs a batch that pass has not read yet runs the host on
    it (:meth:`Adapter.collect_many`: every hook still reading that pass, the forward ending after
    the deepest) and queues each other hook's vectors until its store takes them. So every store
    gets exactly the chunks a store of its own would read, while the host runs once per batch
    per pass. Queues hold what the slowest store has not taken yet; a driver that always advances
    the store with the fewest chunks taken (:meth:`taken`) keeps that within about one shuffle
    buffer. :meth:`release` a hook whose store is done, so later forwards stop reading it (and
    stop earlier when it was the deepest).
    """

    def __init__(self, adapter: Adapter, hooks: Sequence[str], data: Iterable[Any]) -> None:
        self.adapter = adapter
        self.hooks = adapter.check_hooks(hooks)
        self.data = data
        self.forwards = 0  # host forwards run so far
        self._active = list(self.hooks)
        self._passes: list[_SharedPass | None] = []
        self._next_pass = dict.fromkeys(self.hooks, 0)
        self._taken = dict.fromkeys(self.hooks, 0)

    def taken(self, hook: str) -> int:
        """Chunks (host batches) ``hook``'s store has taken so far, over all its passes."""
        return self._taken[hook]

    def chunks(self, hook: str) -> Iterator[Tensor]:
        """``hook``'s next pass over the data, as the raw vectors of each host batch."""
        if hook not in self._next_pass:
            raise KeyError(f"hook {hook!r} is not read by this SharedForward (it reads {self.hooks})")
        if hook not in self._active:
            raise RuntimeError(f"hook {hook!r} was released; a released hook is read no more")
        k = self._next_pass[hook]
        self._next_pass[hook] = k + 1
        while len(self._passes) <= k:  # a new pass reads every hook still active
            self._passes.append(_SharedPass({h: deque() for h in self._active}))
        p = self._passes[k]
        try:
            while True:
                q = p.queues[hook]
                if q:
                    self._taken[hook] += 1
                    yield q.popleft()
                elif p.done:
                    return
                else:
                    self._read(p)
        finally:  # this hook's pass is over (or abandoned): drop its queue, and the pass when all are
            self._leave(k, hook)

    def release(self, hook: str) -> None:
        """``hook``'s store needs no more vectors: drop its queues and read it no more."""
        if hook in self._active:
            self._active.remove(hook)
        for k in range(len(self._passes)):
            self._leave(k, hook)

    def _leave(self, k: int, hook: str) -> None:
        p = self._passes[k]
        if p is not None:
            p.queues.pop(hook, None)
            if not p.queues:
                self._passes[k] = None

    def _read(self, p: _SharedPass) -> None:
        """Run the host on the pass's next batch for every hook still reading the pass."""
        if p.batches is None:
            p.batches = iter(self.data)
        try:
            batch = next(p.batches)
        except StopIteration:
            p.done = True
            return
        hooks = [h for h in self.hooks if h in p.queues]
        acts = self.adapter.collect_many(batch, hooks)
        self.forwards += 1
        for h in hooks:
            p.queues[h].append(acts[h].vectors)


class ActivationStore:
    """Vectors at ``hook`` of ``adapter``'s host over ``data`` (an iterable of host input batches,
    or a :class:`SharedForward` that reads this hook among others from one host forward).

    Iterate to get shuffled training batches ``[batch_size, d]`` (normalised when a normaliser is
    set). ``buffer_size`` bounds memory (in vectors); ``cache_dir`` writes/reads safetensors
    shards; ``device`` holds the buffer (default: CUDA when available).

    ``pairs=True``: ``data`` yields ``(batch_a, batch_b)``, two host batches whose vectors at the
    hook correspond row by row (same count); batches are ``[batch_size, 2, d]``, each row one
    pair, one shuffle for both halves; :meth:`collect` returns ``[n, 2, d]``; the statistics and
    the normaliser are those of every vector of both halves.
    """

    def __init__(
        self,
        adapter: Adapter,
        hook: str,
        data: Iterable[Any],
        batch_size: int = 256,
        buffer_size: int = 65_536,
        device: str | torch.device | None = None,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        normalizer: Normalizer | None = None,
        dtype: torch.dtype = torch.float32,
        pairs: bool = False,
    ) -> None:
        if buffer_size < 2 * batch_size:
            raise ValueError(
                f"buffer_size ({buffer_size}) must hold at least two batches ({2 * batch_size}) to shuffle"
            )
        adapter.check_hook(hook)
        if isinstance(data, SharedForward) and (data.adapter is not adapter or hook not in data.hooks):
            raise ValueError(
                f"this SharedForward reads hooks {data.hooks} of its own adapter; build the store with that "
                f"adapter and one of those hooks (got {hook!r})"
            )
        if isinstance(data, SharedForward) and cache_dir is not None:
            # a store reading its cache would leave its hook's vectors queued in the shared forward
            raise ValueError("a store fed by a SharedForward reads the host, not a cache: drop cache_dir")
        if pairs and isinstance(data, SharedForward):
            raise ValueError(
                "a paired store reads its own pairs of host batches: pass them as data, not a SharedForward"
            )
        self.pairs = bool(pairs)
        self.adapter, self.hook, self.data = adapter, hook, data
        self.batch_size, self.buffer_size = batch_size, buffer_size
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.generator = torch.Generator().manual_seed(seed)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.normalizer = normalizer
        self.dtype = dtype
        self.stats = RunningStats()
        self.vectors_seen = 0
        self._open: _OpenPass | None = None
        # the position in the data: the state at the start of the current pass, the batches it
        # has served, and a position to start the next pass from (load_stream_state)
        self._pass_start: dict[str, Any] | None = None
        self._served = 0
        self._seek: dict[str, Any] | None = None
        self._host_passes = 0  # full runs of the host over ``data`` (a second one without a cache is said once)

    # ---------------------------------------------------------------- raw chunks
    def _host_chunks(self) -> Iterator[Tensor]:
        if isinstance(self.data, SharedForward):
            yield from self.data.chunks(self.hook)
            return
        self._host_passes += 1
        if self._host_passes == 2 and self.cache_dir is None and not isinstance(self.data, Iterator):
            log.warning(
                "the host runs over all of its data again (pass 2 at %s): every further pass reruns it; pass "
                "cache_dir= to collect the vectors once and read them back on later passes",
                self.hook,
            )
        for i, batch in enumerate(self.data):
            if not self.pairs:
                yield self.adapter.collect(batch, self.hook).vectors
                continue
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise TypeError(
                    f"item {i} of a paired store's data is a {type(batch).__name__}, not a pair: yield "
                    "(batch_a, batch_b), two host batches whose vectors correspond row by row"
                )
            a, b = (self.adapter.collect(x, self.hook).vectors for x in batch)
            if a.shape != b.shape:
                raise ValueError(
                    f"pair {i}: the two host batches give {tuple(a.shape)} and {tuple(b.shape)} vectors at "
                    f"{self.hook}; pair inputs of the same length (same tokens count, same batch size)"
                )
            yield torch.cat([a, b], 1)  # one row per pair: [a | b], shuffled together

    def _cached(self) -> bool:
        return self.cache_dir is not None and (self.cache_dir / CACHE_MANIFEST).is_file()

    def _manifest(self) -> dict[str, Any]:
        """The cache's manifest, checked: its hook, its width and a list of shards."""
        path = self.cache_dir / CACHE_MANIFEST
        fix = f"delete {self.cache_dir} to rebuild the cache"
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"the cache manifest {path} is not valid JSON ({err}); {fix}") from err
        if (
            not isinstance(manifest, dict)
            or not isinstance(manifest.get("shards"), list)
            or not all(isinstance(sh, dict) and isinstance(sh.get("file"), str) for sh in manifest["shards"])
            or not isinstance(manifest.get("d"), int)
        ):
            raise ValueError(f"the cache manifest {path} lacks its hook, width 'd' or list of shards; {fix}")
        if bool(manifest.get("pairs", False)) != self.pairs:
            held = "pairs" if manifest.get("pairs") else "single vectors"
            raise ValueError(
                f"the cache in {self.cache_dir} holds {held}, this store reads "
                f"{'pairs' if self.pairs else 'single vectors'}; use another cache_dir"
            )
        if manifest.get("hook") != self.hook:
            raise ValueError(
                f"the cache in {self.cache_dir} holds hook {manifest.get('hook')!r}, not {self.hook!r}; use another cache_dir"
            )
        return manifest

    def _cache_chunks(self) -> Iterator[Tensor]:
        manifest = self._manifest()
        fix = f"delete {self.cache_dir} to rebuild the cache"
        for shard in manifest["shards"]:
            path = self.cache_dir / shard["file"]
            if Path(shard["file"]).name != shard["file"]:
                raise ValueError(f"the cache manifest names a shard outside its folder ({shard['file']!r}); {fix}")
            if not path.is_file():
                raise FileNotFoundError(f"cache shard {path} is missing; {fix}")
            try:
                with safe_open(str(path), framework="pt") as f:  # memory-mapped
                    vectors = f.get_tensor("vectors")
            except (SafetensorError, OSError, KeyError) as err:
                raise ValueError(f"cache shard {path} is not a readable safetensors file ({err}); {fix}") from err
            if vectors.ndim != 2 or vectors.shape[1] != manifest["d"]:
                raise ValueError(
                    f"cache shard {path} holds vectors of shape {tuple(vectors.shape)}, but the cache's width is "
                    f"{manifest['d']}; {fix}"
                )
            if "rows" in shard and shard["rows"] != vectors.shape[0]:
                raise ValueError(
                    f"cache shard {path} holds {vectors.shape[0]} rows, the manifest {shard['rows']}; {fix}"
                )
            yield vectors

    def _pass(self) -> Iterator[Tensor]:
        """One pass over the raw chunks: from the cache if complete, else from the host (writing the
        cache as it goes when ``cache_dir`` is set)."""
        if self._cached():
            yield from self._cache_chunks()
            return
        shards: list[dict[str, Any]] = []
        d = 0
        for i, chunk in enumerate(self._host_chunks()):
            d = int(chunk.shape[1])
            if self.cache_dir is not None:
                name = SHARD_PATTERN.format(i)
                io.atomic_write_bytes(self.cache_dir / name, io.tensors_to_bytes({"vectors": chunk}))
                shards.append({"file": name, "rows": int(chunk.shape[0])})
            yield chunk
        if self.cache_dir is not None:  # written last: a cache without a manifest is never read
            manifest = {"hook": self.hook, "shards": shards, "d": d, "pairs": self.pairs}
            io.atomic_write_json(self.cache_dir / CACHE_MANIFEST, manifest)

    def _read_until(self, n: int | None) -> list[Tensor]:
        """The first chunks of the open pass (opening one if none is open), read on until they hold
        ≥ ``n`` vectors (None: the whole data). They are kept for the next :meth:`chunks`."""
        if self._open is None:
            self._open = _OpenPass(self._pass())
        p = self._open
        while not p.done and (n is None or p.rows < n):
            try:
                chunk = next(p.chunks)
            except StopIteration:
                p.done = True
                break
            p.read.append(chunk)
            p.rows += chunk.shape[0]
        return p.read

    def chunks(self) -> Iterator[Tensor]:
        """Raw (unnormalised) vectors chunk by chunk, one pass over the data. A pass that
        :meth:`collect` or :meth:`estimate_normalizer` began is carried on, its chunks already read
        served first: the host runs once over each batch, and a one-shot iterator loses nothing."""
        p, self._open = self._open, None
        if p is None:
            yield from self._pass()
            return
        read, p.read = p.read, []
        while read:
            yield read.pop(0)  # released as served
        if not p.done:
            yield from p.chunks

    # ---------------------------------------------------------------- statistics
    def _vectors(self, rows: Tensor) -> Tensor:
        """Stored rows → vectors: ``[n, d]`` as they are; a paired row ``[a | b]`` → ``[n, 2, d]``."""
        return rows.reshape(rows.shape[0], 2, -1) if self.pairs else rows

    def _update_stats(self, stats: RunningStats, rows: Tensor) -> None:
        stats.update(rows.reshape(-1, rows.shape[1] // 2) if self.pairs else rows)

    def estimate_normalizer(
        self, max_vectors: int = 100_000, reduce: Callable[[RunningStats], RunningStats] | None = None
    ) -> Normalizer:
        """Fix the normaliser from the first ``max_vectors`` vectors (pairs: pairs; saved with the probe).
        ``reduce``: combines the statistics with other processes' (a data-parallel fit passes
        ``distributed.reduce_stats``, so every rank gets the statistics of all ranks' vectors)."""
        stats = RunningStats()
        for chunk in self._read_until(max_vectors):
            self._update_stats(stats, chunk[: max_vectors - stats.n // (2 if self.pairs else 1)])
            if stats.n >= max_vectors * (2 if self.pairs else 1):
                break
        if reduce is not None:
            stats = reduce(stats)
        self.normalizer = stats.normalizer()
        return self.normalizer

    def collect(self, max_vectors: int | None = None) -> Tensor:
        """The first ``max_vectors`` vectors (None: all; normalised if a normaliser is set) in
        collection order (pairs: ``[n, 2, d]``). What it reads is served again by the next pass,
        not recomputed."""
        out, n = [], 0
        for chunk in self._read_until(max_vectors):
            if max_vectors is not None:
                chunk = chunk[: max_vectors - n]
            out.append(chunk.to(self.dtype))
            n += chunk.shape[0]
            if max_vectors is not None and n >= max_vectors:
                break
        if n == 0:
            raise ValueError("the data produced no activation vectors")
        x = self._vectors(torch.cat(out))
        return self.normalizer(x) if self.normalizer is not None else x

    # ---------------------------------------------------------------- the position in the data
    def _snapshot(self) -> dict[str, Any]:
        st = self.stats
        return {
            "generator": self.generator.get_state(),
            "vectors_seen": self.vectors_seen,
            "stats": {"n": st.n, "mean": st.mean, "m2": st.m2},
        }

    def stream_state(self) -> dict[str, Any]:
        """Where the iteration stands: the shuffle generator, the statistics and the vector count
        at the start of the current pass, and how many batches that pass has served. Small (the
        buffer itself is not saved): :meth:`load_stream_state` recomputes the pass up to there."""
        start = self._pass_start if self._pass_start is not None else self._snapshot()
        return {**start, "served": self._served}

    def load_stream_state(self, state: dict[str, Any]) -> None:
        """Make the next pass (``iter(store)``) carry on from a :meth:`stream_state`: it restarts the
        saved pass from its recorded start and skips the batches already served, so it yields
        exactly what the interrupted pass would have yielded next. Earlier passes are not rerun;
        the host reruns over the current pass's data up to the position."""
        if not {"generator", "vectors_seen", "stats", "served"} <= set(state):
            raise ValueError(
                f"not an ActivationStore stream state (keys {sorted(state)}); pass what stream_state() returned"
            )
        self._seek = dict(state)

    # ---------------------------------------------------------------- the shuffle buffer
    def __iter__(self) -> Iterator[Tensor]:
        """One pass over the data as shuffled batches (the last partial batch is dropped)."""
        seek, self._seek = self._seek, None
        skip = 0
        if seek is not None:
            self.generator.set_state(seek["generator"])
            self.vectors_seen = int(seek["vectors_seen"])
            st = seek["stats"]
            self.stats = RunningStats()
            self.stats.n = int(st["n"])
            self.stats.mean, self.stats.m2 = (None if t is None else t.to(self.device) for t in (st["mean"], st["m2"]))
            skip = int(seek["served"])
        self._pass_start, self._served = self._snapshot(), 0
        for batch in self._shuffled():
            self._served += 1
            if self._served > skip:
                yield batch

    def _shuffled(self) -> Iterator[Tensor]:
        buf = torch.empty(0, device=self.device, dtype=self.dtype)
        pending: list[Tensor] = []  # chunks not yet in buf: one concatenation per refill, not per chunk
        n_pending = 0
        d = None
        seen_before = self.vectors_seen
        for chunk in self.chunks():
            chunk = chunk.to(self.device, self.dtype, non_blocking=True)
            self._update_stats(self.stats, chunk)
            self.vectors_seen += chunk.shape[0]
            if d is None:
                d = chunk.shape[1]
                buf = torch.empty(0, d, device=self.device, dtype=self.dtype)
            pending.append(chunk)
            n_pending += chunk.shape[0]
            if buf.shape[0] + n_pending < self.buffer_size:
                continue
            buf = torch.cat([buf, *pending])
            pending, n_pending = [], 0
            while buf.shape[0] >= self.buffer_size:
                buf = buf[self._perm(buf.shape[0])]
                half = max(self.batch_size, (buf.shape[0] // 2) // self.batch_size * self.batch_size)
                serve, buf = buf[:half], buf[half:]  # serve half, keep half to mix with fresh vectors
                yield from self._batches(serve)
        if pending:
            buf = torch.cat([buf, *pending])
        if self.vectors_seen - seen_before < self.batch_size:
            raise ValueError(
                f"the data gave {self.vectors_seen - seen_before} activation vectors, fewer than one batch of "
                f"{self.batch_size}: pass more data or a smaller batch_size"
            )
        if buf.shape[0]:
            yield from self._batches(buf[self._perm(buf.shape[0])])

    def _perm(self, n: int) -> Tensor:
        return torch.randperm(n, generator=self.generator).to(self.device)

    def _batches(self, x: Tensor) -> Iterator[Tensor]:
        for s in range(0, x.shape[0] - self.batch_size + 1, self.batch_size):
            b = self._vectors(x[s : s + self.batch_size])
            yield self.normalizer(b) if self.normalizer is not None else b
