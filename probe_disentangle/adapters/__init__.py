"""How to hook a host model: one adapter per host family behind a small protocol (base.py)."""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import Activations, Adapter, HookError, InputRecord, past_length
from .diffusers_unet import DiffusersUNetAdapter, is_diffusers_unet, load_unet
from .hooked_transformer import HookedTransformerAdapter, is_transformer_lens, load_transformer
from .torch_module import TorchModuleAdapter


def attach(model: nn.Module | Adapter, hook: str | None = None, **kw: Any) -> Adapter:
    """Pick the adapter for ``model`` by its type (TransformerLens by duck typing, a diffusers UNet
    or a pipeline holding one as ``.unet``, else any ``nn.Module`` by dotted path) and, when ``hook`` is given, check it exists (an unknown name
    raises :class:`HookError` listing close matches)."""
    if isinstance(model, Adapter):
        adapter = model
    elif is_transformer_lens(model):
        adapter = HookedTransformerAdapter(model, **kw)
    elif is_diffusers_unet(model):
        adapter = DiffusersUNetAdapter(model, **kw)
    elif isinstance(model, nn.Module):
        adapter = TorchModuleAdapter(model, **kw)
    else:
        raise TypeError(
            f"cannot attach to a {type(model).__name__}; pass a torch nn.Module, a TransformerLens model, "
            "a diffusers UNet or a pipeline holding one"
        )
    if hook is not None:
        adapter.check_hook(hook)
    return adapter


__all__ = [
    "Activations",
    "Adapter",
    "DiffusersUNetAdapter",
    "HookError",
    "HookedTransformerAdapter",
    "InputRecord",
    "TorchModuleAdapter",
    "attach",
    "is_diffusers_unet",
    "load_transformer",
    "load_unet",
    "past_length",
]
