"""Export a probe's steering direction to the files other steering tools read.

One direction per file: row ``latent`` of :meth:`Probe.directions` (activation units per unit
of that latent) times ``scale``, i.e. the vector ``scale · d_latent`` that those tools add to the
host's activation. It equals the probe's own edit ``{latent: ("add", scale)}`` exactly when the
head's decoder is linear (``decoder="additive", decoder_hidden=0``); for any other decoder the
probe's edit depends on the context and the exported vector is its average slope.

Formats (:data:`FORMATS`):

- ``gguf``: a llama.cpp control vector, as repeng writes it: ``general.architecture =
  controlvector``, ``controlvector.model_hint`` (the host's ``config.model_type``),
  ``controlvector.layer_count`` (uint32, the number of direction tensors) and one 1-D float32
  tensor ``direction.{layer}``. llama.cpp adds ``direction.k`` to the output of block k
  (0-based, the residual stream after it) and refuses ``direction.0``, so the hook must be the
  output of a block ≥ 1. Run it with ``llama-cli --control-vector FILE``.
- ``steering-vectors``: the steering-vectors library's ``SteeringVector(layer_activations=
  {layer: tensor}, layer_type="decoder_block")`` (:func:`to_steering_vector`); on disk
  (:func:`export_steering_vector`) a safetensors file with one tensor per layer, read back by
  :func:`load_steering_vector` without pickle.
- ``safetensors``: a ``direction`` tensor ``[d]`` with the hook, latent and scale as metadata.

Those tools add the vector at every token position; a probe on a TransformerLens host leaves
the BOS position of a prompt unedited (``SteeringVector.apply(model, min_token_index=1)`` does
the same).
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor, nn

from . import __version__, io

if TYPE_CHECKING:
    from .probe import Probe

FORMATS = ("gguf", "steering-vectors", "safetensors")
GGUF_ARCH = "controlvector"
SV_LAYER_TYPE = "decoder_block"
SV_PREFIX = "layer_activations."  # tensor names of an exported SteeringVector: layer_activations.{layer}

_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")
_RESID_PRE = re.compile(r"^blocks\.(\d+)\.hook_resid_pre$")


def steering_vector(probe: Probe, latent: int, scale: float = 1.0) -> Tensor:
    """``scale · directions()[latent]``: a float32 vector ``[d]`` in activation units, on the CPU."""
    k = probe.latent_dim
    if not isinstance(latent, (int, np.integer)) or isinstance(latent, (bool, np.bool_)):
        raise TypeError(f"latent must be an int index (0..{k - 1}), got {latent!r}")
    if not 0 <= int(latent) < k:
        raise ValueError(f"latent {latent} out of range: the probe has {k} latents (0..{k - 1})")
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number (e.g. 2.0), got {scale!r}")
    if getattr(probe.adapter, "span", None) is not None:
        raise ValueError(
            f"this probe reads a span of positions (width {probe.d_in} = several tokens concatenated); a steering "
            "vector is one token's width: fit the probe without a span to export it"
        )
    return (probe.directions()[int(latent)].float().cpu() * float(scale)).contiguous()


def block_layer(probe: Probe) -> int:
    """The index of the block whose output (the residual stream after it) the probe's hook is:
    where llama.cpp and steering-vectors add a direction. TransformerLens hooks
    ``blocks.N.hook_resid_post`` → N and ``blocks.N.hook_resid_pre`` → N − 1; a plain module
    path must name a block itself, an item of a ``ModuleList`` (``transformer.h.3`` → 3). Any
    other hook raises, naming it: a direction added elsewhere (an attention output, an MLP's
    hidden layer) is not the same edit."""
    hook, adapter = probe.hook, probe.adapter
    layer = adapter.layer_of(hook)
    if layer is None:
        raise ValueError(
            f"hook {hook!r} is not inside a transformer block (no layer index), so it has no control-vector layer; "
            "fit the probe at a block's output (e.g. blocks.N.hook_resid_post, or transformer.h.N), or pass layer="
        )
    if adapter.family == "transformer_lens":
        if _RESID_POST.match(hook):
            return layer
        m = _RESID_PRE.match(hook)
        if m and int(m.group(1)) >= 1:
            return int(m.group(1)) - 1
        raise ValueError(
            f"hook {hook!r} is in block {layer} but is not the residual stream after a block (what control vectors "
            f"edit); fit the probe at blocks.{layer}.hook_resid_post, or pass layer= to place the direction there"
        )
    parts = hook.split(".")
    parent = adapter.model.get_submodule(".".join(parts[:-1])) if len(parts) > 1 else adapter.model
    if not (parts[-1].isdigit() and isinstance(parent, nn.ModuleList)):
        raise ValueError(
            f"hook {hook!r} is inside block {layer} but is not the block's output (what control vectors edit); fit "
            f"the probe at the block itself (e.g. {'.'.join(_block_path(parts))}), or pass layer= to place it there"
        )
    return layer


def _block_path(parts: list[str]) -> list[str]:
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].isdigit():
            return parts[: i + 1]
    return parts


def _layer(probe: Probe, layer: int | None) -> int:
    if layer is None:
        return block_layer(probe)
    if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool) or layer < 0:
        raise ValueError(f"layer must be a block index ≥ 0, got {layer!r}")
    return int(layer)


def model_hint(model: nn.Module) -> str:
    """What repeng writes as ``controlvector.model_hint``: the host's Hugging Face
    ``config.model_type`` (a TransformerLens bridge's wrapped model's), else its class name."""
    for m in (model, getattr(model, "original_model", None)):
        model_type = getattr(getattr(m, "config", None), "model_type", None)
        if isinstance(model_type, str) and model_type:
            return model_type
    return type(model).__name__


def export_gguf(
    probe: Probe,
    path: str | Path,
    latent: int,
    scale: float = 1.0,
    layer: int | None = None,
    hint: str | None = None,
) -> Path:
    """Write a llama.cpp / repeng control vector (GGUF) holding ``scale · directions()[latent]``
    as ``direction.{layer}`` (``layer``: :func:`block_layer` of the hook unless given). ``hint``:
    ``controlvector.model_hint`` (default :func:`model_hint` of the host). Needs the ``gguf``
    extra."""
    try:
        import gguf
    except ImportError as err:
        raise ImportError("GGUF export needs the gguf package: pip install 'probe-disentangle[gguf]'") from err
    layer = _layer(probe, layer)
    if layer == 0:
        raise ValueError(
            "the hook is block 0's output, and llama.cpp refuses direction.0 (it never steers block 0); fit the "
            "probe at the output of block 1 or later (blocks.1.hook_resid_post, transformer.h.1), or export as "
            "steering-vectors or safetensors"
        )
    vec = steering_vector(probe, latent, scale).numpy().astype(np.float32)
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent if path.parent.is_dir() else None) as tmp:
        tmp_path = Path(tmp) / "cvec.gguf"
        writer = gguf.GGUFWriter(str(tmp_path), GGUF_ARCH)
        writer.add_string(f"{GGUF_ARCH}.model_hint", hint if hint is not None else model_hint(probe.adapter.model))
        writer.add_uint32(f"{GGUF_ARCH}.layer_count", 1)
        writer.add_tensor(f"direction.{layer}", vec)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        io.atomic_write_bytes(path, tmp_path.read_bytes())
    return path


def to_steering_vector(probe: Probe, latent: int, scale: float = 1.0, layer: int | None = None) -> Any:
    """A steering-vectors ``SteeringVector({layer: scale · directions()[latent]}, "decoder_block")``;
    ``with sv.apply(hf_model): ...`` adds it to that block's output. Needs the ``steering`` extra."""
    try:
        from steering_vectors import SteeringVector
    except ImportError as err:
        raise ImportError(
            "the SteeringVector export needs steering-vectors: pip install 'probe-disentangle[steering]' && pip install --no-deps steering-vectors"
        ) from err
    layer = _layer(probe, layer)
    return SteeringVector(layer_activations={layer: steering_vector(probe, latent, scale)}, layer_type=SV_LAYER_TYPE)


