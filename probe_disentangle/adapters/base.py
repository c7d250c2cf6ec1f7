"""The protocol every host family implements, and the hook plumbing they share.

An adapter knows how to (1) list a host's hook names, (2) read the activation at a hook as
vectors ``[N, d]`` (what a "vector" is — one per token, per spatial position, per sample — is the
adapter's job), (3) replace it through an edit function, and (4) run the host on a data batch,
stopping after the deepest hook needed. Hooks exist only inside context managers that remove
exactly what they added, on any exit, exceptions included; contexts nest.

Adapters import nothing from heads, probes or the trainer.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

VectorFn = Callable[[Tensor], Tensor]


class HookError(ValueError):
    """An unknown or unusable hook point."""


class _StopForward(Exception):
    """Raised from a hook to end the host's forward once the deepest needed activation is read."""


@dataclass
class Activations:
    """Vectors read at a hook, and where each came from.

    ``vectors`` ``[N, d]``; ``index`` ``[N, 2]`` (row in the batch, position within it: token
    index, flattened spatial index, or 0 for one vector per sample); ``conditioning`` ``[N, c]``
    or None: what the adapter tells a head about each vector besides the vector itself (a
    diffusion UNet's timestep), the only way such a quantity reaches a head.
    """

    vectors: Tensor
    index: Tensor
    conditioning: Tensor | None = None


@dataclass
class InputRecord:
    """What one forward of a token host was given: ``tokens [B, T]``, the ``positions [B, T]`` of
    those tokens in their sequences (a KV-cached step continues after the cache), and the
    ``attention_mask`` covering the cache and these tokens (or None)."""

    tokens: Tensor
    positions: Tensor
    attention_mask: Tensor | None = None

    @property
    def offset(self) -> int:
        """How many positions came before these (0: a fresh sequence, not a cached step)."""
        return int(self.positions[:, 0].min()) if self.positions.numel() else 0


def _input_tokens(args: tuple, kwargs: dict) -> Any:
    for key in ("input_ids", "input", "tokens"):
        if kwargs.get(key) is not None:
            return kwargs[key]
    return args[0] if args else None


def past_length(kwargs: dict) -> int | None:
    """Cached positions a forward continues after, from the keyword arguments Hugging Face and
    TransformerLens pass (``cache_position``, ``past_key_values`` as a Cache or legacy tuples,
    ``past_kv_cache``); None when the call says nothing (a full forward)."""
    cp = kwargs.get("cache_position")
    if isinstance(cp, Tensor) and cp.numel():
        return int(cp.reshape(-1)[0])
    for key in ("past_key_values", "cache", "past_kv_cache"):
        cache = kwargs.get(key)
        if cache is None:
            continue
        if hasattr(cache, "get_seq_length"):
            return int(cache.get_seq_length())
        if isinstance(cache, (tuple, list)) and cache and isinstance(cache[0], (tuple, list)) and cache[0]:
            first = cache[0][0]
            if isinstance(first, Tensor):
                return int(first.shape[-2])
        entries = getattr(cache, "entries", None)  # TransformerLens HookedTransformerKeyValueCache
        if entries:
            keys = getattr(entries[0], "past_keys", None)
            if isinstance(keys, Tensor):
                return int(keys.shape[1])
    return None


def close_matches(name: str, names: list[str], n: int = 5) -> list[str]:
    hits = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    if not hits:  # fall back to names sharing the last component
        tail = name.rsplit(".", 1)[-1]
        hits = [h for h in names if h.endswith(tail)][:n]
    return hits


