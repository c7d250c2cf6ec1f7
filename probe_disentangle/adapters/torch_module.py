"""Any ``nn.Module`` (plain Hugging Face models included): hooks addressed by dotted submodule path."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import Activations, Adapter, VectorFn

LAYOUTS = ("auto", "tokens", "channels", "flatten")


class TorchModuleAdapter(Adapter):
    """Forward hooks on ``model.get_submodule(path)``.

    ``layout`` says what a vector is: ``tokens`` (``[B, T, d]``, one per position, padding
    dropped via the batch's ``attention_mask``), ``channels`` (``[B, C, H, W]``, one per spatial
    position), ``flatten`` (one per sample), ``auto`` (by the activation's rank: 2 → as is,
    3 → tokens, 4 → channels).
    """

    family = "torch_module"

    def __init__(self, model: nn.Module, layout: str = "auto") -> None:
        super().__init__(model)
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
        self.layout = layout

    def hook_names(self) -> list[str]:
        return [name for name, _ in self.model.named_modules() if name]

    def module_for(self, hook: str) -> nn.Module:
        return self.model.get_submodule(hook)

    def layer_of(self, hook: str) -> int | None:
        """The index of the first ``ModuleList`` item on the hook's path (``transformer.h.3.mlp``
        → 3, ``model.layers.5`` → 5); None when the path passes through no ``ModuleList``."""
        module = self.model
        for part in hook.split("."):
            if isinstance(module, nn.ModuleList) and part.isdigit():
                return int(part)
            try:
                module = module.get_submodule(part)
            except AttributeError:
                return None
        return None

    def _layout(self, act: Tensor) -> str:
        if self.layout != "auto":
            return self.layout
        return {2: "flatten", 3: "tokens", 4: "channels"}.get(act.ndim, "flatten")

    def to_vectors(self, act: Tensor, batch: Any) -> Activations:
        layout = self._layout(act)
        if layout == "tokens":
            B, T, d = act.shape
            mask = torch.ones(B, T, dtype=torch.bool, device=act.device)
            if isinstance(batch, dict) and batch.get("attention_mask") is not None:
                mask = batch["attention_mask"].to(act.device).bool()
            idx = mask.nonzero()
            tokens = batch.get("input_ids", batch.get("tokens")) if isinstance(batch, dict) else batch
            cond = None  # (token id, position) of each vector, when the batch is token ids
            if isinstance(tokens, Tensor) and tokens.shape == mask.shape and not tokens.is_floating_point():
                cond = torch.stack([tokens.to(act.device)[mask], idx[:, 1]], 1)
            return Activations(act[mask], idx, cond)
        if layout == "channels":
            B, C, H, W = act.shape
            vec = act.permute(0, 2, 3, 1).reshape(B * H * W, C)  # (B·H·W, C)
            rows = torch.arange(B, device=act.device).repeat_interleave(H * W)
            pos = torch.arange(H * W, device=act.device).repeat(B)
            return Activations(vec, torch.stack([rows, pos], 1))
        return super().to_vectors(act, batch)

    def edit_tensor(self, act: Tensor, fn: VectorFn) -> Tensor:
        layout = self._layout(act)
        if layout == "tokens":
            return fn(act.reshape(-1, act.shape[-1])).reshape(act.shape)
        if layout == "channels":
            B, C, H, W = act.shape
            out = fn(act.permute(0, 2, 3, 1).reshape(-1, C))
            return out.reshape(B, H, W, C).permute(0, 3, 1, 2)
        return super().edit_tensor(act, fn)
