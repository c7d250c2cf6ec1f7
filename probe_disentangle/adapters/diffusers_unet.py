"""diffusers UNets (``UNet2DModel``, ``UNet2DConditionModel``) and pipelines holding one.

Hooks are addressed by block path inside the UNet: ``mid_block`` (h-space, Kwon et al. 2023,
"Diffusion models already have a semantic latent space"), ``down_blocks.N``, ``up_blocks.N`` or
any submodule name. A pipeline (``DDPMPipeline``, ``DDIMPipeline``, ``StableDiffusionPipeline``,
anything with a ``.unet``) is duck-typed: the adapter hooks its UNet, so the pipeline's own
sampling loop runs edited.

Every hook context also puts a forward-pre-hook on the UNet that reads the timestep of each
forward (its second argument or ``timestep=``), so the adapter knows ``t`` for every row of the
batch. A timestep reaches a head only as the conditioning tensor the adapter gives with the
vectors (``Activations.conditioning``, ``[N, 1]`` float, one per vector). Collection can keep only
chosen timesteps; edits can be limited to a window ``t_min ≤ t ≤ t_max``.

What a vector is (``layout``): ``flatten`` (one per sample: the whole ``[C, H, W]`` map),
``pool`` (one per sample: the spatial mean ``[C]``; an edit adds the change of the mean at every
position) or ``positions`` (one per spatial position ``[C]``).

diffusers itself is needed only to load a UNet (:func:`load_unet`); it is imported lazily there.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .base import (
    Activations,
    Adapter,
    HookError,
    VectorFn,
    _primary,
    _replace_primary,
    _StopForward,
    close_matches,
)

LAYOUTS = ("flatten", "pool", "positions")
UNET_TYPES = ("UNet2DModel", "UNet2DConditionModel")
# Asyrp (Kwon et al. 2023) edits h-space only in the early, high-noise part of sampling, where the
# content of the image is decided (later steps add detail and undo edits that change content);
# the fraction of the schedule from its noisy end that default_window() covers
EARLY_FRACTION = 0.5


def _is_unet(obj: Any) -> bool:
    names = {c.__name__ for c in type(obj).__mro__}
    return isinstance(obj, nn.Module) and bool(names & set(UNET_TYPES) or any("UNet" in n for n in names))


def is_diffusers_unet(model: Any) -> bool:
    """A diffusers UNet, or a pipeline (anything) whose ``.unet`` is one."""
    return _is_unet(model) or _is_unet(getattr(model, "unet", None))


def load_unet(directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A ``UNet2DModel`` or ``UNet2DConditionModel`` from a local folder (diffusers'
    ``from_pretrained``, safetensors only, no network); the class comes from its config."""
    from ..diffusion import import_diffusers

    diffusers = import_diffusers()
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} has no config.json: pass a folder written by a UNet's save_pretrained")
    name = json.loads((directory / "config.json").read_text()).get("_class_name")
    if name not in UNET_TYPES:
        raise ValueError(f"{directory} holds a {name!r}, not one of {UNET_TYPES}")
    cls = getattr(diffusers, name)
    return cls.from_pretrained(directory, use_safetensors=True, local_files_only=True).to(device).eval()


