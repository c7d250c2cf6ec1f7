"""Sparse autoencoders from SAELens as a baseline steerer (issue 20) and an import format (issue 23).

Three parts:

- :func:`load_saelens` reads a SAELens SAE folder (``cfg.json`` + ``sae_weights.safetensors``, the
  files ``SAE.save_model`` / ``TrainingSAE.save_inference_model`` write) as JSON and safetensors,
  without SAELens and without executing anything, into a :class:`SparseAutoencoder` here: encode,
  decode and the decoder rows, for the inference architectures SAELens saves (``standard``,
  ``topk``, ``jumprelu`` — which BatchTopK training saves as —, ``gated``). :func:`save_saelens`
  writes the same format back.
- :func:`train_sae` trains an SAE with SAELens's own ``SAETrainer`` on activation vectors, so the
  baseline is the SAE users train, not one written here; it returns the loaded inference SAE.
- :func:`sae_interchanger` aligns SAE features to factors by mutual information and swaps them
  (an interchanger for :func:`~.interchange.evaluate_interchange`).

SAELens 6.x pins transformer-lens 3.x, while this project runs on 4.x. Install it beside 4.x with
``pip install --no-deps sae-lens==6.54.12 simple-parsing`` (the ``sae`` extra installs
simple-parsing; see README). SAELens then imports three TransformerLens 3.x module paths that 4.x
removed; :func:`_import_saelens` registers stand-ins for them in ``sys.modules`` first (never
touching installed files). Only loading needs nothing beyond safetensors.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import math
import sys
import tempfile
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from ..adapters import Adapter
from ..constants import SAELENS_CONFIG_FILE, SAELENS_WEIGHTS_FILE
from ..io import atomic_write_bytes, atomic_write_json, tensors_to_bytes
from .baselines import mutual_information_matrix
from .interchange import FeatureInterchanger, Interchanger, Reader, subspace_interchanger, vector_reader

logger = logging.getLogger(__name__)

SAELENS_VERSION = "6.54.12"  # the SAELens release train_sae is written and tested against
INSTALL_HINT = (
    f"pip install -e '.[sae]' && pip install --no-deps sae-lens=={SAELENS_VERSION} "
    "(SAELens pins transformer-lens 3.x; --no-deps keeps this project's 4.x)"
)
# inference architecture -> its tensors besides W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_dec [d_in]
ARCHITECTURE_TENSORS = {
    "standard": ("b_enc",),
    "topk": ("b_enc",),
    "jumprelu": ("b_enc", "threshold"),
    "gated": ("b_gate", "b_mag", "r_mag"),
}
# SAELens training architectures train_sae accepts; those with a k take it (the rest must not)
TRAINABLE = ("standard", "topk", "batchtopk", "jumprelu", "gated", "matryoshka_batchtopk")
TOPK_FAMILY = ("topk", "batchtopk", "matryoshka_batchtopk")


# ------------------------------------------------------------------ the inference SAE


@dataclass
class SparseAutoencoderConfig:
    """What an SAELens inference SAE needs to encode and decode: sizes, the activation
    (``architecture``; ``k`` for topk), whether ``b_dec`` is subtracted from the input before
    encoding, whether topk activations are scaled by the decoder row norms, and the hook it was
    trained at (informational)."""

    d_in: int
    d_sae: int
    architecture: str = "standard"
    k: int | None = None
    apply_b_dec_to_input: bool = True
    rescale_acts_by_decoder_norm: bool = False
    hook_name: str | None = None

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURE_TENSORS:
            raise ValueError(
                f"unknown SAE architecture {self.architecture!r}; this loader reads {sorted(ARCHITECTURE_TENSORS)}"
            )
        if self.d_in < 1 or self.d_sae < 1:
            raise ValueError(f"d_in and d_sae must be ≥ 1, got {self.d_in} and {self.d_sae}")
        if self.architecture == "topk":
            if self.k is None or not 1 <= self.k <= self.d_sae:
                raise ValueError(f"a topk SAE needs k in 1..d_sae={self.d_sae}, got {self.k}")
        elif self.k is not None:
            raise ValueError(f"k is for topk SAEs only; a {self.architecture} SAE has none (got k={self.k})")


class SparseAutoencoder(nn.Module):
    """An SAELens inference SAE (same parameter names and shapes, same encode/decode), float32.

    encode: ``x [N, d_in] → f [N, d_sae]``, with ``pre = (x − b_dec·apply) W_enc + b_enc`` and
    standard: ReLU(pre); topk: the k largest of pre (times ‖W_dec row‖ if rescaled), ReLU'd, the
    rest 0; jumprelu: ReLU(pre)·[pre > threshold]; gated: [x̃ W_enc + b_gate > 0]·ReLU(x̃ (W_enc ∘
    exp r_mag) + b_mag), x̃ = x − b_dec·apply. decode: ``f @ feature_directions + b_dec``.
    """

    def __init__(self, config: SparseAutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        d, m = config.d_in, config.d_sae
        self.W_enc = nn.Parameter(torch.zeros(d, m))
        self.W_dec = nn.Parameter(torch.zeros(m, d))
        self.b_dec = nn.Parameter(torch.zeros(d))
        for name in ARCHITECTURE_TENSORS[config.architecture]:
            self.register_parameter(name, nn.Parameter(torch.zeros(m)))

    @property
    def feature_directions(self) -> Tensor:
        """``[d_sae, d_in]``: what one unit of each feature adds to the reconstruction, so that
        decode(f) = f @ feature_directions + b_dec (W_dec, divided by its row norms when topk
        activations are rescaled by them)."""
        if self.config.rescale_acts_by_decoder_norm:
            return self.W_dec / self.W_dec.norm(dim=-1, keepdim=True)
        return self.W_dec

    def _check(self, x: Tensor, width: int, what: str) -> Tensor:
        if x.ndim != 2 or x.shape[1] != width:
            raise ValueError(f"{what} must be [N, {width}] for this SAE, got {tuple(x.shape)}")
        return x.to(self.W_enc.dtype)

    def encode(self, x: Tensor) -> Tensor:
        """Feature activations ``[N, d_sae]`` of vectors ``x [N, d_in]``."""
        cfg = self.config
        x = self._check(x, cfg.d_in, "the vectors to encode")
        if cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        if cfg.architecture == "gated":
            gate = (x @ self.W_enc + self.b_gate) > 0
            return gate.to(x.dtype) * torch.relu(x @ (self.W_enc * self.r_mag.exp()) + self.b_mag)
        pre = x @ self.W_enc + self.b_enc
        if cfg.architecture == "standard":
            return torch.relu(pre)
        if cfg.architecture == "jumprelu":
            return torch.relu(pre) * (pre > self.threshold).to(pre.dtype)
        if cfg.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec.norm(dim=-1)
        vals, idx = pre.topk(cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())

    def decode(self, f: Tensor) -> Tensor:
        """Reconstructions ``[N, d_in]`` of feature activations ``f [N, d_sae]``."""
        f = self._check(f, self.config.d_sae, "the feature activations to decode")
        return f @ self.feature_directions + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


# ------------------------------------------------------------------ the SAELens folder format


def _read_cfg(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; pass a folder written by SAELens (SAE.save_model or save_inference_model), "
            f"which holds {SAELENS_CONFIG_FILE} and {SAELENS_WEIGHTS_FILE}"
        )
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the file is truncated or was edited") from err
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} must hold a JSON object of SAE config fields, got {type(cfg).__name__}")
    missing = [key for key in ("d_in", "d_sae") if not isinstance(cfg.get(key), int)]
    if missing:
        raise ValueError(f"{path} has no integer {missing}; it is not an SAELens cfg.json")
    return cfg


def _config_from_saelens(cfg: dict[str, Any], path: Path) -> SparseAutoencoderConfig:
    """Our config from an SAELens ``cfg.json`` (6.x; 5.x's ``activation_fn_str: "topk"`` on a
    standard SAE reads as topk). Normalisations SAELens folds into the weights when saving are
    accepted only as "none": a folder that still needs a runtime normalisation is refused."""
    arch = cfg.get("architecture", "standard")
    k = cfg.get("k")
    if cfg.get("activation_fn_str") == "topk":  # SAELens ≤ 5: topk was an activation of the standard SAE
        arch, k = "topk", (cfg.get("activation_fn_kwargs") or {}).get("k", k)
    if arch not in ARCHITECTURE_TENSORS:
        raise ValueError(
            f"{path}: architecture {arch!r} is not one this loader reads ({sorted(ARCHITECTURE_TENSORS)}); "
            "save the SAE with save_inference_model (BatchTopK saves as jumprelu)"
        )
    norm = cfg.get("normalize_activations", "none") or "none"
    if norm != "none":
        raise ValueError(
            f"{path}: normalize_activations={norm!r} needs a runtime normalisation this loader does not apply; "
            "fold it into the weights first (SAELens folds 'expected_average_only_in' at the end of training)"
        )
    if (cfg.get("reshape_activations") or "none") != "none":
        raise ValueError(f"{path}: reshape_activations={cfg['reshape_activations']!r}: only flat vectors are supported")
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    return SparseAutoencoderConfig(
        d_in=cfg["d_in"],
        d_sae=cfg["d_sae"],
        architecture=arch,
        k=int(k) if arch == "topk" and k is not None else None,
        apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
        rescale_acts_by_decoder_norm=bool(cfg.get("rescale_acts_by_decoder_norm", False)) and arch == "topk",
        hook_name=meta.get("hook_name", cfg.get("hook_name")),
    )


def load_saelens(folder: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """An SAELens SAE folder (``cfg.json`` + ``sae_weights.safetensors``) as a :class:`SparseAutoencoder`.

    Reads JSON and safetensors only (no SAELens, no pickle). Every tensor the architecture needs
    must be there with the shape ``cfg.json`` implies, and no other (a mismatch names the tensor
    and both shapes). Older layouts: ``log_threshold`` becomes ``threshold = exp(log_threshold)``;
    a ``scaling_factor`` (SAELens ≤ 5 fine-tuning) is folded into W_dec."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass the folder holding {SAELENS_CONFIG_FILE}")
    cfg_path, weights_path = folder / SAELENS_CONFIG_FILE, folder / SAELENS_WEIGHTS_FILE
    config = _config_from_saelens(_read_cfg(cfg_path), cfg_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path} is missing; the SAE folder is incomplete (save it again)")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{weights_path} is not a readable safetensors file ({err})") from err
    if "log_threshold" in tensors and "threshold" not in tensors:
        tensors["threshold"] = tensors.pop("log_threshold").exp()
    scale = tensors.pop("scaling_factor", None)
    sae = SparseAutoencoder(config)
    own = {k: v.shape for k, v in sae.state_dict().items()}
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{weights_path} does not fit a {config.architecture} SAE: missing {missing}, unexpected {unexpected}; "
            f"the weights and {SAELENS_CONFIG_FILE} come from different SAEs"
        )
    for name, shape in own.items():
        if tuple(tensors[name].shape) != tuple(shape):
            raise ValueError(
                f"{weights_path}: {name} is {tuple(tensors[name].shape)} but {SAELENS_CONFIG_FILE} "
                f"(d_in={config.d_in}, d_sae={config.d_sae}) needs {tuple(shape)}"
            )
    state = {k: v.float() for k, v in tensors.items()}
    if scale is not None:
        if tuple(scale.shape) != (config.d_sae,):
            raise ValueError(f"{weights_path}: scaling_factor is {tuple(scale.shape)}, needs ({config.d_sae},)")
        state["W_dec"] = state["W_dec"] * scale.float()[:, None]
    sae.load_state_dict(state, strict=True)
    return sae.requires_grad_(False).to(device).eval()  # a frozen baseline: nothing trains it here