def _primary(output: Any) -> Tensor:
    """The activation tensor of a module output (HF blocks return tuples; take the first)."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    if hasattr(output, "sample") and isinstance(output.sample, Tensor):  # diffusers outputs
        return output.sample
    raise HookError(
        f"the hooked module returned {type(output).__name__}, not a tensor; hook a module that outputs a tensor"
    )


def _replace_primary(output: Any, new: Tensor) -> Any:
    if isinstance(output, Tensor):
        return new
    if isinstance(output, tuple):
        return (new, *output[1:])
    if isinstance(output, list):
        return [new, *output[1:]]
    output.sample = new
    return output


class Adapter:
    """Base adapter: hooks are PyTorch forward hooks on the module that produces the activation."""

    family = "torch_module"

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._live: list[torch.utils.hooks.RemovableHandle] = []

    # ---------------------------------------------------------------- names
    def hook_names(self) -> list[str]:
        raise NotImplementedError

    def check_hook(self, hook: str) -> None:
        """Raise :class:`HookError` naming the close matches if ``hook`` does not exist."""
        names = self.hook_names()
        if hook not in names:
            hits = close_matches(hook, names)
            hint = f"; did you mean {hits}?" if hits else f"; the host has {len(names)} hooks, e.g. {names[:5]}"
            raise HookError(f"unknown hook {hook!r} for this {type(self.model).__name__}{hint}")

    def module_for(self, hook: str) -> nn.Module:
        raise NotImplementedError

    def layer_of(self, hook: str) -> int | None:
        """Index of the block the hook sits in (None when outside the blocks)."""
        return None

    # ---------------------------------------------------------------- vector layout
    def to_vectors(self, act: Tensor, batch: Any) -> Activations:
        """Activation tensor → vectors. Default: one vector per sample, flattened."""
        flat = act.reshape(act.shape[0], -1)
        idx = torch.stack(
            [
                torch.arange(act.shape[0], device=act.device),
                torch.zeros(act.shape[0], dtype=torch.long, device=act.device),
            ],
            1,
        )
        return Activations(flat, idx)

    def edit_tensor(self, act: Tensor, fn: VectorFn) -> Tensor:
        """Apply ``fn`` to every vector of ``act`` and return the tensor in its own layout."""
        return fn(act.reshape(act.shape[0], -1)).reshape(act.shape)

    # ---------------------------------------------------------------- hooks
    @contextlib.contextmanager
    def hook(self, hook: str, fn: Callable[[Tensor], Tensor | None]) -> Iterator[None]:
        """Within the context, ``fn(activation)`` sees (and may replace) the activation at ``hook``."""
        self.check_hook(hook)
        module = self.module_for(hook)

        def _fwd(mod, args, output):
            new = fn(_primary(output))
            return None if new is None else _replace_primary(output, new)

        handle = module.register_forward_hook(_fwd)
        self._live.append(handle)
        try:
            yield
        finally:
            handle.remove()
            self._live.remove(handle)

    @contextlib.contextmanager
    def edit(self, hook: str, fn: VectorFn) -> Iterator[None]:
        """Within the context, every forward of the host has its vectors at ``hook`` replaced by ``fn(vectors)``."""
        with self.hook(hook, lambda act: self.edit_tensor(act, fn)):
            yield

    @contextlib.contextmanager
    def track_inputs(self) -> Iterator[list[InputRecord]]:
        """Within the context, every forward of the host appends an :class:`InputRecord` (its token
        ids and their positions) to the yielded list, before any layer runs: how a token id or a
        position reaches a head as conditioning, for prompts and KV-cached steps alike.

        Positions come from ``position_ids`` when the call passes them, else from the cache length
        (:func:`past_length`) plus 0..T-1; a call with neither is a full forward from position 0."""
        records: list[InputRecord] = []

        def _pre(mod, args, kwargs):
            tokens = _input_tokens(args, kwargs)
            if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.is_floating_point():
                raise TypeError(
                    "conditioning on tokens needs the host called with token ids [batch, positions] "
                    f"(got {type(tokens).__name__}); tokenize first (model.to_tokens / a tokenizer)"
                )
            pos = kwargs.get("position_ids")
            if not isinstance(pos, Tensor):
                start = past_length(kwargs) or 0
                pos = torch.arange(start, start + tokens.shape[1], device=tokens.device).expand_as(tokens)
            mask = kwargs.get("attention_mask")
            records.append(InputRecord(tokens, pos.expand_as(tokens), mask if isinstance(mask, Tensor) else None))

        handle = self.model.register_forward_pre_hook(_pre, with_kwargs=True)
        self._live.append(handle)
        try:
            yield records
        finally:
            handle.remove()
            self._live.remove(handle)

    @property
    def live_hooks(self) -> int:
        """Hooks this adapter has registered and not yet removed (0 outside every context)."""
        return len(self._live)

    # ---------------------------------------------------------------- running
    def forward(self, batch: Any, stop_after: str | None = None) -> Any:
        """Run the host on ``batch``; with ``stop_after``, end the forward once that hook ran."""
        if stop_after is None:
            return self._call(batch)
        self.check_hook(stop_after)

        def _stop(act):
            raise _StopForward

        with contextlib.suppress(_StopForward), self.hook(stop_after, _stop):
            return self._call(batch)
        return None

    def _call(self, batch: Any) -> Any:
        if isinstance(batch, dict):
            return self.model(**batch)
        if isinstance(batch, (tuple, list)):
            return self.model(*batch)
        return self.model(batch)

    @torch.no_grad()
    def collect(self, batch: Any, hook: str, stop: bool = True) -> Activations:
        """Read the vectors at ``hook`` for one batch (no grad; the forward stops after the hook)."""
        store: list[Tensor] = []

        def _read(act):
            store.append(act.detach())

        # the reader is registered before the stopper, so it runs first
        with self.hook(hook, _read):
            self.forward(batch, stop_after=hook if stop else None)
        if not store:
            raise HookError(f"hook {hook!r} never ran during the forward; is it on the path of this input?")
        return self.to_vectors(store[0], batch)

    # ---------------------------------------------------------------- several hooks, one forward
    def check_hooks(self, hooks: Sequence[str]) -> list[str]:
        """``hooks`` as a list, checked: at least one, no name twice, each a hook of the host."""
        if isinstance(hooks, str) or not isinstance(hooks, Sequence):
            raise TypeError(f"hooks must be a list of hook names, got {type(hooks).__name__}; e.g. [{hooks!r}]")
        hooks = list(hooks)
        if not hooks:
            raise ValueError("no hooks given: name at least one hook point")
        dup = sorted({h for h in hooks if hooks.count(h) > 1})
        if dup:
            raise ValueError(f"hook {dup[0]!r} is named twice; name each hook once")
        for h in hooks:
            self.check_hook(h)
        return hooks

    @contextlib.contextmanager
    def stop_when_all_ran(self, hooks: Sequence[str]) -> Iterator[None]:
        """Within the context, a host forward ends as soon as every hook in ``hooks`` has run once:
        after the deepest of them, whatever their order in the network. Enter it after the readers'
        contexts, so that each hook's reader runs before its stopper."""
        ran: set[str] = set()

        def _mark(hook: str):
            def _fn(act):
                ran.add(hook)
                if len(ran) == len(hooks):
                    raise _StopForward

            return _fn

        with contextlib.ExitStack() as stack:
            for h in hooks:
                stack.enter_context(self.hook(h, _mark(h)))
            yield

    def _call_for(self, batch: Any, hooks: Sequence[str]) -> Any:
        """Run the host on ``batch`` for reading ``hooks`` (the host family may truncate natively)."""
        return self._call(batch)

    @torch.no_grad()
    def collect_many(self, batch: Any, hooks: Sequence[str]) -> dict[str, Activations]:
        """:meth:`collect` for several hooks from one host forward, which ends after the deepest
        of them. Each hook's vectors are those :meth:`collect` reads there (one hook: the same call)."""
        hooks = self.check_hooks(hooks)
        if len(hooks) == 1:
            return {hooks[0]: self.collect(batch, hooks[0])}
        store: dict[str, Tensor] = {}

        def _reader(hook: str):
            def _read(act):
                store.setdefault(hook, act.detach())  # the first run of the hook, as collect reads

            return _read

        with contextlib.ExitStack() as stack:
            for h in hooks:
                stack.enter_context(self.hook(h, _reader(h)))
            stack.enter_context(self.stop_when_all_ran(hooks))
            with contextlib.suppress(_StopForward):
                self._call_for(batch, hooks)
        missing = [h for h in hooks if h not in store]
        if missing:
            raise HookError(f"hook {missing[0]!r} never ran during the forward; is it on the path of this input?")
        return {h: self.to_vectors(store[h], batch) for h in hooks}
