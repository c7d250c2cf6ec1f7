"""Probe = adapter + hook + normaliser + head: fit on a host's activations, read its latents,
extract directions, traverse, and steer the host by editing latents.

Steering keeps whatever the head does not reconstruct: with z = enc(a) and z' = z with the
chosen latents set or shifted, the activation becomes a' = a + dec(z') − dec(z) (in activation
units), so an edit of nothing is the identity and the head's reconstruction error is never
written into the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from . import __version__, distributed, hub, io, registry
from .adapters import Adapter, HookError, attach
from .constants import (
    CONFIG_FILE,
    DIRECTIONS_FILE,
    HEAD_DIR,
    PROBE_FILE,
    PROBE_FIT_FILE,
    PROBE_FIT_TENSORS_FILE,
    PROBE_TENSORS_FILE,
    README_FILE,
    SAELENS_CONFIG_FILE,
)
from .heads import CausalVAEHead, InfoGANHead, JointVAEHead, SAEHead, VAEHead
from .store import ActivationStore, Normalizer
from .train import TrainConfig, Trainer, TrainResult, prepare_checkpoint_dir, resolve_device

_DECODING_HEADS = (VAEHead, JointVAEHead, CausalVAEHead, SAEHead)  # heads with decode(z): error-preserving edits
ISA_MAX_VALUES = 8  # init="isa" on a Gaussian head: at most this many clusters per latent
REFERENCE_VECTORS = 4096  # vectors whose codes are kept as the probe's reference (traversal and steering ranges)

log = logging.getLogger(__name__)

Edit = float | tuple[str, float] | Tensor
Edits = Mapping[int, Edit]


def _finite_number(v: Any) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating))
        and not isinstance(v, (bool, np.bool_))
        and math.isfinite(v)
    )


def check_edits(edits: Any, k: int) -> dict[int, Edit]:
    """``edits`` as ``{latent index: edit}``, checked: a mapping from ints in ``0..k-1`` to a
    finite value, ``("set", v)``, ``("add", delta)`` or ``("nearest", [v1, v2, ...])``. A NaN or
    infinite edit would make every later activation NaN, so it is refused here."""
    if not isinstance(edits, Mapping):
        raise TypeError(
            f"edits must be a mapping {{latent index: edit}}, e.g. {{3: 2.0}}, got a {type(edits).__name__}"
        )
    out: dict[int, Edit] = {}
    for i, e in edits.items():
        if not isinstance(i, (int, np.integer)) or isinstance(i, (bool, np.bool_)):
            raise TypeError(f"edit keys are latent indices (ints), got {i!r} ({type(i).__name__}); e.g. {{3: 2.0}}")
        if not 0 <= int(i) < k:
            raise ValueError(f"latent index {i} out of range: the head has {k} latents (0..{k - 1})")
        form = (
            f"edit {e!r} for latent {i}: use a finite value, ('set', v), ('add', delta) or ('nearest', [v1, v2, ...])"
        )
        if isinstance(e, Tensor):  # one value per row (e.g. paired sources' codes in an interchange)
            if e.ndim != 1 or not e.is_floating_point() or not bool(torch.isfinite(e).all()):
                raise ValueError(
                    f"per-row edit for latent {i}: a 1-D tensor of finite floats [N], got {e.dtype} {tuple(e.shape)}"
                )
        elif isinstance(e, tuple):
            if len(e) != 2 or e[0] not in ("add", "set", "nearest"):
                raise ValueError(form)
            if e[0] == "nearest":
                if isinstance(e[1], (str, bytes)) or not isinstance(e[1], Sequence) or not len(e[1]):
                    raise ValueError(f"{form}; 'nearest' takes a non-empty list of candidate values")
                if not all(_finite_number(v) for v in e[1]):
                    raise ValueError(f"{form}; every 'nearest' candidate must be a finite number")
            elif not _finite_number(e[1]):
                raise ValueError(form)
        elif not _finite_number(e):
            raise (ValueError if isinstance(e, (int, float, np.number)) else TypeError)(form)
        out[int(i)] = e
    return out


def _apply_edits(z: Tensor, edits: dict[int, Edit], k: int) -> Tensor:
    """z' = z with latents set (``{i: v}``; a tensor ``[N]`` sets one value per row, e.g. the codes
    of paired source inputs in an interchange intervention) or shifted (``{i: ("add", d)}``);
    ``("nearest", values)`` edits are left for :meth:`Probe._delta`, which needs the decoder to
    choose. ``edits`` as :func:`check_edits` returns them."""
    z2 = z.clone()
    for i, e in edits.items():
        if isinstance(e, Tensor):
            if e.shape != (z.shape[0],):
                raise ValueError(
                    f"per-row edit for latent {i} has shape {tuple(e.shape)}; it needs one value per vector, "
                    f"[{z.shape[0]}]"
                )
            z2[:, i] = e.to(z2)
        elif isinstance(e, tuple):
            if e[0] == "nearest":
                continue  # chosen per row by Probe._delta
            z2[:, i] = z2[:, i] + e[1] if e[0] == "add" else torch.full_like(z2[:, i], float(e[1]))
        else:
            z2[:, i] = float(e)
    return z2


class Probe:
    """A disentangling head attached to a host model at one hook point.

    ``head``: a trained head, or None to build one at :meth:`fit` from ``architecture`` and
    ``head_config`` (a dict of config fields without ``d_in``, which the activations set).
    """

    def __init__(
        self,
        model: nn.Module | Adapter,
        hook: str,
        head: nn.Module | None = None,
        architecture: str = "vae_head",
        head_config: Mapping[str, Any] | None = None,
        normalizer: Normalizer | None = None,
        adapter_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.adapter_options = dict(adapter_options or {})
        self.adapter = attach(model, hook, **self.adapter_options)
        self.hook = hook
        self.head = head
        self.architecture = head.architecture if head is not None else architecture
        registry.get(self.architecture)
        self.head_config = dict(head_config or {})
        self.normalizer = normalizer
        self.reference_codes: Tensor | None = None
        self.init_report: dict[str, float] | None = None  # fit(init=...): how well the head took its start
        # measured scores ({name: number}, e.g. {"mig": 0.41}): saved in probe.json and the model card
        self.metrics: dict[str, float] | None = None

    @classmethod
    def from_sae(
        cls,
        model: nn.Module | Adapter,
        folder: str | Path,
        hook: str | None = None,
        adapter_options: Mapping[str, Any] | None = None,
    ) -> Probe:
        """A SAELens SAE as a probe: its features are the latents.

        ``folder``: what SAELens saves (``cfg.json`` + ``sae_weights.safetensors``), read as JSON
        and safetensors (:func:`~probe_disentangle.steering.sae.load_saelens`: no SAELens, no
        pickle). encode = the SAE's feature activations, decode = its decoder (b_dec included),
        so steering moves an activation by Δf · W_dec[feature] and keeps the SAE's
        reconstruction error (a' = a + dec(f') − dec(f)), and the metrics, interchange,
        traversals and save/load work on SAE features as on any head. ``hook``: default the
        ``hook_name`` in ``cfg.json``; it must exist on ``model``. The SAE's input normalisation
        is respected: ``normalize_activations="expected_average_only_in"`` is folded in from the
        checkpoint's ``activation_scaler.json``, and the per-vector settings (``layer_norm``,
        ``constant_norm_rescale``) and unfolded whitening are refused, named. The probe has no
        normaliser and no reference codes (nothing was fitted)."""
        from .steering.sae import load_saelens

        folder = Path(folder)
        sae = load_saelens(folder)
        name = hook if hook is not None else sae.config.hook_name
        if name is None:
            raise ValueError(
                f"{folder / SAELENS_CONFIG_FILE} names no hook (metadata.hook_name); pass hook=, the hook point of "
                "this model that the SAE was trained on"
            )
        if not isinstance(name, str):
            raise TypeError(f"hook must be a hook name (str), got {name!r}")
        head = SAEHead.from_sparse_autoencoder(sae)
        try:
            return cls(model, name, head=head, adapter_options=adapter_options)
        except HookError as err:
            source = "given as hook=" if hook is not None else f"the hook_name in {folder / SAELENS_CONFIG_FILE}"
            raise HookError(
                f"the SAE reads {name!r} ({source}), which this {type(model).__name__} does not have: {err} — pass "
                "hook= the name this model gives the activation the SAE was trained on"
            ) from err

    # ---------------------------------------------------------------- fitting
    def fit(
        self,
        data: Iterable[Any],
        train: TrainConfig | None = None,
        buffer_size: int = 65_536,
        normalize: bool = True,
        normalizer_vectors: int = 50_000,
        cache_dir: str | Path | None = None,
        device: str | torch.device | None = None,
        init: str | None = None,
        init_vectors: int = 20_000,
        init_steps: int | None = None,
        resume: str | Path | bool | None = None,
        overwrite: bool = False,
        resume_config: str = "error",
        pairs: bool = False,
    ) -> TrainResult:
        """Stream activations at the hook over ``data`` (host input batches) and train the head.

        ``pairs=True``: weak supervision. ``data`` yields pairs of host batches ``(batch_a,
        batch_b)`` whose inputs differ in some factors, which ones unsaid (minimal pairs, contrast
        pairs), row for row; the store keeps each pair together (``ActivationStore(pairs=True)``)
        and a ``vae_head`` trains as Ada-GVAE (Locatello et al. 2020; ``objective="beta_vae"`` for
        the paper's objective). The normaliser and reference vectors are those of both halves.

        ``init="isa"`` starts from the codes independent subspace analysis finds in the first
        ``init_vectors`` vectors (:mod:`probe_disentangle.isa`): one latent per independent
        subspace, its values the clusters inside it (a categorical latent takes them as its
        categories, a Gaussian one as evenly spaced means), learnt in ``init_steps`` steps (None:
        the head's ``initialize_from_codes`` default). For a joint VAE head start the
        capacity at its maximum then (``c_steps=1``), or training first blurs the codes.

        With ``train.checkpoint_dir`` set, the normaliser and the reference vectors are saved
        there (``probe_fit.json`` + ``.safetensors``) before training, beside the trainer's
        checkpoints. ``resume``: True (the latest checkpoint there) or a checkpoint folder, to carry
        on a fit that was stopped or killed: the head, the trainer and the store's position in the
        data come from the checkpoint, the normaliser and reference vectors from that file (the
        initialisation is not rerun). With the same data and arguments the resumed fit ends
        bit-identical (CPU) to one never interrupted. A fit that does not resume refuses a
        ``checkpoint_dir`` holding another run's checkpoints; ``overwrite=True`` deletes them.
        ``resume_config``: as :meth:`Trainer.fit` (a resume with another training config fails
        unless "override").

        Launched by torchrun (``torchrun --nproc-per-node N ...``) the fit is data-parallel: each
        rank runs the host on every N-th host batch, the normaliser combines every rank's
        statistics exactly, ``train.batch_size`` is the global batch (``batch_size / N`` rows a
        rank), and rank 0 alone writes the fit state and checkpoints (every rank's position in its
        data is in them; resume with the same N). The reference vectors are rank 0's."""
        if self.architecture == SAEHead.architecture:
            raise ValueError(
                "an SAE head is imported, not fitted here: build the probe with Probe.from_sae(model, folder) "
                "(train an SAE with probe_disentangle.steering.sae.train_sae, or with SAELens)"
            )
        train = train or TrainConfig()
        pairs = self._check_pairs(pairs)
        # under torchrun: data parallel (each rank runs the host on its own shard of the data)
        # (the group's backend follows the head's device: NCCL for GPUs, gloo for the CPU)
        dp = distributed.init_from_env(device=resolve_device(train.device)) or distributed.DataParallel.current()
        if dp is not None:
            data = distributed.ShardedBatches(data, dp)
        store = self._fit_store(data, train, buffer_size, cache_dir, device, dp, pairs)
        reference = self._begin_fit(
            store, train, normalize, normalizer_vectors, init, init_vectors, init_steps, resume, overwrite, dp
        )
        result = Trainer(self.head, train, data_parallel=dp if dp is not None else False).fit(
            store, resume=resume, resume_config=resume_config
        )
        self._end_fit(reference)
        return result

    def _fit_store(
        self,
        data: Iterable[Any],
        train: TrainConfig,
        buffer_size: int,
        cache_dir: str | Path | None,
        device: str | torch.device | None,
        dp: distributed.DataParallel | None = None,
        pairs: bool = False,
    ) -> ActivationStore:
        """The activation store a fit streams from (``data`` may be a shared forward of several hooks;
        under data parallel each rank's store holds its share of the global batch)."""
        return ActivationStore(
            self.adapter,
            self.hook,
            data,
            batch_size=train.batch_size if dp is None else dp.local_batch(train.batch_size),
            buffer_size=buffer_size,
            device=device or "cpu",
            seed=train.seed,
            cache_dir=cache_dir,
            pairs=pairs,
        )

    def _check_pairs(self, pairs: bool) -> bool:
        """``fit(pairs=...)`` checked against the head: a pair fit needs a VAE head built for pairs."""
        built = getattr(getattr(self.head, "config", None), "pairs", None) if self.head is not None else None
        if not pairs:
            if built:
                raise ValueError("this head was built for pairs (pairs=True): fit it with fit(data, pairs=True)")
            return False
        if self.architecture != "vae_head":
            raise ValueError(
                f"pair training (Ada-GVAE) is built for architecture='vae_head', not {self.architecture!r}; "
                "for a per-token sequence head pass pairs to heads.fit_prefix_code"
            )
        if self.head is None:
            self.head_config["pairs"] = True
        elif not built:
            raise ValueError("this head was built for single vectors: build it with VAEHeadConfig(pairs=True)")
        return True

    def _begin_fit(
        self,
        store: ActivationStore,
        train: TrainConfig,
        normalize: bool,
        normalizer_vectors: int,
        init: str | None,
        init_vectors: int,
        init_steps: int | None,
        resume: str | Path | bool | None,
        overwrite: bool,
        dp: distributed.DataParallel | None = None,
    ) -> Tensor:
        """Everything :meth:`fit` does before training: the normaliser, the reference vectors (read
        from the store's first pass, which training carries on), the head and its initialisation,
        the fit state beside the checkpoints. Returns the reference vectors. Under data parallel
        rank 0 alone writes, and the normaliser combines every rank's statistics exactly."""
        if init not in (None, "isa"):
            raise ValueError(f"unknown init {init!r}; use None (random) or 'isa'")
        if init_steps is not None and init_steps < 1:
            raise ValueError(f"init_steps must be ≥ 1 (or None for the head's default), got {init_steps}")
        if resume and not train.checkpoint_dir:
            raise ValueError("resume needs train.checkpoint_dir: the folder holding the fit's checkpoints")
        main = dp is None or dp.is_main
        if not resume and main:
            prepare_checkpoint_dir(train.checkpoint_dir, overwrite)
        distributed.barrier(dp)
        if resume:  # the fit's own normaliser and reference vectors, saved where its checkpoints are
            fit_dir = Path(train.checkpoint_dir) if resume is True else Path(resume).parent
            reference = self._load_fit_state(fit_dir, normalize)
            store.normalizer = self.normalizer
        else:
            if normalize:  # data parallel: every rank's statistics, combined exactly
                per_rank = normalizer_vectors if dp is None else max(1, normalizer_vectors // dp.world_size)
                reduce = None if dp is None else lambda stats: distributed.reduce_stats(stats, dp)
                self.normalizer = store.estimate_normalizer(per_rank, reduce=reduce)
                map_shape = self.head_config.get("map_shape") or getattr(
                    getattr(self.head, "config", None), "map_shape", None
                )
                if map_shape is not None:  # a head on maps: one scale per channel, shared by its positions
                    self.normalizer = self.normalizer.pooled_over_positions(map_shape)
            store.normalizer = self.normalizer
            # read before training, from the same pass the trainer then carries on: the host runs once
            reference = store.collect(max_vectors=REFERENCE_VECTORS)
            if store.pairs:  # both halves: [n, 2, d] → [2n, d]
                reference = reference.flatten(0, 1)
        if self.head is None:
            d = reference.shape[1]
            cls, cfg_cls = registry.get(self.architecture)
            cfg = dict(self.head_config)
            if self.architecture == "vae_head" and cfg.get("objective", "beta_tcvae") == "beta_tcvae":
                # MSS needs N: a stream has no fixed size, so use the number of samples the run draws
                cfg["objective_args"] = {
                    "dataset_size": train.steps * train.batch_size,
                    **cfg.get("objective_args", {}),
                }
            # the head's initial weights come from the run's seed, not from whatever the global
            # generator holds: the same TrainConfig gives the same probe, and restarts differ
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(train.seed)
                self.head = cls(cfg_cls(d_in=d, **cfg))
        if init == "isa" and not resume:  # a resumed head takes its weights from the checkpoint
            if isinstance(self.head, JointVAEHead) and self.head.config.categorical:
                sizes = self.head.config.categorical
            elif isinstance(self.head, VAEHead):
                sizes = [ISA_MAX_VALUES] * self.head.config.latent_dim  # a value per cluster, ≤ 8 each
            else:
                raise ValueError(
                    "init='isa' starts a VAE head's latents: use architecture='vae_head', or "
                    "'joint_vae_head' with categorical=[...]"
                )
            from .isa import isa_codes

            x = store.collect(max_vectors=init_vectors)
            x = x.flatten(0, 1) if store.pairs else x
            codes, _ = isa_codes(x, sizes, seed=train.seed)
            steps = {} if init_steps is None else {"steps": init_steps}
            self.init_report = self.head.initialize_from_codes(x, codes, seed=train.seed, **steps)
        if train.checkpoint_dir and not resume and main:
            self._save_fit_state(Path(train.checkpoint_dir), reference, normalize)
        distributed.barrier(dp)
        return reference

    def _end_fit(self, reference: Tensor) -> None:
        """After training: the reference codes (traversal and steering ranges) from the trained head."""
        self.reference_codes = self._codes(reference.to(self._param_device()))

    def _save_fit_state(self, directory: Path, reference: Tensor, normalize: bool) -> None:
        """The normaliser and reference vectors of a fit, beside its checkpoints (tensors first,
        the JSON that records their checksum last: a JSON file is only there when both are)."""
        tensors = {"reference": reference}
        if self.normalizer is not None:
            tensors["normalizer.mean"], tensors["normalizer.std"] = self.normalizer.mean, self.normalizer.std
        data = io.tensors_to_bytes(tensors)
        io.atomic_write_bytes(directory / PROBE_FIT_TENSORS_FILE, data)
        import hashlib

        meta = {
            "probe_disentangle_version": __version__,
            "hook": self.hook,
            "normalize": normalize,
            "init_report": self.init_report,
            "files": {PROBE_FIT_TENSORS_FILE: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}},
        }
        io.atomic_write_json(directory / PROBE_FIT_FILE, meta)

    def _load_fit_state(self, directory: Path, normalize: bool) -> Tensor:
        """Set the normaliser and init report a resumed fit saved in ``directory``; return its
        reference vectors."""
        path = directory / PROBE_FIT_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: {directory} holds no Probe.fit state to resume (the fit was not started "
                "by Probe.fit, or was killed before it began training); fit again without resume"
            )
        try:
            meta = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON ({err}); fit again without resume") from err
        if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
            raise ValueError(f"{path} was not written by Probe.fit; fit again without resume")
        if meta.get("hook") != self.hook or bool(meta.get("normalize")) != bool(normalize):
            raise ValueError(
                f"{path}: that fit read hook {meta.get('hook')!r} with normalize={meta.get('normalize')}, this one "
                f"{self.hook!r} with normalize={normalize}; resume with the same arguments, or fit again"
            )
        tensors = io.load_tensors(directory / PROBE_FIT_TENSORS_FILE, meta["files"].get(PROBE_FIT_TENSORS_FILE))
        self.normalizer = (
            Normalizer(tensors["normalizer.mean"], tensors["normalizer.std"]) if "normalizer.mean" in tensors else None
        )
        self.init_report = meta.get("init_report")
        return tensors["reference"]

    # ---------------------------------------------------------------- latents
    @property
    def latent_dim(self) -> int:
        if isinstance(self.head, (VAEHead, CausalVAEHead)):
            return self.head.config.latent_dim
        if isinstance(self.head, (InfoGANHead, JointVAEHead)):
            return len(self.head.config.categorical) + self.head.config.continuous
        if isinstance(self.head, SAEHead):
            return self.head.config.d_sae
        raise TypeError(f"unsupported head {type(self.head).__name__}")

    @property
    def categorical_codes(self) -> list[int]:
        """Indices of the codes that are category indices (InfoGAN and joint VAE heads put them first)."""
        if isinstance(self.head, (InfoGANHead, JointVAEHead)):
            return list(range(len(self.head.config.categorical)))
        return []

    def _norm(self, a: Tensor) -> Tensor:
        return self.normalizer(a) if self.normalizer is not None else a

    def _codes(self, x_norm: Tensor) -> Tensor:
        with torch.no_grad():
            if isinstance(self.head, (VAEHead, CausalVAEHead)):
                return self.head.encode(x_norm)[0]
            return self.head.encode(x_norm)

    @property
    def d_in(self) -> int:
        """The width of the vectors the probe reads (the head's input; a span's concatenation)."""
        self._require_head()
        return int(self.head.config.d_in)

    def _check_vectors(self, activations: Any, what: str) -> None:
        if not isinstance(activations, Tensor):
            raise TypeError(
                f"{what} takes activation vectors as a tensor [N, {self.d_in}], got {type(activations).__name__}"
            )
        if activations.ndim != 2 or activations.shape[1] != self.d_in:
            raise ValueError(
                f"{what}: vectors of shape {tuple(activations.shape)}, but this probe reads [N, {self.d_in}] at "
                f"{self.hook!r}; pass activations of that hook (of the host the probe was fitted on)"
            )
        if not activations.is_floating_point():
            raise TypeError(f"{what} takes floating-point activations, got {activations.dtype}")

    @torch.no_grad()
    def encode(self, activations: Tensor) -> Tensor:
        """Latent codes ``[N, k]`` of raw activation vectors (posterior means; Q's codes for InfoGAN).
        Rows holding NaN or ±inf are refused (their codes would be NaN), naming the rows."""
        self._check_vectors(activations, "Probe.encode")
        bad = (~torch.isfinite(activations).all(1)).nonzero().flatten()
        if bad.numel():
            raise ValueError(
                f"Probe.encode: {bad.numel()} of {len(activations)} rows hold NaN or inf (rows {bad[:10].tolist()}"
                f"{' …' if bad.numel() > 10 else ''}); drop or fix them first"
            )
        self.head.eval()
        return self._codes(self._norm(activations.to(self._param_device()).float()))

    @torch.no_grad()
    def encode_inputs(self, batch: Any) -> tuple[Tensor, Tensor]:
        """Run the host on ``batch`` and return (codes [N, k], index [N, 2]) for every vector."""
        acts = self.adapter.collect(batch, self.hook)
        return self.encode(acts.vectors), acts.index

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Activation vectors ``[N, d]`` (activation units) decoded from latents (VAE heads)."""
        self._require_head()
        if not isinstance(self.head, _DECODING_HEADS):
            raise TypeError(
                "decode needs a VAE or SAE head; an InfoGAN head generates from noise and codes (use directions())"
            )
        self.head.eval()
        out = self.head.decode(z.to(self._param_device()).float())
        return self.normalizer.inverse(out) if self.normalizer is not None else out

    @torch.no_grad()
    def explained_variance(self, activations: Tensor) -> float:
        """1 − Σ‖x − dec(enc(x))‖² / Σ‖x − x̄‖² over ``activations`` (normalised units): how much of
        them the head reconstructs from its codes. Needs no labels, so it can choose between fits."""
        z = self.encode(activations)  # checks the head and puts it in eval mode
        x = self._norm(activations.to(z.device).float())
        recon = self.head.decode(z)  # normalised units, as the head sees them
        return float(1 - ((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())

    def _delta(self, x_norm: Tensor, edits: Edits) -> Tensor:
        """dec(z') − dec(z) in normalised units (VAE, SAE, causal), or the generator's mean change (InfoGAN)."""
        if isinstance(self.head, _DECODING_HEADS):
            z = self._codes(x_norm)
            z2 = _apply_edits(z, edits, self.latent_dim)
            nearest = any(isinstance(e, tuple) and e[0] == "nearest" for e in edits.values())
            # an SAE's delta needs no decode of z (below) unless a 'nearest' edit compares candidates
            base = self.head.decode(z) if nearest or not isinstance(self.head, SAEHead) else None
            for i, e in edits.items():
                if isinstance(e, tuple) and e[0] == "nearest":
                    # per row, the candidate value whose decoded change is smallest: move the
                    # factor, disturb least of what else the latent holds
                    best_norm = torch.full((z.shape[0],), float("inf"), device=z.device)
                    best = z2[:, int(i)].clone()
                    for v in e[1]:
                        zc = z2.clone()
                        zc[:, int(i)] = float(v)
                        norm = (self.head.decode(zc) - base).norm(dim=1)
                        better = norm < best_norm
                        best = torch.where(better, torch.full_like(best, float(v)), best)
                        best_norm = torch.where(better, norm, best_norm)
                    z2[:, int(i)] = best
            if hasattr(self.head, "propagate_edits"):  # a causal head: edits are interventions
                z2 = self.head.propagate_edits(z, z2, [int(i) for i in edits])
            if isinstance(self.head, SAEHead):  # a linear decoder: Δf · W_dec exactly (b_dec cancels)
                return (z2 - z) @ self.head.feature_directions
            return self.head.decode(z2) - base
        return self._infogan_delta(x_norm, edits)

    def _infogan_delta(self, x_norm: Tensor, edits: Edits) -> Tensor:
        head: InfoGANHead = self.head
        codes = head.encode(x_norm)
        target = _apply_edits(codes, edits, self.latent_dim)
        n_cat = len(head.config.categorical)
        delta = torch.zeros_like(x_norm)
        means = self._infogan_code_means()
        for i in edits:
            i = int(i)
            if i < n_cat:
                k = head.config.categorical[i]
                cur = codes[:, i].long().clamp(0, k - 1)
                tgt = target[:, i].round().long().clamp(0, k - 1)
                delta += means[f"cat{i}"][tgt] - means[f"cat{i}"][cur]
            else:
                delta += (target[:, i] - codes[:, i])[:, None] * means[f"cont{i - n_cat}"][None]
        return delta

    @torch.no_grad()
    def _infogan_code_means(self, n: int = 2048) -> dict[str, Tensor]:
        """Mean generator output per categorical value, and mean slope per continuous code."""
        if getattr(self, "_code_means", None) is not None:
            return self._code_means
        head: InfoGANHead = self.head
        g = torch.Generator().manual_seed(0)
        noise, cat, cont = head.sample_codes(n, self._param_device(), generator=g)
        out: dict[str, Tensor] = {}
        for i, k in enumerate(head.config.categorical):
            rows = []
            for v in range(k):
                c = cat.clone()
                c[:, i] = v
                rows.append(head.generate(noise, c, cont).mean(0))
            out[f"cat{i}"] = torch.stack(rows)
        for j in range(head.config.continuous):
            lo, hi = cont.clone(), cont.clone()
            lo[:, j], hi[:, j] = -0.5, 0.5
            out[f"cont{j}"] = (head.generate(noise, cat, hi) - head.generate(noise, cat, lo)).mean(0)
        self._code_means = out
        return out

    @torch.no_grad()
    def directions(self, reference: Tensor | None = None) -> Tensor:
        """Per latent, the mean decoded change of the activation per unit of that latent: ``[k, d]``
        in activation units (central differences around the reference codes; for a categorical
        latent of a joint head, the change from its first value to its last)."""
        self._require_head()
        self.head.eval()
        k = self.latent_dim
        if isinstance(self.head, InfoGANHead):
            means = self._infogan_code_means()
            n_cat = len(self.head.config.categorical)
            rows = [means[f"cat{i}"][-1] - means[f"cat{i}"][0] for i in range(n_cat)]
            rows += [means[f"cont{j}"] for j in range(k - n_cat)]
            d = torch.stack(rows)
        elif isinstance(self.head, SAEHead):  # decode is linear: each feature's decoder row
            d = self.head.feature_directions.detach().clone()
        else:
            z = reference if reference is not None else self.reference_codes
            if z is None:
                z = torch.zeros(1, k)
            z = z.to(self._param_device())
            rows = []
            n_cat = len(self.head.config.categorical) if isinstance(self.head, JointVAEHead) else 0
            for i in range(k):
                if i < n_cat:  # a categorical latent: from its first value to its last
                    lo, hi = z.clone(), z.clone()
                    lo[:, i], hi[:, i] = 0, self.head.config.categorical[i] - 1
                    rows.append((self.head.decode(hi) - self.head.decode(lo)).mean(0))
                    continue
                e = torch.zeros(k, device=z.device)
                e[i] = 0.5
                rows.append((self.head.decode(z + e) - self.head.decode(z - e)).mean(0))
            d = torch.stack(rows)
        return self.normalizer.scale(d) if self.normalizer is not None else d

    @torch.no_grad()
    def traverse(self, activations: Tensor, latent: int, values: Tensor | Iterable[float]) -> Tensor:
        """Edited activations ``[len(values), N, d]``: each input with ``latent`` set to each value
        (a' = a + dec(z') − dec(z))."""
        values = torch.as_tensor(list(values) if not isinstance(values, Tensor) else values, dtype=torch.float32)
        return torch.stack([self.edit_vectors(activations, {latent: float(v)}) for v in values])

    @torch.no_grad()
    def edit_vectors(self, activations: Tensor, edits: Edits) -> Tensor:
        """a' = a + dec(z') − dec(z) for raw activation vectors ``[N, d]`` (dtype preserved)."""
        self._require_head()
        edits = check_edits(edits, self.latent_dim)
        if activations.ndim != 2 or activations.shape[1] != self.d_in:
            raise ValueError(
                f"the host gives vectors of width {activations.shape[-1]} at {self.hook!r}, but this probe reads "
                f"width {self.d_in} (shape {tuple(activations.shape)}); steer the host the probe was fitted on, or fit "
                "a probe on this one"
            )
        self.head.eval()
        a32 = activations.to(self._param_device()).float()
        delta = self._delta(self._norm(a32), edits)
        if self.normalizer is not None:
            delta = self.normalizer.scale(delta)
        return (a32 + delta).to(activations.dtype).to(activations.device)

    # ---------------------------------------------------------------- steering
    @contextlib.contextmanager
    def steer(
        self,
        model: nn.Module | None = None,
        edits: Edits | None = None,
        timesteps: tuple[float, float] | None = None,
    ) -> Iterator[Probe]:
        """Within the context every forward of the host (prompt and generated tokens alike,
        KV-cached steps included) has its activation at the hook edited by ``edits``
        (``{latent: value}`` sets, ``{latent: ("add", delta)}`` shifts). The hook is removed on
        any exit. ``model`` defaults to the host the probe is attached to.

        ``timesteps = (t_min, t_max)``, for a diffusion UNet (or a pipeline holding one): only
        UNet forwards at timesteps in that window are edited (every one when None);
        :func:`probe_disentangle.adapters.diffusers_unet.default_window` gives Asyrp's early,
        high-noise half of the schedule."""
        self._require_head()
        edits = check_edits(edits if edits is not None else {}, self.latent_dim)
        if not edits:
            raise ValueError("steer needs edits, e.g. {3: 2.0} or {3: ('add', 1.5)}")
        adapter = (
            self.adapter
            if model is None or model is self.adapter.model
            else attach(model, self.hook, **self.adapter_options)
        )
        if timesteps is None:
            context = adapter.edit(self.hook, lambda a: self.edit_vectors(a, edits))
        elif not hasattr(adapter, "current_timesteps"):
            raise ValueError(
                f"timesteps= limits edits to a window of a diffusion UNet's timesteps; this probe's host "
                f"({type(adapter.model).__name__}) has none: drop timesteps"
            )
        else:
            context = adapter.edit(self.hook, lambda a: self.edit_vectors(a, edits), window=timesteps)
        with context:
            yield self

    # ---------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | Path, local: bool = False) -> Path:
        """Write the head (config.json + safetensors), the probe's hook and normaliser, the
        directions as a plain safetensors steering-vector file usable without this package, and a
        ``README.md`` model card (:func:`~probe_disentangle.hub.model_card`: hook, host, head and
        config, :attr:`metrics`), so the folder is a Hugging Face hub repository as it stands
        (``hf upload org/name folder``). Loading never reads the card.

        All or nothing (:func:`io.atomic_folder`): a kill at any moment leaves the previous save
        or this one, whole. ``probe.json`` lists every file with its SHA-256 and what the probe
        holds (normaliser, reference codes); loading checks both, so parts of two saves never
        load together. In a data-parallel job rank 0 alone writes; the others wait until it has.
        ``local=True``: this process writes its own probe now, whatever the job (a probe that lives
        on one rank only, as :func:`~probe_disentangle.multi_hook.fit_probes` spreads them)."""
        self._require_head()
        metrics = hub.check_metrics(self.metrics)
        directory = Path(directory)
        if local:
            return self._write_pretrained(directory, metrics)
        dp = distributed.DataParallel.current()
        if dp is not None and not dp.is_main:
            distributed.barrier(dp)
            return directory
        out = self._write_pretrained(directory, metrics)
        distributed.barrier(dp)  # on success only: a failed write ends rank 0 with its error
        return out

    def _write_pretrained(self, directory: Path, metrics: dict[str, Any] | None) -> Path:
        tensors = {}
        if self.normalizer is not None:
            tensors["normalizer.mean"], tensors["normalizer.std"] = self.normalizer.mean, self.normalizer.std
        if self.reference_codes is not None:
            tensors["reference_codes"] = self.reference_codes
        d = self.directions()
        blobs = {
            DIRECTIONS_FILE: io.tensors_to_bytes(
                {"directions": d},
                metadata={"hook": self.hook, "layout": "[latent, d_model] activation units per unit latent"},
            )
        }
        if tensors:
            blobs[PROBE_TENSORS_FILE] = io.tensors_to_bytes(tensors)
        with io.atomic_folder(directory, PROBE_CONTENTS) as tmp:
            io.write_saved(self.head, tmp / HEAD_DIR)
            files = {HEAD_CONFIG: _file_entry((tmp / HEAD_CONFIG).read_bytes())}
            for name, data in blobs.items():
                io.atomic_write_bytes(tmp / name, data)
                files[name] = _file_entry(data)
            meta = {
                "probe_disentangle_version": __version__,
                "format": PROBE_FORMAT,
                "hook": self.hook,
                "adapter_family": self.adapter.family,
                "adapter_options": self.adapter_options,
                "architecture": self.architecture,
                "d_in": int(d.shape[1]),
                "latent_dim": int(d.shape[0]),
                "host": hub.host_description(self.adapter.model),
                "contents": {
                    "normalizer": self.normalizer is not None,
                    "reference_codes": self.reference_codes is not None,
                },
                "files": files,
            }
            if metrics is not None:
                meta["metrics"] = metrics
            io.atomic_write_json(tmp / PROBE_FILE, meta)
            card = hub.model_card(meta, registry.config_to_dict(self.head.config))
            io.atomic_write_bytes(tmp / README_FILE, card.encode())
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, model: nn.Module | Adapter, revision: str | None = None) -> Probe:
        """Rebuild a saved probe and attach it to ``model`` (the hook must exist there). Every
        file ``probe.json`` lists must be present and match its checksum.

        ``directory``: a folder :meth:`save_pretrained` wrote, or a Hugging Face hub id
        (``"org/name"``, at ``revision``: a branch, tag or commit, default main) that is already
        in the local hub cache (``HF_HUB_CACHE`` / ``HF_HOME``): nothing is downloaded, and an
        id not in the cache raises, saying how to download it."""
        directory = _resolve_probe_folder(directory, revision)
        meta = _read_probe_json(directory)
        files = meta["files"]
        for name, expected in files.items():
            if name != PROBE_TENSORS_FILE:  # read and checked below
                _check_file(directory / name, expected, directory / PROBE_FILE)
        head = io.load(directory / HEAD_DIR)
        tensors = {}
        if PROBE_TENSORS_FILE in files:
            tensors = io.load_tensors(directory / PROBE_TENSORS_FILE, files[PROBE_TENSORS_FILE])
        elif (directory / PROBE_TENSORS_FILE).exists():
            raise ValueError(
                f"{directory / PROBE_TENSORS_FILE} is not listed in {directory / PROBE_FILE}: the folder mixes two "
                "saves; save the probe again"
            )
        contents = meta.get("contents")
        if contents is not None:  # format 2: what the probe holds is stated, and required
            for key, names in (
                ("normalizer", ("normalizer.mean", "normalizer.std")),
                ("reference_codes", ("reference_codes",)),
            ):
                if contents.get(key) and not all(n in tensors for n in names):
                    raise ValueError(
                        f"{directory / PROBE_FILE} says the probe has its {key} but {PROBE_TENSORS_FILE} lacks it; "
                        "save the probe again"
                    )
        normalizer = (
            Normalizer(tensors["normalizer.mean"], tensors["normalizer.std"]) if "normalizer.mean" in tensors else None
        )
        probe = cls(model, meta["hook"], head=head, normalizer=normalizer, adapter_options=meta.get("adapter_options"))
        probe.reference_codes = tensors.get("reference_codes")
        if meta.get("metrics") is not None:
            probe.metrics = hub.check_metrics(meta["metrics"])
        return probe

    # ---------------------------------------------------------------- helpers
    def _require_head(self) -> None:
        if self.head is None:
            raise RuntimeError("the probe has no head yet; call fit(...) or pass head=")

    def _param_device(self) -> torch.device:
        return next(self.head.parameters()).device


PROBE_FORMAT = 2  # 2: probe.json states its contents and lists every file (head config included)
HEAD_CONFIG = f"{HEAD_DIR}/{CONFIG_FILE}"
PROBE_CONTENTS = frozenset({PROBE_FILE, PROBE_TENSORS_FILE, DIRECTIONS_FILE, HEAD_DIR, README_FILE})


def _resolve_probe_folder(directory: str | Path, revision: str | None) -> Path:
    """A local probe folder, or the cached snapshot of a hub id (:func:`hub.cached_snapshot`)."""
    if not isinstance(directory, (str, Path)):
        raise TypeError(f"pass a probe folder or a hub id 'org/name', got {type(directory).__name__}")
    local = io.resolve_folder(directory)
    if local.exists():
        if revision is not None:
            raise ValueError(
                f"revision={revision!r} picks a version of a hub id, but {directory} is a local folder; drop revision"
            )
        return local
    if isinstance(directory, str) and hub.is_repo_id(directory):
        return hub.cached_snapshot(directory, revision)
    if revision is not None:
        raise ValueError(
            f"revision={revision!r} is for a hub id 'org/name'; {directory!r} is neither that nor a folder"
        )
    return local


def _file_entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _check_file(path: Path, expected: Any, listed_in: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing (listed in {listed_in}); the folder is incomplete — save the probe again"
        )
    if isinstance(expected, dict) and "sha256" in expected and io.sha256_file(path) != expected["sha256"]:
        raise ValueError(
            f"{path} does not match its checksum in {listed_in}: the folder was altered or mixes two saves — "
            "save the probe again"
        )


def _read_probe_json(directory: Path) -> dict[str, Any]:
    """``probe.json``, checked: an object with a hook and a ``files`` map of what the folder holds."""
    path = directory / PROBE_FILE
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a folder; pass a folder written by Probe.save_pretrained()")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; pass a folder written by Probe.save_pretrained()")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); save the probe again") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must hold a JSON object, got a {type(meta).__name__}; save the probe again")
    if not isinstance(meta.get("hook"), str):
        raise ValueError(
            f"{path} has no 'hook' name; it was not written by Probe.save_pretrained() — save the probe again"
        )
    if not isinstance(meta.get("files"), dict):
        raise ValueError(
            f"{path} has no 'files' entry listing what the folder holds; without it a missing normaliser would go "
            "unnoticed — save the probe again"
        )
    if meta.get("adapter_options") is not None and not isinstance(meta["adapter_options"], dict):
        raise ValueError(f"{path}: 'adapter_options' must be a JSON object; save the probe again")
    return meta


def load_directions(path: str | Path) -> tuple[Tensor, dict[str, str]]:
    """The exported steering vectors ``[k, d]`` and their metadata (hook name), no package needed
    beyond safetensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return load_file(str(path))["directions"], meta


__all__ = ["Probe", "load_directions"]