def export_steering_vector(
    probe: Probe, path: str | Path, latent: int, scale: float = 1.0, layer: int | None = None
) -> Path:
    """Write what :func:`to_steering_vector` builds as safetensors (``layer_activations.{layer}``
    tensors, ``layer_type`` in the metadata), no pickle; :func:`load_steering_vector` reads it.
    Needs no optional package."""
    layer = _layer(probe, layer)
    vec = steering_vector(probe, latent, scale)
    meta = _metadata(probe, latent, scale) | {"layer_type": SV_LAYER_TYPE, "layer": str(layer)}
    io.atomic_write_bytes(Path(path), io.tensors_to_bytes({f"{SV_PREFIX}{layer}": vec}, metadata=meta))
    return Path(path)


def load_steering_vector(path: str | Path) -> Any:
    """The ``SteeringVector`` an :func:`export_steering_vector` file holds (safetensors only,
    nothing executed). Needs the ``steering`` extra."""
    try:
        from steering_vectors import SteeringVector
    except ImportError as err:
        raise ImportError(
            "loading a SteeringVector needs steering-vectors: pip install 'probe-disentangle[steering]' && pip install --no-deps steering-vectors"
        ) from err
    tensors, meta = _read_safetensors(path)
    bad = [k for k in tensors if not (k.startswith(SV_PREFIX) and k[len(SV_PREFIX) :].isdigit())]
    if bad or not tensors:
        raise ValueError(
            f"{path} holds {sorted(tensors)}, not layer_activations.{{layer}} tensors; pass a file written by "
            "export_steering_vector (probe-disentangle export --format steering-vectors)"
        )
    acts = {int(k[len(SV_PREFIX) :]): v for k, v in tensors.items()}
    return SteeringVector(layer_activations=acts, layer_type=meta.get("layer_type", SV_LAYER_TYPE))


