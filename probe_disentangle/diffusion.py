"""DDPM training and DDIM sampling for a ``diffusers.UNet2DModel``, on the shared trainer.

Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", eq. 14): the simple objective is
``E_{t, x0, ε} ‖ε − ε_θ(√ᾱ_t x0 + √(1−ᾱ_t) ε, t)‖²`` with ``t`` uniform over the training steps.
:class:`DDPMModel` wraps the UNet so that :class:`~probe_disentangle.train.Trainer` trains it
(checkpoints, bit-identical resume, non-finite guard come from there) and keeps an exponential
moving average of the weights (the weights sampled from, as in Ho et al.'s appendix B).
:class:`SpriteImageStream` renders the colour-sprites world on the fly, one seeded batch per
index, so a resumed run continues the same stream without replaying it. The shipped folder is a
diffusers pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``) written by diffusers'
own ``save_pretrained``; :func:`load_ddpm_pipeline` reads it with ``from_pretrained``.

diffusers is imported only when a UNet or scheduler is built; a missing install names the extra.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import io
from .losses import LossResult
from .registry import register

__all__ = [
    "CARD_FILE",
    "DDPMConfig",
    "DDPMModel",
    "SpriteImageStream",
    "ddim_sample",
    "deepen_unet",
    "epsilon_loss",
    "export_pipeline",
    "import_diffusers",
    "load_ddpm_pipeline",
    "q_sample",
]

CARD_FILE = "card.json"  # the model card beside a shipped pipeline folder's model_index.json
# what a shipped pipeline folder holds (a re-export may replace a folder holding only these)
PIPELINE_FILES = frozenset({"model_index.json", "unet", "scheduler", CARD_FILE})
_BLOCK_DOWN, _BLOCK_UP = "DownBlock2D", "UpBlock2D"
_ATTN_DOWN, _ATTN_UP = "AttnDownBlock2D", "AttnUpBlock2D"


def import_diffusers():
    """The diffusers module, or an ImportError naming the extra to install."""
    try:
        import diffusers
    except ImportError as err:
        raise ImportError(
            "the diffusion path needs diffusers: pip install 'probe-disentangle[diffusion]'"
        ) from err
    return diffusers


# ------------------------------------------------------------------ the objective (pure)


def q_sample(x0: Tensor, noise: Tensor, t: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """The forward process q(x_t | x_0) (Ho et al. 2020, eq. 4): ``√ᾱ_t x0 + √(1−ᾱ_t) ε``.

    ``x0``, ``noise``: ``[B, ...]``; ``t``: ``[B]`` integer steps; ``alphas_cumprod``: ``[T]``.
    """
    if x0.shape != noise.shape:
        raise ValueError(f"x0 and noise need the same shape, got {tuple(x0.shape)} and {tuple(noise.shape)}")
    a = alphas_cumprod.to(x0.device, x0.dtype)[t].view(-1, *([1] * (x0.dim() - 1)))  # (B, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def epsilon_loss(eps_pred: Tensor, eps: Tensor) -> Tensor:
    """Ho et al. 2020's simple loss (eq. 14): the mean squared error of the predicted noise."""
    if eps_pred.shape != eps.shape:
        raise ValueError(f"predicted and true noise differ in shape: {tuple(eps_pred.shape)} vs {tuple(eps.shape)}")
    return torch.mean((eps_pred.float() - eps.float()) ** 2)


# ------------------------------------------------------------------ the model


