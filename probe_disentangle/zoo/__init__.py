"""Small host models trained by this project on worlds with known factors, shipped with the
package (config JSON + safetensors, a few MB each) so tests and the demo run offline.

``factor_lm``: a TransformerLens-native transformer trained on the factor language by
``examples/train_factor_lm.py``.

``sprites_beta_tcvae``: a convolutional β-TCVAE (Burgess et al. 2018's encoder, a spatial broadcast
decoder) trained on the dSprites-like Sprites world by ``benchmarks/run_cpu_sprites.sh`` and shipped by
``examples/ship_sprites_vae.py``, with a card of its measured quality and of the latent that holds
each factor (:func:`sprites_vae_card`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..constants import CONFIG_FILE, WEIGHTS_FILE

ZOO_DIR = Path(__file__).resolve().parent
FACTOR_LM_DIR = ZOO_DIR / "factor_lm"
SPRITES_VAE_DIR = ZOO_DIR / "sprites_beta_tcvae"


def bridge_config(fields: dict[str, Any]):
    """A ``TransformerBridgeConfig`` from plain JSON fields (lazy TransformerLens import)."""
    try:
        from transformer_lens import TransformerBridgeConfig
    except ImportError as err:
        raise ImportError(
            "the shipped factor LM needs TransformerLens: pip install 'probe-disentangle[transformers]'"
        ) from err
    return TransformerBridgeConfig(**fields)


def save_native_lm(
    model: torch.nn.Module, directory: str | Path, model_fields: dict[str, Any], extra: dict[str, Any]
) -> Path:
    """Write a native TransformerBridge as config.json (its config fields + ``extra``) and safetensors."""
    from .. import io

    directory = Path(directory)
    data = io.tensors_to_bytes(model.state_dict())
    io.atomic_write_bytes(directory / WEIGHTS_FILE, data)
    import hashlib

    meta = {
        "model": model_fields,
        **extra,
        "files": {WEIGHTS_FILE: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}},
    }
    io.atomic_write_json(directory / CONFIG_FILE, meta)
    return directory


def load_native_lm(directory: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a native TransformerBridge saved by :func:`save_native_lm`: (model in eval mode, metadata)."""
    from transformer_lens import TransformerBridge

    from .. import io

    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; train the model with examples/train_factor_lm.py or reinstall the package"
        )
    meta = json.loads(path.read_text())
    model = TransformerBridge.boot_native(bridge_config(meta["model"]), device=device)
    tensors = io.load_tensors(directory / WEIGHTS_FILE, meta.get("files", {}).get(WEIGHTS_FILE))
    io.load_state_into(model, tensors, str(directory / WEIGHTS_FILE))
    return model.to(device).eval(), meta


def load_factor_lm(device: str | torch.device = "cpu"):
    """The shipped factor-language transformer and its world: ``(model, FactorLanguage())``."""
    from ..worlds.factor_language import FactorLanguage

    model, meta = load_native_lm(FACTOR_LM_DIR, device)
    world = FactorLanguage(plan=bool(meta.get("plan", False)))
    if meta.get("vocab") != world.tokenizer.vocab:
        raise ValueError(
            "the shipped factor LM was trained on another vocabulary; retrain it with examples/train_factor_lm.py"
        )
    return model, world


def load_sprites_vae(device: str | torch.device = "cpu"):
    """The shipped sprites β-TCVAE (eval mode) and its world: ``(ConvVAE, Sprites())``."""
    from .. import io
    from ..worlds.sprites import Sprites

    if not (SPRITES_VAE_DIR / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{SPRITES_VAE_DIR / CONFIG_FILE} is missing; reinstall the package or ship a model with "
            "examples/ship_sprites_vae.py"
        )
    return io.load(SPRITES_VAE_DIR, device).eval(), Sprites()


def sprites_vae_card() -> dict[str, Any]:
    """The shipped sprites model's card: its MIG, posterior MIG, DCI and per-factor scores on fresh
    sprites, its training run, and ``factor_latents`` (for each factor, the latent with the most
    mutual information with it, in nats): the latent to traverse to move a sprite along x, say."""
    from .. import io

    return io.read_config(SPRITES_VAE_DIR)["card"]


SPRITES_DDPM_DIR = ZOO_DIR / "sprites_ddpm"


def load_sprites_ddpm(directory: str | Path | None = None, device: str | torch.device = "cpu", scheduler: str = "ddim"):
    """The shipped sprites DDPM as a diffusers ``DDIMPipeline`` (``scheduler="ddpm"``: a
    ``DDPMPipeline``), loaded by diffusers' ``from_pretrained`` from the package folder (no
    network); ``pipe.card`` holds its model card (recipe and measured quality)."""
    from ..diffusion import load_ddpm_pipeline

    folder = Path(directory) if directory is not None else SPRITES_DDPM_DIR
    if directory is None and not (folder / "unet").is_dir():
        raise FileNotFoundError(
            f"{folder} holds no weights yet: the sprites DDPM is still training "
            "(examples/train_sprites_ddpm.py; export a checkpoint with --export DIR and pass directory=DIR)"
        )
    pipe = load_ddpm_pipeline(folder, device=device, scheduler=scheduler)
    status = pipe.card.get("status", "shipped")
    if directory is None and status != "shipped":
        import warnings

        warnings.warn(
            f"the shipped sprites DDPM is {status}: its samples are not yet reliably sprites "
            "(examples/train_sprites_ddpm.py carries the run on with --init-from)",
            stacklevel=2,
        )
    return pipe
