"""TransformerLens models, duck-typed on ``hook_dict`` / ``hooks()``: TL 4.x ``TransformerBridge``
and TL 2.x/3.x ``HookedTransformer`` alike. Hugging Face names or local folders load through
``TransformerBridge.boot_transformers``."""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch
from torch import Tensor, nn

from .base import Activations, Adapter, VectorFn

_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def is_transformer_lens(model: Any) -> bool:
    return hasattr(model, "hook_dict") and callable(getattr(model, "hooks", None))


def load_transformer(
    name_or_path: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None, **kw
) -> nn.Module:
    """A TransformerLens bridge around a Hugging Face model (hub name or local folder)."""
    try:
        from transformer_lens import TransformerBridge
    except ImportError as err:
        raise ImportError(
            "loading transformers needs TransformerLens: pip install 'probe-disentangle[transformers]'"
        ) from err
    if dtype is not None:
        kw["dtype"] = dtype
    return TransformerBridge.boot_transformers(name_or_path, device=device, **kw)


class HookedTransformerAdapter(Adapter):
    """Vectors are token positions ``[B, T, d]``; the BOS position (0) is excluded by default,
    padding is dropped via ``attention_mask``. Batches are token tensors ``[B, T]`` or dicts with
    ``tokens`` and optional ``attention_mask``."""

    family = "transformer_lens"

    def __init__(self, model: nn.Module, exclude_bos: bool = True) -> None:
        super().__init__(model)
        self.exclude_bos = exclude_bos
        try:
            self._has_stop = "stop_at_layer" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            self._has_stop = False

    def hook_names(self) -> list[str]:
        return list(self.model.hook_dict)

    def module_for(self, hook: str) -> nn.Module:
        return self.model.hook_dict[hook]

    def layer_of(self, hook: str) -> int | None:
        m = _BLOCK.match(hook)
        return int(m.group(1)) if m else None

    @staticmethod
    def _tokens(batch: Any) -> tuple[Tensor, Tensor | None]:
        if isinstance(batch, dict):
            return batch["tokens"], batch.get("attention_mask")
        return batch, None

    def _call(self, batch: Any, **kw) -> Any:
        tokens, mask = self._tokens(batch)
        if mask is not None:
            kw["attention_mask"] = mask
        return self.model(tokens, **kw)

    def forward(self, batch: Any, stop_after: str | None = None) -> Any:
        layer = self.layer_of(stop_after) if stop_after else None
        if layer is not None and self._has_stop and layer + 1 < self.model.cfg.n_layers:
            self.check_hook(stop_after)
            return self._call(batch, stop_at_layer=layer + 1)  # native truncation: skip later blocks
        return super().forward(batch, stop_after)

    def position_mask(self, act: Tensor, batch: Any) -> Tensor:
        B, T = act.shape[:2]
        _, attn = self._tokens(batch)
        mask = (
            torch.ones(B, T, dtype=torch.bool, device=act.device)
            if attn is None
            else attn.to(act.device).bool().clone()
        )
        if self.exclude_bos and T > 0:
            mask[:, 0] = False
        return mask

    def to_vectors(self, act: Tensor, batch: Any) -> Activations:
        mask = self.position_mask(act, batch)
        return Activations(act[mask], mask.nonzero())

    def edit_tensor(self, act: Tensor, fn: VectorFn) -> Tensor:
        """Edit every position; a full-prompt forward (T > 1) keeps its BOS position as it was.
        KV-cached single-token steps (T = 1) are always generated tokens, so they are edited."""
        B, T, d = act.shape
        out = fn(act.reshape(B * T, d)).reshape(B, T, d)
        if self.exclude_bos and T > 1:
            out = torch.cat([act[:, :1], out[:, 1:]], dim=1)
        return out