@dataclass
class DDPMConfig:
    """A small ``UNet2DModel`` and its noise schedule. ``attention``: self-attention in the
    lowest-resolution down/up blocks (the mid block always has it); ``ema_decay``: 0 for none."""

    sample_size: int = 32
    channels: int = 3
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention: bool = True
    norm_num_groups: int = 8
    attention_head_dim: int = 32
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    ema_decay: float = 0.999
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        if len(self.block_out_channels) < 2:
            raise ValueError("DDPMConfig.block_out_channels needs at least 2 levels, e.g. (32, 64, 64)")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(
                f"DDPMConfig.block_out_channels {bad} are not divisible by norm_num_groups={self.norm_num_groups}; "
                "choose multiples of it"
            )
        if self.sample_size % 2 ** (len(self.block_out_channels) - 1):
            raise ValueError(
                f"DDPMConfig.sample_size {self.sample_size} is not divisible by 2^{len(self.block_out_channels) - 1} "
                "(one halving per down block but the last)"
            )
        if self.beta_schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
            raise ValueError(
                f"unknown beta_schedule {self.beta_schedule!r}; use 'linear', 'scaled_linear' or 'squaredcos_cap_v2'"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"DDPMConfig.ema_decay must be in [0, 1), got {self.ema_decay}")

    def unet_kwargs(self) -> dict[str, Any]:
        """The ``UNet2DModel`` constructor arguments (diffusers' config.json holds the same)."""
        n = len(self.block_out_channels)
        down = [_BLOCK_DOWN] * n
        up = [_BLOCK_UP] * n
        if self.attention:
            down[-1], up[0] = _ATTN_DOWN, _ATTN_UP
        return dict(
            sample_size=self.sample_size,
            in_channels=self.channels,
            out_channels=self.channels,
            block_out_channels=self.block_out_channels,
            layers_per_block=self.layers_per_block,
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            norm_num_groups=self.norm_num_groups,
            attention_head_dim=self.attention_head_dim,
        )

    def scheduler_kwargs(self) -> dict[str, Any]:
        """The ``DDPMScheduler`` arguments (a ``DDIMScheduler`` is built from the same config)."""
        return dict(
            num_train_timesteps=self.num_train_timesteps,
            beta_schedule=self.beta_schedule,
            prediction_type="epsilon",
            clip_sample=True,
            # DDIM's first step at t = T − 1, where x_T is pure noise as in training, not at
            # T − T/steps ("leading"), which hands the UNet pure noise labelled as a slightly
            # noised image (Lin et al. 2024, table 2). On the sprites DDPM (400 samples, 50
            # steps): 0.890 valid against 0.865, fewer two-hue sprites.
            timestep_spacing="trailing",
        )


@register("ddpm_unet", DDPMConfig)
class DDPMModel(nn.Module):
    """A ``UNet2DModel`` (``.unet``) trained by ε-prediction, with an EMA copy (``.ema``)."""

    def __init__(self, config: DDPMConfig | None = None) -> None:
        super().__init__()
        self.config = config or DDPMConfig()
        diffusers = import_diffusers()
        self.unet = diffusers.UNet2DModel(**self.config.unet_kwargs())
        self.ema = copy.deepcopy(self.unet).requires_grad_(False) if self.config.ema_decay > 0 else None
        sched = diffusers.DDPMScheduler(**self.config.scheduler_kwargs())
        self.register_buffer("alphas_cumprod", sched.alphas_cumprod.clone().float(), persistent=False)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"unet": torch.optim.AdamW(self.unet.parameters(), lr=lr, weight_decay=self.config.weight_decay)}

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """The predicted noise ε_θ(x_t, t) of the trained (not the EMA) UNet."""
        return self.unet(x, t).sample

    def loss(self, x0: Tensor) -> LossResult:
        """The simple DDPM loss on a batch ``[B, C, S, S]`` in [-1, 1] (t and ε from torch's RNG)."""
        b = x0.shape[0]
        t = torch.randint(0, self.config.num_train_timesteps, (b,), device=x0.device)
        noise = torch.randn_like(x0)
        eps = self(q_sample(x0, noise, t, self.alphas_cumprod), t)
        mse = epsilon_loss(eps, noise)
        return LossResult(mse, {"mse": mse.detach()})

    def training_step(self, batch, step: int, optimize) -> LossResult:
        x0 = batch[0] if isinstance(batch, (tuple, list)) else batch
        want = (self.config.channels, self.config.sample_size, self.config.sample_size)
        if x0.dim() != 4 or tuple(x0.shape[1:]) != want:
            raise ValueError(f"DDPMModel trains on images [B, {', '.join(map(str, want))}], got {tuple(x0.shape)}")
        out = self.loss(x0)
        optimize("unet", out)
        self.update_ema(step)
        return out

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """EMA of the weights with a warm-up, ``decay = min(ema_decay, (1 + step) / (10 + step))``."""
        if self.ema is None:
            return
        d = min(self.config.ema_decay, (1 + step) / (10 + step))
        for e, p in zip(self.ema.parameters(), self.unet.parameters(), strict=True):
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.ema.buffers(), self.unet.buffers(), strict=True):
            e.copy_(b)

    def sampling_unet(self, ema: bool = True) -> nn.Module:
        """The UNet to sample from: the EMA copy when there is one and ``ema``, else the trained one."""
        return self.ema if ema and self.ema is not None else self.unet

    def scheduler(self, kind: str = "ddim"):
        """A fresh ``DDIMScheduler`` (or ``DDPMScheduler``) for this model's noise schedule."""
        return make_scheduler(self.config.scheduler_kwargs(), kind)


def make_scheduler(config: dict[str, Any], kind: str = "ddim"):
    """A diffusers scheduler of ``kind`` ("ddim" or "ddpm") from a DDPM scheduler config."""
    diffusers = import_diffusers()
    classes = {"ddim": diffusers.DDIMScheduler, "ddpm": diffusers.DDPMScheduler}
    if kind not in classes:
        raise ValueError(f"unknown scheduler kind {kind!r}; use 'ddim' or 'ddpm'")
    return classes[kind].from_config(config)


