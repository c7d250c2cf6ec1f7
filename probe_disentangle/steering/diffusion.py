"""Steering a diffusion UNet's sampling from h-space, scored by reading the images back.

The transformer path generates text and parses it; this path samples images and reads their
factors with :class:`~probe_disentangle.worlds.sprites_readout.SpritesReadout`. The pieces:

- :func:`ddim_invert`: an image → the noise DDIM (η = 0) would turn back into it, with every UNet
  input on the way; inversion of rendered sprites gives h-space vectors whose true factors are
  known at every timestep.
- :func:`sampling_trajectories` (and :func:`ddim_invert`'s inputs): the ``(x_t, t)`` batches a UNet
  sees, as data for :meth:`Probe.fit` (the probe's store runs the UNet on them and reads the hook).
  A probe fitted for steering learns by default on the host's own sampling trajectories: those are
  the activations an edit meets while sampling, and they need no labels; the images they end in
  are read out to label them where a baseline or a score needs labels. Inversions of rendered
  sprites carry the world's true factors, but a DDPM short of perfect inverts real images to
  latents a little off its own sampling distribution, so they are the check, not the default.
- :class:`WindowedAdapter`: an adapter view whose edits act only for timesteps in a window, so
  every steerer of :mod:`.baselines` (a probe's latents, PCA, difference of means) steers a
  sampling loop in Asyrp's early, high-noise steps without knowing of timesteps.
- :func:`evaluate_image_steering`: set-to-value success, leakage and valid rate per factor, as
  :func:`.evaluate.evaluate_steering` gives for text, with the same starting noise with and
  without the edit.
- :func:`image_interchange` + :func:`image_interchange_scores`: RAVEL's Cause / Isolate for a sampling
  loop (a factor's latents set, step by step, to a source sample's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .evaluate import Steerer

Batch = tuple[Tensor, Tensor]  # (x_t [B, C, S, S], t [B] long): one UNet input


def _device(unet: nn.Module) -> torch.device:
    return next(unet.parameters()).device


def _alpha_bar(scheduler, t: int) -> Tensor:
    """ᾱ_t, or the schedule's final ᾱ (1 with ``set_alpha_to_one``) for t < 0: the clean image."""
    return scheduler.alphas_cumprod[t] if t >= 0 else scheduler.final_alpha_cumprod