def export_safetensors(probe: Probe, path: str | Path, latent: int, scale: float = 1.0) -> Path:
    """Write ``direction`` ``[d]`` (= ``scale · directions()[latent]``) with the hook, latent,
    scale (and the block layer when the hook has one) as safetensors metadata."""
    vec = steering_vector(probe, latent, scale)
    meta = _metadata(probe, latent, scale)
    try:
        meta["layer"] = str(block_layer(probe))
    except ValueError:
        pass  # a hook without a block layer: the hook name says where the direction goes
    io.atomic_write_bytes(Path(path), io.tensors_to_bytes({"direction": vec}, metadata=meta))
    return Path(path)


def export_direction(
    probe: Probe, path: str | Path, format: str, latent: int, scale: float = 1.0, layer: int | None = None
) -> Path:
    """Export ``scale · directions()[latent]`` to ``path`` as ``format`` (one of :data:`FORMATS`)."""
    if format == "gguf":
        return export_gguf(probe, path, latent, scale, layer)
    if format == "steering-vectors":
        return export_steering_vector(probe, path, latent, scale, layer)
    if format == "safetensors":
        if layer is not None:
            raise ValueError("layer= applies to the gguf and steering-vectors formats; drop it for safetensors")
        return export_safetensors(probe, path, latent, scale)
    raise ValueError(f"unknown export format {format!r}; choose one of {list(FORMATS)}")


def _metadata(probe: Probe, latent: int, scale: float) -> dict[str, str]:
    return {
        "hook": probe.hook,
        "latent": str(int(latent)),
        "scale": repr(float(scale)),
        "layout": "[d_model] activation units: scale * Probe.directions()[latent]",
        "probe_disentangle_version": __version__,
    }


def _read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a file written by probe-disentangle export")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"{path} is not a safetensors file ({err}); pass a file written by probe-disentangle export"
        ) from err


__all__ = [
    "FORMATS",
    "block_layer",
    "export_direction",
    "export_gguf",
    "export_safetensors",
    "export_steering_vector",
    "load_steering_vector",
    "model_hint",
    "steering_vector",
    "to_steering_vector",
]