def save_saelens(sae: SparseAutoencoder, folder: str | Path) -> Path:
    """Write ``sae`` as an SAELens 6.x inference folder (``cfg.json`` + ``sae_weights.safetensors``)
    that :func:`load_saelens` and SAELens's ``SAE.load_from_disk`` read. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    c = sae.config
    cfg: dict[str, Any] = {
        "architecture": c.architecture,
        "d_in": c.d_in,
        "d_sae": c.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": c.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"hook_name": c.hook_name},
    }
    if c.architecture == "topk":
        cfg.update(k=c.k, rescale_acts_by_decoder_norm=c.rescale_acts_by_decoder_norm)
    atomic_write_bytes(folder / SAELENS_WEIGHTS_FILE, tensors_to_bytes(dict(sae.state_dict())))
    atomic_write_json(folder / SAELENS_CONFIG_FILE, cfg)
    return folder


# ------------------------------------------------------------------ training with SAELens


def _install_tl4_shim() -> None:
    """Make SAELens 6.x importable beside transformer-lens 4.x.

    SAELens imports ``transformer_lens.HookedTransformer`` (module and class),
    ``transformer_lens.utils`` and ``transformer_lens.components.mlps.can_be_used_as_mlp``; 4.x
    removed them (``utils`` became ``utilities``, same names; the HookedTransformer-based classes
    are gone, replaced by TransformerBridge). Where they are missing, this registers stand-in
    modules in ``sys.modules``: ``utils`` → ``utilities``, and the two removed classes as
    subclassable ``HookedRootModule`` subclasses that raise on construction (SAELens subclasses
    them at import; nothing in training builds one). On transformer-lens 3.x it does nothing."""
    import transformer_lens

    try:
        importlib.import_module("transformer_lens.HookedTransformer")
        return  # transformer-lens ≤ 3: SAELens's own imports work
    except ImportError:
        pass
    from transformer_lens.HookedRootModule import HookedRootModule

    def removed(name: str) -> type:
        def __init__(self, *args, **kwargs):
            raise ImportError(
                f"{name} does not exist in transformer-lens 4.x (a stand-in registered by probe_disentangle "
                "so that SAELens imports); use SAELens's TransformerBridge API"
            )

        return type(name, (HookedRootModule,), {"__init__": __init__})

    ht = types.ModuleType("transformer_lens.HookedTransformer")
    ht.HookedRootModule = HookedRootModule
    ht.HookedTransformer = removed("HookedTransformer")
    ht.Loss = ht.Output = object  # used only in SAELens's type annotations
    sys.modules[ht.__name__] = ht
    transformer_lens.HookedTransformer = ht.HookedTransformer  # `from transformer_lens import HookedTransformer`
    sys.modules.setdefault("transformer_lens.utils", importlib.import_module("transformer_lens.utilities"))
    if "transformer_lens.components" not in sys.modules:
        comp = types.ModuleType("transformer_lens.components")
        mlps = types.ModuleType("transformer_lens.components.mlps")
        cbm = types.ModuleType("transformer_lens.components.mlps.can_be_used_as_mlp")
        cbm.CanBeUsedAsMLP = removed("CanBeUsedAsMLP")
        comp.mlps, mlps.can_be_used_as_mlp = mlps, cbm
        sys.modules.update({m.__name__: m for m in (comp, mlps, cbm)})


def _import_saelens():
    """``sae_lens``, imported lazily (after :func:`_install_tl4_shim`); a missing SAELens or
    transformer-lens raises an ImportError saying what to install."""
    try:
        import transformer_lens  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"training an SAE with SAELens needs transformer-lens (the `transformers` extra) ({err}); {INSTALL_HINT}"
        ) from err
    _install_tl4_shim()
    try:
        return importlib.import_module("sae_lens")
    except ImportError as err:
        raise ImportError(f"training an SAE uses SAELens, which could not be imported ({err}); {INSTALL_HINT}") from err


def _batches(activations: Tensor | Iterable[Tensor], batch_size: int, seed: int) -> tuple[Iterator[Tensor], int, int]:
    """(an endless iterator of ``[B, d]`` float batches, d, B). A tensor ``[N, d]`` is served in
    seeded random order, epoch after epoch; an iterable is served as it comes (checked)."""
    if isinstance(activations, Tensor):
        acts = activations.detach().float()
        if acts.ndim != 2 or len(acts) == 0:
            raise ValueError(f"activations must be [N, d] vectors with N ≥ 1, got {tuple(acts.shape)}")
        if not bool(torch.isfinite(acts).all()):
            raise ValueError("activations hold NaN or inf; check the host's activations before training an SAE")
        B = min(batch_size, len(acts))
        g = torch.Generator().manual_seed(seed)

        def endless() -> Iterator[Tensor]:
            while True:
                perm = torch.randperm(len(acts), generator=g)
                for s in range(0, len(acts) - B + 1, B):
                    yield acts[perm[s : s + B]]

        return endless(), acts.shape[1], B
    it = iter(activations)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError("the activation iterator is empty; it must yield [B, d] tensors") from None
    first = torch.as_tensor(first)
    if first.ndim != 2 or len(first) == 0:
        raise ValueError(f"the activation iterator must yield [B, d] tensors, its first is {tuple(first.shape)}")
    d, B = first.shape[1], first.shape[0]

    def checked() -> Iterator[Tensor]:
        yield first.float()
        n = 1
        for b in it:
            b = torch.as_tensor(b)
            if b.ndim != 2 or b.shape[1] != d:
                raise ValueError(
                    f"batch {n} of the activation iterator is {tuple(b.shape)}; every batch must be [B, {d}]"
                )
            n += 1
            yield b.float()
        raise ValueError(
            f"the activation iterator ran out after {n} batches; pass fewer steps or an iterator that yields more"
        )

    return checked(), d, B


def train_sae(
    activations: Tensor | Iterable[Tensor],
    d_sae: int,
    architecture: str = "topk",
    k: int | None = None,
    steps: int = 2000,
    lr: float = 3e-4,
    seed: int = 0,
    batch_size: int = 1024,
    device: str = "cpu",
    options: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> SparseAutoencoder:
    """Train an SAE with SAELens's own ``SAETrainer`` and return it loaded as a :class:`SparseAutoencoder`.

    ``activations``: vectors ``[N, d]`` (served in seeded random batches of ``batch_size``) or any
    iterable of ``[B, d]`` batches (served as they come; it must last ``steps`` batches).
    ``architecture``: an SAELens training architecture (``standard``, ``topk``, ``batchtopk``,
    ``jumprelu``, ``gated``, ``matryoshka_batchtopk``); ``k`` (active features per vector) is
    required for the topk family and refused otherwise. ``options``: further fields of SAELens's
    training config for the architecture (e.g. ``{"l1_coefficient": 5.0}`` for standard,
    ``{"normalize_activations": "expected_average_only_in"}``). The learning rate is constant
    (``lr_end = lr``: SAELens requires one). Initialisation is seeded by ``seed`` without touching
    the global RNG. The trained SAE goes through ``save_inference_model`` and :func:`load_saelens`,
    the path every SAELens SAE a user brings takes. ``progress``: show SAELens's tqdm bars (off by
    default: library code prints nothing; the bars are silenced for the call and restored after)."""
    if architecture not in TRAINABLE:
        raise ValueError(f"unknown SAE architecture {architecture!r}; choose one of {list(TRAINABLE)}")
    if architecture in TOPK_FAMILY and (k is None or not 1 <= k <= d_sae):
        raise ValueError(f"a {architecture} SAE needs k (active features per vector) in 1..d_sae={d_sae}, got {k}")
    if architecture not in TOPK_FAMILY and k is not None:
        raise ValueError(f"k is for the topk family {list(TOPK_FAMILY)}; a {architecture} SAE takes none")
    if d_sae < 1 or steps < 1 or batch_size < 1 or not math.isfinite(lr) or lr <= 0:
        raise ValueError(
            f"d_sae, steps and batch_size must be ≥ 1 and lr > 0; got {d_sae}, {steps}, {batch_size}, {lr}"
        )
    sae_lens = _import_saelens()
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.registry import get_sae_training_class
    from sae_lens.training import activation_scaler, sae_trainer

    data, d, B = _batches(activations, batch_size, seed)
    sae_cls, cfg_cls = get_sae_training_class(architecture)
    fields = {"d_in": d, "d_sae": d_sae, "device": device, **({"k": k} if k is not None else {}), **(options or {})}
    try:
        sae_cfg = cfg_cls(**fields)
    except TypeError as err:
        raise ValueError(f"SAELens's {cfg_cls.__name__} refuses these fields ({err}); check `options`") from err
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * B,
        train_batch_size_samples=B,
        lr=lr,
        lr_end=lr,
        device=device,
        logger=LoggingConfig(log_to_wandb=False),
    )
    bars = {mod: mod.tqdm for mod in (sae_trainer, activation_scaler)}  # SAELens's progress bars
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(seed)
        sae = sae_cls(sae_cfg)
        trainer = sae_lens.SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=data)
        for mod, bar in bars.items():
            mod.tqdm = bar if progress else functools.partial(bar, disable=True)
        try:
            trained = trainer.fit()
        finally:
            for mod, bar in bars.items():
                mod.tqdm = bar
        trained.save_inference_model(tmp)
        out = load_saelens(tmp, device=device)
    logger.info("trained a %s SAE (d_sae=%d) with SAELens for %d steps of %d vectors", architecture, d_sae, steps, B)
    return out


# ------------------------------------------------------------------ alignment and interchange


def align_features(
    mi: np.ndarray, per_factor: int | Sequence[int], entropies: Sequence[float] | None = None
) -> dict[int, list[int]]:
    """Features per factor from a mutual-information matrix ``mi [d_sae, F]`` (nats).

    Each feature belongs to the factor it tells most about, relative to the factor's entropy
    (MI / H(factor), so a binary factor does not lose every feature to a 5-valued one; without
    ``entropies``, raw MI); each factor takes up to ``per_factor[f]`` of its own features, most MI
    first. Features are exclusive — swapping one factor's features touches no other factor's —
    except that a factor owning no feature takes its single highest-MI feature. A feature with no
    MI with any factor (a dead one) belongs to none."""
    mi = np.asarray(mi, dtype=float)
    if mi.ndim != 2 or mi.shape[0] == 0 or mi.shape[1] == 0:
        raise ValueError(f"mi must be [features, factors], got {mi.shape}")
    F = mi.shape[1]
    counts = [int(per_factor)] * F if np.isscalar(per_factor) else [int(c) for c in per_factor]
    if len(counts) != F or min(counts) < 1:
        raise ValueError(f"per_factor must be ≥ 1 for each of the {F} factors, got {per_factor}")
    ent = np.ones(F) if entropies is None else np.asarray(entropies, dtype=float)
    if ent.shape != (F,) or (ent <= 0).any():
        raise ValueError(f"entropies must be {F} positive numbers (nats), got {entropies}")
    rel = mi / ent
    owner = rel.argmax(1)
    live = mi.max(1) > 0
    out = {}
    for f in range(F):
        own = np.flatnonzero((owner == f) & live)
        own = own[np.argsort(-mi[own, f], kind="stable")][: counts[f]]
        out[f] = [int(i) for i in own] if len(own) else [int(mi[:, f].argmax())]
    return out


def factor_entropies(factors: np.ndarray) -> list[float]:
    """The entropy (nats) of each factor column of ``factors [N, F]``."""
    out = []
    for col in np.asarray(factors).T:
        p = np.unique(col, return_counts=True)[1] / len(col)
        out.append(float(-(p * np.log(p)).sum()) or 1.0)
    return out


def sae_interchanger(
    sae: SparseAutoencoder,
    adapter: Adapter,
    hook: str,
    acts: Tensor | None = None,
    factors: np.ndarray | None = None,
    read: Reader | Mapping[int, Reader] | None = None,
    per_factor: int | Sequence[int] | None = None,
    features: Mapping[int, Sequence[int]] | None = None,
    form: str = "features",
) -> tuple[Interchanger, dict[int, list[int]]]:
    """An SAE's features as an interchanger: each factor's features (:func:`align_features` on the
    MI of ``sae.encode(acts)`` with ``factors [M, F]``, ``per_factor`` features each — default the
    factor's number of values, one feature per value being an SAE's usual way —, or ``features``
    given) are swapped from source to base, steering along their decoder rows.

    ``form="features"`` (default, the SAE's own intervention, as SAEBench's RAVEL runs it): with f
    = enc(a) and f' = enc(s), the base's features of factor A take the source's values and the
    change is decoded, everything the SAE does not reconstruct kept:
    a' = a + (f'_A − f_A) · D_A, D the decoder rows (:attr:`~SparseAutoencoder.feature_directions`).
    ``form="subspace"``: :func:`~.interchange.subspace_interchanger` on the same rows, a' = a +
    P_A (s − a) — the rows' span, but not the SAE's encoder.

    ``read``: source tokens → vectors, one reader or one per factor (e.g. the position where the
    source writes that factor); default :func:`~.interchange.vector_reader` (a span adapter's span).
    Returns the interchanger and the features per factor."""
    if form not in ("features", "subspace"):
        raise ValueError(f"form must be 'features' or 'subspace', got {form!r}")
    if features is None:
        if acts is None or factors is None:
            raise ValueError("pass acts and factors (to align features by mutual information) or features")
        factors = np.asarray(factors)
        if len(acts) != len(factors):
            raise ValueError(f"acts has {len(acts)} rows but factors {len(factors)}; pass one factor row per vector")
        with torch.no_grad():
            codes = sae.encode(torch.as_tensor(acts).float()).cpu().numpy()
        sizes = [int(c.max()) + 1 for c in factors.T]
        features = align_features(
            mutual_information_matrix(codes, factors),
            sizes if per_factor is None else per_factor,
            factor_entropies(factors),
        )
    feats = {int(f): [int(i) for i in v] for f, v in features.items()}
    F = len(feats)
    if sorted(feats) != list(range(F)) or not all(feats.values()):
        raise ValueError(f"features must give at least one feature for each factor 0..{F - 1}, got {features}")
    bad = [i for v in feats.values() for i in v if not 0 <= i < sae.config.d_sae]
    if bad:
        raise ValueError(f"features {bad} are not among the SAE's 0..{sae.config.d_sae - 1}")
    if read is None:
        read = vector_reader(adapter, hook)
    readers = {f: read[f] for f in range(F)} if isinstance(read, Mapping) else dict.fromkeys(range(F), read)
    with torch.no_grad():
        rows = sae.feature_directions.detach().float().cpu()
    if form == "subspace":
        per = {
            f: subspace_interchanger(adapter, hook, [rows[feats[g]] for g in range(F)], readers[f]) for f in range(F)
        }
    else:

        def featurize(v: Tensor, f: int) -> Tensor:
            with torch.no_grad():
                return sae.encode(v.float())[:, feats[f]]

        def swap(a: Tensor, src: Tensor, f: int) -> Tensor:
            with torch.no_grad():
                base = sae.encode(a.float())[:, feats[f]]
                delta = (src.float() - base) @ rows[feats[f]].to(a.device)
            return (a.float() + delta).to(a.dtype)

        per = {f: FeatureInterchanger(adapter, hook, readers[f], featurize, swap, F) for f in range(F)}

    def interchange(factor: int, sources) -> contextlib.AbstractContextManager:
        if not 0 <= int(factor) < F:
            raise ValueError(f"factor {factor} out of range: this interchanger knows factors 0..{F - 1}")
        return per[int(factor)](int(factor), sources)

    return interchange, feats
