"""Lightweight disentangling heads, one module per idea.

``vae`` (VAEHead: any VAE-family objective), ``joint_vae`` (categorical + Gaussian latents),
``infogan`` (InfoGAN on activation vectors), ``sae`` (a SAELens SAE imported as a head, its
features the latents), ``sequence`` (per-token heads whose code is read
from a sequence's prefix, conditioned on token id and position; Ada-GVAE on pairs that differ in
unnamed factors), ``causal`` (CausalVAE: concepts related by a learned linear SCM, interventions
that reach the children); ``common`` holds what they share.

Each head defines its own training step (FactorVAE and InfoGAN alternate two optimisers) and
never imports the trainer: the trainer passes in an ``optimize(name, loss)`` callback. Heads
know nothing of hosts: a token id, a position or a timestep reaches a head only as a
conditioning tensor that the adapter provides.
"""

from .causal import CausalVAEConfig, CausalVAEHead, acyclicity, structural_hamming_distance
from .common import DECODERS, AdditiveDecoder, mlp
from .infogan import InfoGANHead, InfoGANHeadConfig
from .joint_vae import JointVAEHead, JointVAEHeadConfig
from .sae import SAEHead, SAEHeadConfig, SparseAutoencoder, SparseAutoencoderConfig
from .sequence import (
    PrefixCodeConfig,
    PrefixCodeHead,
    PrefixFitConfig,
    fit_prefix_code,
    fit_prefix_code_restarts,
    heldout_loss,
    onset_purity,
)
from .vae import VAEHead, VAEHeadConfig

__all__ = [
    "DECODERS",
    "AdditiveDecoder",
    "CausalVAEConfig",
    "CausalVAEHead",
    "InfoGANHead",
    "InfoGANHeadConfig",
    "JointVAEHead",
    "JointVAEHeadConfig",
    "PrefixCodeConfig",
    "PrefixCodeHead",
    "PrefixFitConfig",
    "SAEHead",
    "SAEHeadConfig",
    "SparseAutoencoder",
    "SparseAutoencoderConfig",
    "VAEHead",
    "VAEHeadConfig",
    "acyclicity",
    "fit_prefix_code",
    "fit_prefix_code_restarts",
    "onset_purity",
    "heldout_loss",
    "mlp",
    "structural_hamming_distance",
]