@torch.no_grad()
def ddim_invert(
    unet: nn.Module,
    scheduler,
    x0: Tensor,
    steps: int = 50,
    batch_size: int = 64,
    keep: Callable[[int], bool] | None = None,
) -> tuple[Tensor, list[Batch], Tensor]:
    """Run DDIM backwards (η = 0, Song et al. 2021 eq. 13 read from t to t + Δ) from images
    ``x0`` in [-1, 1]: ``x_{t'} = √ᾱ_{t'} x̂₀ + √(1 − ᾱ_{t'}) ε̂(x_t, t)`` with
    ``x̂₀ = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t``, over the timesteps :func:`ddim_sample` visits, in
    ascending order. Returns the final noise ``[N, C, S, S]``, the UNet inputs ``(x_t, t)`` on
    the way (those whose ``t`` passes ``keep``; all by default) and the image each input row
    belongs to (``[Σ B]``), for fitting or labelling."""
    if steps < 1:
        raise ValueError(f"ddim_invert needs steps ≥ 1, got {steps}")
    scheduler.set_timesteps(steps)
    ts = [int(t) for t in scheduler.timesteps.flip(0)]  # ascending: 0 → T
    device = _device(unet)
    finals, inputs, index = [], [], []
    for i in range(0, len(x0), batch_size):
        x = x0[i : i + batch_size].to(device, torch.float32)
        for j, t in enumerate(ts):
            tt = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
            if keep is None or keep(t):
                inputs.append((x.cpu(), tt.cpu()))
                index.append(torch.arange(i, i + x.shape[0]))
            eps = unet(x, tt).sample
            a_t = _alpha_bar(scheduler, ts[j - 1] if j else -1).to(device)
            a_next = _alpha_bar(scheduler, t).to(device)
            x0_hat = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
            x = a_next.sqrt() * x0_hat + (1 - a_next).sqrt() * eps
        finals.append(x.cpu())
    return torch.cat(finals), inputs, torch.cat(index) if index else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def sampling_trajectories(
    unet: nn.Module,
    scheduler,
    num: int,
    steps: int = 50,
    seed: int = 0,
    batch_size: int = 64,
    keep: Callable[[int], bool] | None = None,
) -> tuple[Tensor, list[Batch], Tensor]:
    """``num`` DDIM samples (η = 0, the noise drawn from ``seed`` as :func:`ddim_sample` draws it)
    and the UNet inputs ``(x_t, t)`` of their sampling loops whose ``t`` passes ``keep``, with the
    sample each input row belongs to (``[Σ B]``, in the order of the inputs' rows): label the
    rows by reading the images, ``labels[index]``."""
    from ..diffusion import ddim_sample

    inputs: list[Batch] = []
    index: list[Tensor] = []
    calls = [0]

    def _pre(module, args, kwargs):
        x, t = (args[0], args[1]) if len(args) > 1 else (args[0], kwargs["timestep"])
        t = torch.as_tensor(t).flatten()
        start = (calls[0] // steps) * batch_size  # ddim_sample runs `steps` forwards per batch
        calls[0] += 1
        if keep is None or keep(int(t[0])):
            inputs.append((x.detach().cpu(), t.expand(x.shape[0]).long().cpu()))
            index.append(torch.arange(start, start + x.shape[0]))

    handle = unet.register_forward_pre_hook(_pre, with_kwargs=True)
    try:
        images = ddim_sample(unet, scheduler, num, steps=steps, seed=seed, batch_size=batch_size)
    finally:
        handle.remove()
    return images, inputs, torch.cat(index) if index else torch.zeros(0, dtype=torch.long)


def window_filter(window: tuple[float, float] | None) -> Callable[[int], bool] | None:
    """``keep`` for the trajectory readers: timesteps inside ``window = (t_min, t_max)``."""
    if window is None:
        return None
    lo, hi = window
    return lambda t: lo <= t <= hi


# ------------------------------------------------------------------ steering a sampling loop


class WindowedAdapter:
    """``adapter`` whose :meth:`edit` acts only at timesteps in ``window`` (every other attribute is
    the adapter's): pass it where a steerer takes an adapter (:mod:`.baselines`)."""

    def __init__(self, adapter: Any, window: tuple[float, float] | None) -> None:
        if not hasattr(adapter, "current_timesteps"):
            raise TypeError(
                f"a {type(adapter).__name__} knows no timesteps; window edits need a diffusers UNet adapter"
            )
        self.adapter, self.window = adapter, window

    def edit(self, hook: str, fn) -> contextlib.AbstractContextManager:
        return self.adapter.edit(hook, fn, window=self.window)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)


def _in_window(t: Tensor | None, window: tuple[float, float] | None) -> bool:
    """Whether a forward at timesteps ``t`` ``[B]`` lies in ``window`` (None: every forward does)."""
    return window is None or (t is not None and bool(((t >= window[0]) & (t <= window[1])).all()))


def _tolerance_hit(read: np.ndarray, target: np.ndarray, factor: int, shape: np.ndarray, tol: int) -> np.ndarray:
    from ..worlds.sprites_readout import orientation_error

    if factor == 2:  # orientation: modulo the shape's symmetry period
        # an image the readout rejects reads -1 everywhere; any shape will do for its row, which
        # the callers mask out (no success, no leakage counted on it)
        return orientation_error(read, target, np.maximum(shape, 0)) <= tol
    return np.abs(read - target) <= tol