def default_window(num_train_timesteps: int, fraction: float = EARLY_FRACTION) -> tuple[int, int]:
    """The early (high-noise) share ``fraction`` of the schedule, ``(t_min, t_max)``: Asyrp's edit interval."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return int(round((1.0 - fraction) * num_train_timesteps)), num_train_timesteps - 1


class _Timesteps:
    """The timestep of the UNet forward in progress, per row of its batch (set by a pre-hook)."""

    def __init__(self) -> None:
        self.t: Tensor | None = None

    def pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs.get("sample")
        t = args[1] if len(args) > 1 else kwargs.get("timestep")
        if sample is None or t is None:
            raise HookError("the UNet was called without a sample and a timestep; call it as unet(sample, timestep)")
        t = torch.as_tensor(t).detach().flatten().to("cpu", torch.float32)
        b = sample.shape[0]
        if t.numel() == 1:
            t = t.expand(b)
        elif t.numel() != b:
            raise HookError(f"the UNet got {t.numel()} timesteps for a batch of {b}; pass one or one per sample")
        self.t = t.clone()


class Recording:
    """What :meth:`DiffusersUNetAdapter.record` gathered: one :class:`Activations` per UNet forward."""

    def __init__(self) -> None:
        self.parts: list[Activations] = []

    def activations(self) -> Activations:
        """All recorded vectors at once (``index[:, 0]``: row within its forward's batch)."""
        if not self.parts:
            raise HookError("nothing was recorded: no UNet forward ran in the context, or no timestep was kept")
        cond = [p.conditioning for p in self.parts]
        return Activations(
            torch.cat([p.vectors for p in self.parts]),
            torch.cat([p.index for p in self.parts]),
            torch.cat(cond) if all(c is not None for c in cond) else None,
        )


class DiffusersUNetAdapter(Adapter):
    """Hooks on a diffusers UNet (given directly or as a pipeline's ``.unet``), by block path.

    ``layout``: what a vector is (``flatten``, ``pool`` or ``positions``); ``timesteps``: keep
    only forwards at these timesteps when collecting (None: all).
    """

    family = "diffusers_unet"

    def __init__(self, model: Any, layout: str = "flatten", timesteps: Collection[int] | None = None) -> None:
        unet = model if _is_unet(model) else getattr(model, "unet", None)
        if not _is_unet(unet):
            raise TypeError(
                f"a {type(model).__name__} is not a diffusers UNet and holds none as .unet; pass a UNet2DModel, "
                "a UNet2DConditionModel or a pipeline holding one"
            )
        super().__init__(unet)
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
        self.host = model
        self.layout = layout
        self.timesteps = None if timesteps is None else frozenset(int(t) for t in timesteps)
        self._clock: _Timesteps | None = None  # the innermost context's timestep reader

    # ---------------------------------------------------------------- names
    def hook_names(self) -> list[str]:
        return [name for name, _ in self.model.named_modules() if name]

    def block_paths(self) -> list[str]:
        """The UNet's top-level blocks by path (``down_blocks.0`` ... ``mid_block`` ... ``up_blocks.N``)."""
        out = []
        for name, child in self.model.named_children():
            if isinstance(child, nn.ModuleList):
                out += [f"{name}.{i}" for i in range(len(child))]
            else:
                out.append(name)
        return out

    def check_hook(self, hook: str) -> None:
        names = self.hook_names()
        if hook not in names:
            hits = close_matches(hook, names)
            near = f"; close matches: {hits}" if hits else ""
            raise HookError(
                f"unknown block path {hook!r} for this {type(self.model).__name__}{near}; valid block paths: "
                f"{self.block_paths()} (or any submodule name, e.g. {names[1:4]})"
            )

    def module_for(self, hook: str) -> nn.Module:
        return self.model.get_submodule(hook)

    # ---------------------------------------------------------------- vector layout
    def to_vectors(self, act: Tensor, batch: Any, t: Tensor | None = None) -> Activations:
        """Activation ``[B, C, H, W]`` (or ``[B, d]``) → vectors, with the timestep per vector."""
        if act.ndim != 4 and self.layout != "flatten":
            raise HookError(f"layout {self.layout!r} needs a [B, C, H, W] activation, got {tuple(act.shape)}")
        B = act.shape[0]
        rows = torch.arange(B, device=act.device)
        if self.layout == "positions":
            _, C, H, W = act.shape
            vec = act.permute(0, 2, 3, 1).reshape(B * H * W, C)  # (B·H·W, C)
            idx = torch.stack([rows.repeat_interleave(H * W), torch.arange(H * W, device=act.device).repeat(B)], 1)
            tt = None if t is None else t.repeat_interleave(H * W)
        else:
            vec = act.mean(dim=(2, 3)) if self.layout == "pool" else act.reshape(B, -1)
            idx = torch.stack([rows, torch.zeros_like(rows)], 1)
            tt = t
        cond = None if tt is None else tt.to(act.device, torch.float32)[:, None]
        return Activations(vec, idx, cond)

    def edit_tensor(self, act: Tensor, fn: VectorFn) -> Tensor:
        """``act`` with its vectors replaced by ``fn(vectors)``, in ``act``'s own memory layout: a
        UNet block's output is often channels-last, and handing the next block the same values in
        another layout changes its kernels' rounding (an empty edit would not be bit-identical)."""
        if self.layout == "positions":
            B, C, H, W = act.shape
            new = fn(act.permute(0, 2, 3, 1).reshape(-1, C)).reshape(B, H, W, C).permute(0, 3, 1, 2)
        elif self.layout == "pool":
            pooled = act.mean(dim=(2, 3))
            new = act + (fn(pooled) - pooled)[:, :, None, None]
        else:
            new = fn(act.reshape(act.shape[0], -1)).reshape(act.shape)
        return torch.empty_like(act).copy_(new)

    # ---------------------------------------------------------------- hooks
    @property
    def current_timesteps(self) -> Tensor | None:
        """The timestep per row of the UNet forward in progress (inside a hook context), else None."""
        return None if self._clock is None else self._clock.t

    @contextlib.contextmanager
    def hook(self, hook: str, fn: Callable[..., Tensor | None], with_timesteps: bool = False) -> Iterator[None]:
        """Within the context ``fn(activation)`` (or ``fn(activation, t)`` with ``with_timesteps``,
        ``t`` ``[B]``) sees and may replace the activation at ``hook``; a pre-hook on the UNet
        reads each forward's timestep. Both hooks are removed on any exit."""
        self.check_hook(hook)
        module = self.module_for(hook)
        clock, outer = _Timesteps(), self._clock

        def _fwd(mod, args, output):
            act = _primary(output)
            new = fn(act, clock.t) if with_timesteps else fn(act)
            return None if new is None else _replace_primary(output, new)

        handles = [self.model.register_forward_pre_hook(clock.pre_hook, with_kwargs=True)]
        self._live.append(handles[0])
        try:
            handles.append(module.register_forward_hook(_fwd))
            self._live.append(handles[1])
            self._clock = clock
            yield
        finally:
            self._clock = outer
            for h in handles:
                h.remove()
                self._live.remove(h)

    def _keep(self, t: Tensor | None, keep: frozenset[int] | None) -> Tensor | None:
        """Rows to keep by timestep (None: all)."""
        if keep is None or t is None:
            return None
        return torch.tensor([int(round(float(v))) in keep for v in t], dtype=torch.bool)

    @contextlib.contextmanager
    def record(self, hook: str, timesteps: Collection[int] | None = None) -> Iterator[Recording]:
        """Within the context every UNet forward (a sampling loop's, a pipeline's) adds its vectors
        at ``hook``, tagged with their timestep, to the yielded :class:`Recording`; only forwards
        at ``timesteps`` (default: the adapter's ``timesteps``; None: all) are kept."""
        keep = self.timesteps if timesteps is None else frozenset(int(t) for t in timesteps)
        rec = Recording()

        def _read(act, t):
            mask = self._keep(t, keep)
            act = act.detach()
            if mask is not None:
                if not bool(mask.any()):
                    return None
                rows = mask.nonzero().flatten()
                act, t = act[rows.to(act.device)], t[rows]
                vec = self.to_vectors(act, None, t)
                vec.index[:, 0] = rows.to(vec.index.device)[vec.index[:, 0]]  # rows of the forward's batch
            else:
                vec = self.to_vectors(act, None, t)
            rec.parts.append(vec)
            return None

        with torch.no_grad(), self.hook(hook, _read, with_timesteps=True):
            yield rec

    @torch.no_grad()
    def collect(
        self, batch: Any, hook: str, stop: bool = True, timesteps: Collection[int] | None = None
    ) -> Activations:
        """Vectors at ``hook`` for one UNet batch: a dict of the UNet's keyword arguments or a tuple
        ``(sample, timestep[, encoder_hidden_states])``; the forward stops after the hook. Rows whose
        timestep is not kept (``timesteps``, else the adapter's) are dropped."""
        with self.record(hook, timesteps) as rec:
            self.forward(batch, stop_after=hook if stop else None)
        if not rec.parts:
            raise HookError(
                f"hook {hook!r} kept nothing: it did not run, or no row's timestep is in {sorted(self.timesteps or [])}"
            )
        return rec.activations()

    @torch.no_grad()
    def collect_many(
        self, batch: Any, hooks: Sequence[str], timesteps: Collection[int] | None = None
    ) -> dict[str, Activations]:
        """:meth:`collect` for several block paths from one UNet forward, which ends after the
        deepest of them; each hook's vectors and timesteps are those :meth:`collect` reads there."""
        hooks = self.check_hooks(hooks)
        if len(hooks) == 1:
            return {hooks[0]: self.collect(batch, hooks[0], timesteps=timesteps)}
        with contextlib.ExitStack() as stack:
            recs = {h: stack.enter_context(self.record(h, timesteps)) for h in hooks}
            stack.enter_context(self.stop_when_all_ran(hooks))
            with contextlib.suppress(_StopForward):
                self._call(batch)
        for h, rec in recs.items():
            if not rec.parts:
                raise HookError(
                    f"hook {h!r} kept nothing: it did not run, or no row's timestep is in {sorted(self.timesteps or [])}"
                )
            del rec.parts[1:]  # the first run of the block, as collect reads
        return {h: rec.activations() for h, rec in recs.items()}

    @contextlib.contextmanager
    def edit(self, hook: str, fn: VectorFn, window: tuple[float, float] | None = None) -> Iterator[None]:
        """Within the context every UNet forward has its vectors at ``hook`` replaced by
        ``fn(vectors)``, only for rows whose timestep lies in ``window = (t_min, t_max)``
        (inclusive; None: every step; :func:`default_window` gives Asyrp's early steps). Rows
        outside the window, and forwards with none inside it, pass through untouched."""
        if window is not None and not window[0] <= window[1]:
            raise ValueError(f"window must be (t_min, t_max) with t_min ≤ t_max, got {window}")

        def _edit(act, t):
            if window is None:
                return self.edit_tensor(act, fn)
            inside = (t >= window[0]) & (t <= window[1])
            if not bool(inside.any()):
                return None  # nothing in the window: the forward is left exactly as it was
            if bool(inside.all()):
                return self.edit_tensor(act, fn)
            rows = inside.nonzero().flatten().to(act.device)
            out = act.clone()
            out[rows] = self.edit_tensor(act[rows], fn)
            return out

        with self.hook(hook, _edit, with_timesteps=True):
            yield
