"""TransformerLens models, duck-typed on ``hook_dict`` / ``hooks()``: TL 4.x ``TransformerBridge``
and TL 2.x/3.x ``HookedTransformer`` alike. Hugging Face names or local folders load through
``TransformerBridge.boot_transformers``."""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .base import Activations, Adapter, VectorFn

_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def is_transformer_lens(model: Any) -> bool:
    return hasattr(model, "hook_dict") and callable(getattr(model, "hooks", None))


# keyword arguments that make Hugging Face loading run code from the model's folder or hub repo
# (trust_remote_code true) or unpickle its weights (weights_only false): refused unless opted in
_UNSAFE_LOADING = {"trust_remote_code": lambda v: bool(v), "weights_only": lambda v: v is not None and not v}


def _unsafe_options(kw: Any, where: str = "") -> list[str]:
    """``name=value`` of every unsafe loading option in ``kw``, nested mappings included."""
    found = []
    for k, v in kw.items():
        if k in _UNSAFE_LOADING and _UNSAFE_LOADING[k](v):
            found.append(f"{where}{k}={v!r}")
        elif isinstance(v, dict):
            found += _unsafe_options(v, f"{where}{k}.")
    return found


def load_transformer(
    name_or_path: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    *,
    allow_code_execution: bool = False,
    **kw,
) -> nn.Module:
    """A TransformerLens bridge around a Hugging Face model (hub name or local folder); ``kw`` go
    to ``TransformerBridge.boot_transformers``.

    ``trust_remote_code=True`` (runs Python files shipped with the model) and
    ``weights_only=False`` (unpickles its weights, which can run any code), also inside a nested
    option such as ``hf_config_overrides``, are refused unless ``allow_code_execution=True``:
    pass that only for a model whose files you trust as you would trust a program.
    """
    unsafe = _unsafe_options(kw)
    if unsafe and not allow_code_execution:
        raise ValueError(
            f"load_transformer({name_or_path!r}, {', '.join(unsafe)}) would let the model's files run code on this "
            "machine; drop the option, or pass allow_code_execution=True if you trust the model as a program"
        )
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
    ``tokens`` and optional ``attention_mask``.

    ``span=(start, stop)``: one vector per sequence instead, the positions ``start..stop-1``
    concatenated (``[B, (stop - start)·d]``). For prompts with a fixed layout (a plan, a template,
    a system prompt) whose content is spread over several tokens: the head then sees the whole
    content at once, and an edit rewrites all of the span. Forwards shorter than ``stop`` (and
    KV-cached single-token steps, which reuse the span edited when the prompt ran) are left as
    they are; padding inside the span is not allowed.
    """

    family = "transformer_lens"

    def __init__(self, model: nn.Module, exclude_bos: bool = True, span: tuple[int, int] | None = None) -> None:
        super().__init__(model)
        self.exclude_bos = exclude_bos
        if span is not None:
            if (
                not isinstance(span, (tuple, list))
                or len(span) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)
            ):
                raise ValueError(f"span must be a pair of token positions (start, stop), e.g. (1, 10); got {span!r}")
            start, stop = span
            if not 0 <= start < stop:
                raise ValueError(f"span must be (start, stop) with 0 <= start < stop, got {tuple(span)}")
            if exclude_bos and start == 0:
                raise ValueError("the span includes BOS (position 0); start it at 1 or pass exclude_bos=False")
            span = (start, stop)
        self.span = span
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
            if "tokens" not in batch:
                raise ValueError(
                    f"a dict batch needs a 'tokens' entry (and optionally 'attention_mask'); got {sorted(batch)}"
                )
            return batch["tokens"], batch.get("attention_mask")
        return batch, None

    def check_tokens(self, tokens: Any) -> None:
        """Token batches are integer tensors ``[batch, positions]`` with ids in the vocabulary."""
        if not isinstance(tokens, Tensor):
            raise TypeError(
                f"token batches must be integer tensors [batch, positions], got {type(tokens).__name__}; "
                "tokenize text first (model.to_tokens, or probe_disentangle.hosts.encode_lines)"
            )
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise TypeError(f"token ids must be an integer tensor, got {tokens.dtype}; cast with .long()")
        if tokens.ndim != 2:
            raise ValueError(
                f"token batches must be [batch, positions], got shape {tuple(tokens.shape)}"
                + ("; add a batch dimension with tokens[None]" if tokens.ndim == 1 else "")
            )
        vocab = getattr(getattr(self.model, "cfg", None), "d_vocab", None)
        if tokens.numel():
            lo, hi = int(tokens.min()), int(tokens.max())
            if lo < 0 or (isinstance(vocab, int) and vocab > 0 and hi >= vocab):
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"token id {bad} is outside the vocabulary 0..{vocab - 1 if isinstance(vocab, int) else '?'}; "
                    "tokenize with this model's tokenizer (padding included)"
                )

    def _call(self, batch: Any, **kw) -> Any:
        tokens, mask = self._tokens(batch)
        self.check_tokens(tokens)
        if mask is not None:
            kw["attention_mask"] = mask
        return self.model(tokens, **kw)

    def forward(self, batch: Any, stop_after: str | None = None) -> Any:
        layer = self.layer_of(stop_after) if stop_after else None
        if layer is not None and self._has_stop and layer + 1 < self.model.cfg.n_layers:
            self.check_hook(stop_after)
            return self._call(batch, stop_at_layer=layer + 1)  # native truncation: skip later blocks
        return super().forward(batch, stop_after)

    def _call_for(self, batch: Any, hooks: Sequence[str]) -> Any:
        layers = [self.layer_of(h) for h in hooks]
        if all(v is not None for v in layers) and self._has_stop and max(layers) + 1 < self.model.cfg.n_layers:
            return self._call(batch, stop_at_layer=max(layers) + 1)  # native truncation after the deepest block
        return self._call(batch)

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
        if self.span is not None:
            start, stop = self.span
            B, T, d = act.shape
            if T < stop:
                raise ValueError(f"sequences of {T} tokens are shorter than the span {self.span}; pass longer ones")
            _, attn = self._tokens(batch)
            if attn is not None and not bool(attn[:, start:stop].bool().all()):
                raise ValueError(f"padding inside the span {self.span}: every sequence needs real tokens there")
            rows = torch.arange(B, device=act.device)
            return Activations(act[:, start:stop].reshape(B, -1), torch.stack([rows, torch.full_like(rows, start)], 1))
        mask = self.position_mask(act, batch)
        idx = mask.nonzero()
        tokens, _ = self._tokens(batch)
        cond = None  # (token id, position) of each vector: what a conditional head is told for free
        if isinstance(tokens, Tensor) and tokens.shape == mask.shape:
            cond = torch.stack([tokens.to(act.device)[mask], idx[:, 1]], 1)
        return Activations(act[mask], idx, cond)

    def edit_tensor(self, act: Tensor, fn: VectorFn) -> Tensor:
        """Edit every position; a full-prompt forward (T > 1) keeps its BOS position as it was.
        KV-cached single-token steps (T = 1) are always generated tokens, so they are edited.
        With a span: only the span, and only in forwards that contain all of it."""
        B, T, d = act.shape
        if self.span is not None:
            start, stop = self.span
            if T < stop:
                return act
            out = act.clone()
            out[:, start:stop] = fn(act[:, start:stop].reshape(B, -1)).reshape(B, stop - start, d).to(act.dtype)
            return out
        out = fn(act.reshape(B * T, d)).reshape(B, T, d)
        if self.exclude_bos and T > 1:
            out = torch.cat([act[:, :1], out[:, 1:]], dim=1)
        return out