def evaluate_image_steering(
    sample: Callable[[], Tensor],
    readout: Any,
    steerer: Steerer,
    targets: Mapping[int, Sequence[int]],
    tolerance: Mapping[int, int] | None = None,
) -> dict[str, Any]:
    """Success, leakage and valid rate per factor, averaged over its target values.

    ``sample()`` draws the images (the same starting noise on every call: a seeded DDIM run);
    under ``steerer(factor, value)`` it draws them steered. ``success``: the steered image is valid
    and reads ``value`` for the factor (within ``tolerance[factor]`` levels; orientation modulo
    the shape's symmetry period); ``leakage``: among images valid with and without the edit,
    the share where another factor moved beyond its tolerance; ``valid_rate``: steered images the
    readout accepts."""
    tol = dict(tolerance or {})
    names = readout.factor_names if hasattr(readout, "factor_names") else [str(i) for i in range(6)]
    base = readout.read((sample() + 1) / 2)
    bf, bv = base["factors"].numpy(), base["valid"].numpy()
    out: dict[str, Any] = {"base_valid_rate": float(bv.mean()) if len(bv) else 0.0}
    for f, values in targets.items():
        per_value = {}
        for v in values:
            with steerer(f, v):
                read = readout.read((sample() + 1) / 2)
            sf, sv = read["factors"].numpy(), read["valid"].numpy()
            target = np.full(len(sf), v)
            hit = sv & _tolerance_hit(sf[:, f], target, f, sf[:, 0], tol.get(f, 0))
            both = sv & bv
            moved = np.zeros(len(sf), dtype=bool)
            for g in range(sf.shape[1]):
                if g != f:
                    moved |= ~_tolerance_hit(sf[:, g], bf[:, g], g, sf[:, 0], tol.get(g, 0))
            per_value[str(v)] = {
                "success": float(hit.mean()) if len(hit) else 0.0,
                "leakage": float(moved[both].mean()) if both.any() else 1.0,
                "valid_rate": float(sv.mean()) if len(sv) else 0.0,
            }
        vals = list(per_value.values())
        out[names[f]] = {k: float(np.mean([x[k] for x in vals])) for k in ("success", "leakage", "valid_rate")}
        out[names[f]]["per_value"] = per_value
    return out


@torch.no_grad()
def _recorded_sampling(probe: Any, unet: nn.Module, scheduler: Any, num: int, steps: int, window, seed: int):
    """DDIM samples (noise from ``seed``) and the probe's codes at every UNet forward in ``window``."""
    from ..diffusion import ddim_sample

    adapter, recorded = probe.adapter, []

    def record(act: Tensor, t: Tensor) -> None:  # reads the codes, leaves the forward untouched
        if _in_window(t, window):
            adapter.edit_tensor(act, lambda v: recorded.append(probe.encode(v)) or v)

    with adapter.hook(probe.hook, record, with_timesteps=True):
        images = ddim_sample(unet, scheduler, num, steps=steps, seed=seed, batch_size=max(1, num))
    return images, recorded


def _swapped_sampling(probe, unet, scheduler, latents, recorded, num: int, steps: int, window, seed: int) -> Tensor:
    """The samples from ``seed`` again, ``latents`` of the codes at each forward in ``window`` set to
    ``recorded``'s at the same step, row by row (a' = a + dec(z') − dec(z))."""
    from ..diffusion import ddim_sample

    lat, step = [int(i) for i in latents], [0]

    def swap(v: Tensor) -> Tensor:
        src = recorded[step[0]]
        step[0] += 1
        return probe.edit_vectors(v, {i: src[:, i] for i in lat})

    with probe.adapter.edit(probe.hook, swap, window=window):
        return ddim_sample(unet, scheduler, num, steps=steps, seed=seed, batch_size=max(1, num))


