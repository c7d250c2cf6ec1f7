"""Host models and their data for the command line: load a transformer by name or folder (or the
shipped factor LM), turn a token or text file into host batches, and sample continuations.

Everything here reads local files only: a Hugging Face name resolves through the local cache, and
token files are safetensors (no pickle), so loading never executes code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

FACTOR_LM = "factor_lm"


@dataclass
class Host:
    """A host model with what the CLI needs around it: text ↔ ids, its special tokens, and for the
    shipped factor LM its world (to sample sentences and to know the true factors)."""

    model: nn.Module
    name: str
    encode: Callable[[str], list[int]] | None
    decode: Callable[[Sequence[int]], str] | None
    bos_id: int | None
    eos_id: int | None
    pad_id: int
    world: Any = None


def load_host(name: str, device: str | torch.device = "cpu") -> Host:
    """``factor_lm`` (shipped) or a Hugging Face model name / local folder through TransformerLens."""
    if name == FACTOR_LM:
        from .zoo import load_factor_lm

        model, world = load_factor_lm(device)
        tok = world.tokenizer
        return Host(
            model.eval(),
            name,
            lambda text: tok.encode(text, add_special=False),
            lambda ids: tok.decode(ids),
            tok.bos_id,
            tok.eos_id,
            tok.pad_id,
            world,
        )
    from .adapters import load_transformer

    path = Path(name)
    if (path.exists() or name.startswith((".", "/"))) and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{name} is not a model folder (no config.json there); pass a folder written by "
            "save_pretrained(), a cached Hugging Face name, or 'factor_lm'"
        )
    try:
        model = load_transformer(name, device=device)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"could not load model {name!r} ({type(err).__name__}: {str(err).splitlines()[0]}); this machine reads "
            "only local files: pass a local folder, or a Hugging Face name already in the cache"
        ) from err
    tok = getattr(model, "tokenizer", None)
    if tok is None or len(tok) < 2:  # TransformerLens puts an empty stand-in where the folder has none
        return Host(model.eval(), name, None, None, None, None, 0)
    bos = tok.bos_token_id
    return Host(
        model.eval(),
        name,
        lambda text: ([bos] if bos is not None else []) + tok.encode(text, add_special_tokens=False),
        lambda ids: tok.decode(list(ids), skip_special_tokens=True),
        bos,
        tok.eos_token_id,
        tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0),
    )


def read_tokens(path: str | Path) -> Tensor:
    """The int tensor ``tokens [N, T]`` of a safetensors file (optionally with ``attention_mask``)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"token file {path} does not exist")
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(
            f"{path} is not a safetensors file ({err}); save tokens with safetensors.torch.save_file"
        ) from err
    if "tokens" not in tensors:
        raise ValueError(f"{path} holds {sorted(tensors)}, not 'tokens'; save an int tensor [N, T] under 'tokens'")
    tokens = tensors["tokens"]
    if tokens.ndim != 2 or tokens.is_floating_point():
        raise ValueError(
            f"'tokens' in {path} must be an integer tensor [N, T], got {tuple(tokens.shape)} {tokens.dtype}"
        )
    return tokens.long()


def encode_lines(host: Host, path: str | Path, seq_len: int) -> dict[str, Tensor]:
    """One document per non-empty line, encoded, cut to ``seq_len`` and right-padded with a mask."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {path} does not exist")
    if host.encode is None:
        raise ValueError(f"{host.name} has no tokenizer; pass --tokens FILE.safetensors instead of --text")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{path} has no text (one document per line)")
    ids = [host.encode(ln)[:seq_len] for ln in lines]
    T = max(len(i) for i in ids)
    tokens = torch.full((len(ids), T), host.pad_id, dtype=torch.long)
    mask = torch.zeros(len(ids), T, dtype=torch.long)
    for r, i in enumerate(ids):
        tokens[r, : len(i)] = torch.tensor(i, dtype=torch.long)
        mask[r, : len(i)] = 1
    return {"tokens": tokens, "attention_mask": mask}


def world_tokens(host: Host, n: int, seed: int) -> Tensor:
    """``n`` sentences of the factor LM's world, tokenised (<bos> … <eos>, padded)."""
    if host.world is None:
        raise ValueError(f"{host.name} has no world to sample from; pass --tokens or --text")
    return torch.from_numpy(host.world.sample(n, seed)[1]).long()


def batches(data: Tensor | dict[str, Tensor], batch_size: int) -> list[Any]:
    """Host batches of ``batch_size`` sequences (dicts keep their attention mask)."""
    if isinstance(data, Tensor):
        return [data[i : i + batch_size] for i in range(0, len(data), batch_size)]
    n = len(data["tokens"])
    return [{k: v[i : i + batch_size] for k, v in data.items()} for i in range(0, n, batch_size)]


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt: Tensor,
    max_new_tokens: int,
    seed: int = 0,
    temperature: float = 1.0,
    eos_id: int | None = None,
    pad_id: int = 0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Continue ``prompt [B, T]`` token by token. Seeded inverse-CDF sampling (one uniform per
    token), so a steered and an unsteered run with the same seed draw the same numbers and differ
    only where steering moved the distribution; ``temperature=0`` is greedy. Full forwards (no KV
    cache) so any host that maps tokens to logits works. ``generator`` (CPU) overrides ``seed``."""
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    seq = prompt.to(device)
    done = torch.zeros(seq.shape[0], dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        out = model(seq)
        logits = (out.logits if hasattr(out, "logits") else out)[:, -1].float()
        u = torch.rand(seq.shape[0], generator=g).to(device)
        if temperature <= 0:
            nxt = logits.argmax(-1)
        else:
            cdf = torch.softmax(logits / temperature, -1).cumsum(-1)
            nxt = torch.searchsorted(cdf, u[:, None]).squeeze(1).clamp(max=cdf.shape[1] - 1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        seq = torch.cat([seq, nxt[:, None]], 1)
        if eos_id is not None:
            done |= nxt == eos_id
            if bool(done.all()):
                break
    return seq