# ------------------------------------------------------------------ sampling


@torch.no_grad()
def ddim_sample(
    unet: nn.Module,
    scheduler,
    num: int,
    steps: int = 50,
    eta: float = 0.0,
    seed: int = 0,
    batch_size: int = 64,
    noise: Tensor | None = None,
) -> Tensor:
    """``num`` images ``[num, C, S, S]`` in [-1, 1] by DDIM (Song et al. 2021) with ``steps``
    steps and ``eta`` (0: deterministic given the starting noise, drawn from ``seed`` on the CPU
    unless ``noise`` is given). Every UNet call gets the timestep as a ``[B]`` tensor."""
    if steps < 1 or num < 0:
        raise ValueError(f"ddim_sample needs steps ≥ 1 and num ≥ 0, got steps={steps}, num={num}")
    cfg = unet.config
    device = next(unet.parameters()).device
    shape = (num, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    g = torch.Generator().manual_seed(seed)
    if noise is None:
        noise = torch.randn(shape, generator=g)
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
    scheduler.set_timesteps(steps)
    out = []
    for i in range(0, num, batch_size):
        x = noise[i : i + batch_size].to(device)
        for t in scheduler.timesteps:
            tt = torch.full((x.shape[0],), int(t), device=device, dtype=torch.long)
            eps = unet(x, tt).sample
            x = scheduler.step(eps, t, x, eta=eta, generator=g if eta > 0 else None).prev_sample
        out.append(x.clamp(-1, 1).cpu())
    return torch.cat(out) if out else torch.zeros(shape)


@torch.no_grad()
def deepen_unet(source: nn.Module, target: nn.Module) -> nn.Module:
    """Load a trained ``UNet2DModel`` into a deeper one (more ``layers_per_block``, all else the
    same) so that ``target`` computes exactly what ``source`` does, and return ``target``.

    Growing the model keeps what training has paid for (Net2Net, Chen et al. 2016, for depth).
    Each down block's new resnets (and attentions) come after the old ones and start as the
    identity (``conv2`` and the attention's output projection zero: both are residual). Their
    outputs, the extra skips, equal the old last resnet's. In each up block the first resnet is
    the old first (its skip is that same map); the new ones follow it and start as the identity
    on the hidden state, ignoring their skip (the 1×1 shortcut ``[I | 0]``, ``conv2`` zero); the
    rest are the old ones, consuming the same skips as before. Their ``conv1`` keep the target's
    fresh initialisation, so gradients reach the zero weights from the first step."""
    src_cfg, tgt_cfg = dict(source.config), dict(target.config)
    l_old, l_new = int(src_cfg["layers_per_block"]), int(tgt_cfg["layers_per_block"])
    same = {k: v for k, v in src_cfg.items() if k != "layers_per_block" and not k.startswith("_")}
    listed = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731 (JSON lists, tuples)
    differ = sorted(k for k, v in same.items() if listed(tgt_cfg.get(k)) != listed(v))
    if differ or l_new < l_old:
        raise ValueError(
            f"deepen_unet grows layers_per_block only ({l_old} -> {l_new} here); the configs also differ in "
            f"{differ}: build the target from the source's config with a larger layers_per_block"
        )
    src = source.state_dict()
    out = target.state_dict()
    moved: dict[str, str] = {}  # target prefix -> source prefix
    fresh: list[str] = []  # new resnets of down blocks and new attentions: start as the identity
    fresh_up: list[tuple[str, int]] = []  # new up resnets (prefix, hidden channels): identity on the hidden
    for k, block in enumerate(target.down_blocks):
        for j in range(l_new):
            for part in ("resnets", "attentions"):
                if part == "attentions" and not hasattr(block, "attentions"):
                    continue
                name = f"down_blocks.{k}.{part}.{j}"
                if j < l_old:
                    moved[name] = name
                else:
                    fresh.append(name)
    for k, block in enumerate(target.up_blocks):
        extra = l_new - l_old
        for j in range(l_new + 1):
            for part in ("resnets", "attentions"):
                if part == "attentions" and not hasattr(block, "attentions"):
                    continue
                name = f"up_blocks.{k}.{part}.{j}"
                if j == 0:
                    moved[name] = name
                elif j <= extra and part == "attentions":
                    fresh.append(name)
                elif j <= extra:
                    fresh_up.append((name, block.resnets[j].conv2.out_channels))
                else:
                    moved[name] = f"up_blocks.{k}.{part}.{j - extra}"
    per_block = {*moved, *fresh, *(n for n, _ in fresh_up)}
    for key in out:
        prefix = ".".join(key.split(".")[:4])
        if prefix in moved:
            out[key] = src[moved[prefix] + key[len(prefix) :]].clone()
        elif prefix not in per_block:
            out[key] = src[key].clone()
    zero = [f"{n}.conv2" if ".resnets." in n else f"{n}.to_out.0" for n in fresh]
    zero += [f"{n}.conv2" for n, _ in fresh_up]
    for name in zero:
        out[f"{name}.weight"].zero_()
        out[f"{name}.bias"].zero_()
    for name, hidden in fresh_up:
        w = out[f"{name}.conv_shortcut.weight"]
        w.zero_()
        w[:, :hidden, 0, 0] = torch.eye(w.shape[0], hidden)
        out[f"{name}.conv_shortcut.bias"].zero_()
    target.load_state_dict(out)
    return target


# ------------------------------------------------------------------ data


class SpriteImageStream:
    """Endless seeded batches ``[B, 3, S, S]`` in [-1, 1] of the colour-sprites world.

    Batch ``i`` is rendered from factors drawn with ``numpy.random.default_rng([seed, i])``, so
    any batch can be made again from its index; ``stream_state`` / ``load_stream_state`` let the
    trainer resume the stream at its position without replaying it.
    """

    def __init__(self, world, batch_size: int, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.world, self.batch_size, self.seed = world, int(batch_size), int(seed)
        self.position = 0

    def batch(self, index: int) -> Tensor:
        """Batch ``index`` of the stream (the same images every time)."""
        rng = np.random.default_rng([self.seed, int(index)])
        images = self.world.render(self.world.sample_factors(self.batch_size, rng))
        return torch.from_numpy(images) * 2 - 1

    def __iter__(self) -> Iterator[Tensor]:
        while True:
            i = self.position
            self.position += 1
            yield self.batch(i)

    def stream_state(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.seed, "batch_size": self.batch_size}

    def load_stream_state(self, state: dict[str, int]) -> None:
        if int(state["seed"]) != self.seed or int(state["batch_size"]) != self.batch_size:
            raise ValueError(
                f"the checkpoint's image stream had seed {state['seed']} and batch size {state['batch_size']}, "
                f"this one {self.seed} and {self.batch_size}; resume with the run's own settings"
            )
        self.position = int(state["position"])


# ------------------------------------------------------------------ the shipped folder


def export_pipeline(model: DDPMModel, directory: str | os.PathLike, card: dict[str, Any], ema: bool = True) -> Path:
    """Write ``model`` as a diffusers ``DDPMPipeline`` folder (``model_index.json``, ``unet/`` with
    config.json + safetensors, ``scheduler/``) by diffusers' ``save_pretrained``, and ``card.json``.
    The folder is written beside the target and swapped in whole (:func:`io.atomic_folder`)."""
    diffusers = import_diffusers()
    unet = copy.deepcopy(model.sampling_unet(ema)).cpu().eval()
    scheduler = make_scheduler(model.config.scheduler_kwargs(), "ddpm")
    with io.atomic_folder(directory, allowed=PIPELINE_FILES) as tmp:
        diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp, safe_serialization=True)
        io.atomic_write_json(Path(tmp) / CARD_FILE, card)
    return Path(directory)


def load_ddpm_pipeline(directory: str | os.PathLike, device: str | torch.device = "cpu", scheduler: str = "ddim"):
    """A ``DDIMPipeline`` (or ``DDPMPipeline``) from a folder written by :func:`export_pipeline`,
    by diffusers' ``from_pretrained`` on the local folder (no network; safetensors only); the
    DDIM scheduler is built from the saved DDPM scheduler config. ``pipe.card`` holds the card."""
    diffusers = import_diffusers()
    directory = Path(directory)
    if not (directory / "unet").is_dir() or not (directory / "scheduler").is_dir():
        raise FileNotFoundError(
            f"{directory} holds no DDPM pipeline (unet/ and scheduler/ folders); write one with export_pipeline "
            "(examples/train_sprites_ddpm.py --export DIR)"
        )
    unet = diffusers.UNet2DModel.from_pretrained(directory / "unet", use_safetensors=True, local_files_only=True)
    config = diffusers.DDPMScheduler.load_config(directory / "scheduler", local_files_only=True)
    sched = make_scheduler(config, scheduler)
    cls = diffusers.DDIMPipeline if scheduler == "ddim" else diffusers.DDPMPipeline
    pipe = cls(unet=unet.to(device).eval(), scheduler=sched)
    card_path = directory / CARD_FILE
    pipe.card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return pipe