def image_interchange(
    probe: Any,
    unet: nn.Module,
    scheduler: Any,
    latents: Sequence[int],
    num: int,
    steps: int,
    window: tuple[float, float] | None,
    base_seed: int,
    source_seed: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """RAVEL's interchange intervention in a sampling loop: ``(base, source, interchanged)`` images
    ``[num, C, S, S]`` in [-1, 1]. The source samples (noise from ``source_seed``) are drawn first
    with the probe's codes recorded at every UNet forward in ``window``; the base samples (noise
    from ``base_seed``) are then drawn again with ``latents`` of the codes at each such forward set
    to the source's at the same step, row by row (a' = a + dec(z') − dec(z)). With no latents the
    interchanged images are the base images, bit for bit. For several factors on the same pairs,
    :func:`image_interchanges` draws the base and source once."""
    base, source, swapped = image_interchanges(
        probe, unet, scheduler, {0: latents}, num, steps, window, base_seed, source_seed
    )
    return base, source, swapped[0]


def image_interchanges(
    probe: Any,
    unet: nn.Module,
    scheduler: Any,
    latents: Mapping[Any, Sequence[int]],
    num: int,
    steps: int,
    window: tuple[float, float] | None,
    base_seed: int,
    source_seed: int,
) -> tuple[Tensor, Tensor, dict[Any, Tensor]]:
    """:func:`image_interchange` for several factors on the same base/source pairs: the source
    (with its codes) and the base are sampled once, then one interchanged run per entry of
    ``latents`` (``{factor: latents}``): 2 + F sampling runs instead of 3·F."""
    from ..diffusion import ddim_sample

    source, recorded = _recorded_sampling(probe, unet, scheduler, num, steps, window, source_seed)
    base = ddim_sample(unet, scheduler, num, steps=steps, seed=base_seed, batch_size=max(1, num))
    swapped = {
        key: _swapped_sampling(probe, unet, scheduler, lat, recorded, num, steps, window, base_seed)
        for key, lat in latents.items()
    }
    return base, source, swapped


@torch.no_grad()
def activation_interchange(
    unet: nn.Module,
    scheduler: Any,
    hook: str,
    num: int,
    steps: int,
    window: tuple[float, float] | None,
    base_seed: int,
    source_seed: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """The whole activation at ``hook`` interchanged: ``(base, source, interchanged)`` images in
    [-1, 1]. Every UNet forward of the base run (noise from ``base_seed``) whose timestep is in
    ``window`` (None: all) takes the source run's activation at the same step. Scored by
    :func:`image_interchange_scores`, it says how much of each factor the hook carries at all,
    the ceiling of any probe there: a hook whose full activation does not move a factor (because
    the UNet's skip connections carry it past the hook) cannot be steered there by any head."""
    from ..adapters import attach
    from ..diffusion import ddim_sample

    adapter = attach(unet)
    adapter.check_hook(hook)

    recorded: list[Tensor] = []

    def grab(act: Tensor, t: Tensor | None) -> None:
        if _in_window(t, window):
            recorded.append(act.detach().clone())

    with adapter.hook(hook, grab, with_timesteps=True):
        source = ddim_sample(unet, scheduler, num, steps=steps, seed=source_seed, batch_size=max(1, num))
    base = ddim_sample(unet, scheduler, num, steps=steps, seed=base_seed, batch_size=max(1, num))
    step = [0]

    def put(act: Tensor, t: Tensor | None) -> Tensor | None:
        if not _in_window(t, window):
            return None
        step[0] += 1
        return recorded[step[0] - 1].to(act)

    with adapter.hook(hook, put, with_timesteps=True):
        swapped = ddim_sample(unet, scheduler, num, steps=steps, seed=base_seed, batch_size=max(1, num))
    return base, source, swapped


def image_interchange_scores(
    readout: Any, base: Tensor, source: Tensor, swapped: Tensor, factor: int, tolerance: Mapping[int, int] | None = None
) -> dict[str, float]:
    """Cause (the interchanged image reads the source's value of ``factor``) and Isolate (it keeps
    the base's value of every other factor), over the triples whose three images are all valid
    sprites; Disentangle is their mean (RAVEL, Huang et al. 2024). Images in [-1, 1]."""
    tol = dict(tolerance or {})
    rb, rs, rw = (readout.read((x + 1) / 2) for x in (base, source, swapped))
    fb, fs, fw = (r["factors"].numpy() for r in (rb, rs, rw))
    ok = rb["valid"].numpy() & rs["valid"].numpy() & rw["valid"].numpy()
    if not ok.any():
        return {"cause": 0.0, "isolate": 0.0, "disentangle": 0.0, "valid_pairs": 0}
    cause = _tolerance_hit(fw[:, factor], fs[:, factor], factor, fw[:, 0], tol.get(factor, 0))[ok]
    keep = np.ones(len(fw), dtype=bool)
    for g in range(fw.shape[1]):
        if g != factor:
            keep &= _tolerance_hit(fw[:, g], fb[:, g], g, fw[:, 0], tol.get(g, 0))
    c, i = float(cause.mean()), float(keep[ok].mean())
    return {"cause": c, "isolate": i, "disentangle": (c + i) / 2, "valid_pairs": int(ok.sum())}


@contextlib.contextmanager
def no_steering() -> Iterator[None]:
    """The empty steerer's context (a baseline row: what sampling alone gives)."""
    yield
