"""Sparse autoencoders from SAELens as a baseline steerer (issue 20) and an import format (issue 23).

Three parts:

- :func:`load_saelens` reads a SAELens SAE folder (``cfg.json`` + ``sae_weights.safetensors``, the
  files ``SAE.save_model`` / ``TrainingSAE.save_inference_model`` write) as JSON and safetensors,
  without SAELens and without executing anything, into a :class:`SparseAutoencoder`
  (:mod:`probe_disentangle.heads.sae`, where :class:`~probe_disentangle.heads.sae.SAEHead` makes it
  a probe head for :meth:`Probe.from_sae <probe_disentangle.probe.Probe.from_sae>`): encode,
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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from ..adapters import Adapter
from ..constants import SAELENS_CONFIG_FILE, SAELENS_SCALER_FILE, SAELENS_WEIGHTS_FILE
from ..heads.sae import ARCHITECTURE_TENSORS, SparseAutoencoder, SparseAutoencoderConfig
from ..io import atomic_write_bytes, atomic_write_json, tensors_to_bytes
from .baselines import mutual_information_matrix
from .interchange import FeatureInterchanger, Interchanger, Reader, subspace_interchanger, vector_reader

logger = logging.getLogger(__name__)

SAELENS_VERSION = "6.54.12"  # the SAELens release train_sae is written and tested against
INSTALL_HINT = (
    f"pip install -e '.[sae]' && pip install --no-deps sae-lens=={SAELENS_VERSION} "
    "(SAELens pins transformer-lens 3.x; --no-deps keeps this project's 4.x)"
)
# SAELens training architectures train_sae accepts; those with a k take it (the rest must not)
TRAINABLE = ("standard", "topk", "batchtopk", "jumprelu", "gated", "matryoshka_batchtopk")
TOPK_FAMILY = ("topk", "batchtopk", "matryoshka_batchtopk")
# SAELens's normalize_activations settings this loader reproduces: none, and a constant factor
# (folded into the weights exactly as SAELens's fold_activation_norm_scaling_factor does)
NORMALIZATIONS = ("none", "expected_average_only_in")
# the settings it refuses, and why: each vector is rescaled by its own statistics, and SAELens's
# decode undoes that with the statistics of the vector encoded last, so decode(f) is no function
# of f alone and an edit's size would depend on the vector it is written into
PER_VECTOR = {
    "layer_norm": "a per-vector layer norm (each vector centred and divided by its own std; decode undoes it "
    "with the statistics of the vector encoded last)",
    "constant_norm_rescale": "a per-vector rescale to norm √d_in (decode divides by the factor of the vector "
    "encoded last)",
    "covariance_whitening": "a whitening SAELens folds into the weights at the end of training; a folder still "
    "naming it holds unfolded weights",
}


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
    standard SAE reads as topk). ``normalize_activations``: "none", or "expected_average_only_in"
    (a constant factor, folded into the weights by :func:`load_saelens`); the per-vector ones
    (:data:`PER_VECTOR`) are refused, naming why."""
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
    if norm not in NORMALIZATIONS:
        why = PER_VECTOR.get(norm, "a normalisation this loader does not know")
        raise ValueError(
            f"{path}: normalize_activations={norm!r} is {why}; this loader reproduces only "
            f"{sorted(NORMALIZATIONS)} (an SAE trained with 'expected_average_only_in' or 'covariance_whitening' "
            "has it folded into its weights when SAELens saves it at the end of training: load that folder)"
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


def _scaling_factor(folder: Path, cfg_path: Path) -> float:
    """The factor an ``expected_average_only_in`` SAE multiplies activations by, from the
    ``activation_scaler.json`` SAELens writes beside a checkpoint's ``cfg.json``."""
    path = folder / SAELENS_SCALER_FILE
    hint = (
        "SAELens folds it into the weights at the end of training (and saves 'none'); load the final "
        "save_inference_model folder, or call sae.fold_activation_norm_scaling_factor(s) and save again"
    )
    if not path.is_file():
        raise ValueError(
            f"{cfg_path}: normalize_activations='expected_average_only_in' multiplies every activation by a "
            f"factor, and {path} (where a SAELens checkpoint keeps it) is missing; {hint}"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); {hint}") from err
    s = data.get("scaling_factor") if isinstance(data, dict) else None
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
        raise ValueError(f"{path} holds no positive finite 'scaling_factor' (got {s!r}); {hint}")
    if data.get("has_whitening"):
        raise ValueError(f"{path}: a whitened SAE ('has_whitening') is not reproduced here; {hint}")
    return float(s)


def load_saelens(folder: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """An SAELens SAE folder (``cfg.json`` + ``sae_weights.safetensors``) as a :class:`SparseAutoencoder`.

    Reads JSON and safetensors only (no SAELens, no pickle). Every tensor the architecture needs
    must be there with the shape ``cfg.json`` implies, and no other (a mismatch names the tensor
    and both shapes). Older layouts: ``log_threshold`` becomes ``threshold = exp(log_threshold)``;
    a ``scaling_factor`` (SAELens ≤ 5 fine-tuning) is folded into W_dec. A checkpoint still
    marked ``normalize_activations="expected_average_only_in"`` has the factor s of its
    ``activation_scaler.json`` folded in as SAELens folds it at the end of training
    (W_enc·s, W_dec/s, b_dec/s: the SAE then reads raw activations)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass the folder holding {SAELENS_CONFIG_FILE}")
    cfg_path, weights_path = folder / SAELENS_CONFIG_FILE, folder / SAELENS_WEIGHTS_FILE
    cfg = _read_cfg(cfg_path)
    config = _config_from_saelens(cfg, cfg_path)
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
    if (cfg.get("normalize_activations") or "none") == "expected_average_only_in":
        s = _scaling_factor(folder, cfg_path)
        state["W_enc"], state["W_dec"], state["b_dec"] = state["W_enc"] * s, state["W_dec"] / s, state["b_dec"] / s
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
