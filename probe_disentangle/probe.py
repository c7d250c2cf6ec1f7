"""Probe = adapter + hook + normaliser + head: fit on a host's activations, read its latents,
extract directions, traverse, and steer the host by editing latents.

Steering keeps whatever the head does not reconstruct: with z = enc(a) and z' = z with the
chosen latents set or shifted, the activation becomes a' = a + dec(z') − dec(z) (in activation
units), so an edit of nothing is the identity and the head's reconstruction error is never
written into the host.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from . import __version__, io, registry
from .adapters import Adapter, attach
from .constants import DIRECTIONS_FILE, HEAD_DIR, PROBE_FILE, PROBE_TENSORS_FILE
from .heads import InfoGANHead, JointVAEHead, VAEHead
from .store import ActivationStore, Normalizer
from .train import TrainConfig, Trainer, TrainResult

ISA_MAX_VALUES = 8  # init="isa" on a Gaussian head: at most this many clusters per latent
REFERENCE_VECTORS = 4096  # vectors whose codes are kept as the probe's reference (traversal and steering ranges)

log = logging.getLogger(__name__)

Edit = float | tuple[str, float] | Tensor
Edits = Mapping[int, Edit]


def _apply_edits(z: Tensor, edits: Edits, k: int) -> Tensor:
    """z' = z with latents set (``{i: v}``; a tensor ``[N]`` sets one value per row, e.g. the codes
    of paired source inputs in an interchange intervention) or shifted (``{i: ("add", d)}``);
    ``("nearest", values)`` edits are left for :meth:`Probe._delta`, which needs the decoder to choose."""
    z2 = z.clone()
    for i, e in edits.items():
        if not 0 <= int(i) < k:
            raise ValueError(f"latent index {i} out of range: the head has {k} latents (0..{k - 1})")
        if isinstance(e, Tensor):
            if e.shape != (z.shape[0],):
                raise ValueError(
                    f"per-row edit for latent {i} has shape {tuple(e.shape)}; it needs one value per vector, "
                    f"[{z.shape[0]}]"
                )
            z2[:, i] = e.to(z2)
        elif isinstance(e, tuple):
            if len(e) != 2 or e[0] not in ("add", "set", "nearest"):
                raise ValueError(
                    f"edit {e!r} for latent {i}: use a value, ('set', v), ('add', delta) or ('nearest', [v1, v2, ...])"
                )
            if e[0] == "nearest":
                if not len(e[1]):
                    raise ValueError(f"edit {e!r} for latent {i}: 'nearest' needs at least one candidate value")
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
    ) -> TrainResult:
        """Stream activations at the hook over ``data`` (host input batches) and train the head.

        ``init="isa"`` starts from the codes independent subspace analysis finds in the first
        ``init_vectors`` vectors (:mod:`probe_disentangle.isa`): one latent per independent
        subspace, its values the clusters inside it (a categorical latent takes them as its
        categories, a Gaussian one as evenly spaced means), learnt in ``init_steps`` steps (None:
        the head's ``initialize_from_codes`` default). For a joint VAE head start the
        capacity at its maximum then (``c_steps=1``), or training first blurs the codes."""
        if init not in (None, "isa"):
            raise ValueError(f"unknown init {init!r}; use None (random) or 'isa'")
        if init_steps is not None and init_steps < 1:
            raise ValueError(f"init_steps must be ≥ 1 (or None for the head's default), got {init_steps}")
        train = train or TrainConfig()
        store = ActivationStore(
            self.adapter,
            self.hook,
            data,
            batch_size=train.batch_size,
            buffer_size=buffer_size,
            device=device or "cpu",
            seed=train.seed,
            cache_dir=cache_dir,
        )
        if normalize:
            self.normalizer = store.estimate_normalizer(normalizer_vectors)
        store.normalizer = self.normalizer
        # read before training, from the same pass the trainer then carries on: the host runs once
        reference = store.collect(max_vectors=REFERENCE_VECTORS)
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
        if init == "isa":
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
            codes, _ = isa_codes(x, sizes, seed=train.seed)
            steps = {} if init_steps is None else {"steps": init_steps}
            self.init_report = self.head.initialize_from_codes(x, codes, seed=train.seed, **steps)
        result = Trainer(self.head, train).fit(store)
        self.reference_codes = self._codes(reference.to(self._param_device()))
        return result

    # ---------------------------------------------------------------- latents
    @property
    def latent_dim(self) -> int:
        if isinstance(self.head, VAEHead):
            return self.head.config.latent_dim
        if isinstance(self.head, (InfoGANHead, JointVAEHead)):
            return len(self.head.config.categorical) + self.head.config.continuous
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
            if isinstance(self.head, VAEHead):
                return self.head.encode(x_norm)[0]
            return self.head.encode(x_norm)

    @torch.no_grad()
    def encode(self, activations: Tensor) -> Tensor:
        """Latent codes ``[N, k]`` of raw activation vectors (posterior means; Q's codes for InfoGAN)."""
        self._require_head()
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
        if not isinstance(self.head, (VAEHead, JointVAEHead)):
            raise TypeError(
                "decode needs a VAE head; an InfoGAN head generates from noise and codes (use directions())"
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
        """dec(z') − dec(z) in normalised units (VAE), or the generator's mean change (InfoGAN)."""
        if isinstance(self.head, (VAEHead, JointVAEHead)):
            z = self._codes(x_norm)
            z2 = _apply_edits(z, edits, self.latent_dim)
            base = self.head.decode(z)
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
        self.head.eval()
        a32 = activations.to(self._param_device()).float()
        delta = self._delta(self._norm(a32), edits)
        if self.normalizer is not None:
            delta = self.normalizer.scale(delta)
        return (a32 + delta).to(activations.dtype).to(activations.device)

    # ---------------------------------------------------------------- steering
    @contextlib.contextmanager
    def steer(self, model: nn.Module | None = None, edits: Edits | None = None) -> Iterator[Probe]:
        """Within the context every forward of the host (prompt and generated tokens alike,
        KV-cached steps included) has its activation at the hook edited by ``edits``
        (``{latent: value}`` sets, ``{latent: ("add", delta)}`` shifts). The hook is removed on
        any exit. ``model`` defaults to the host the probe is attached to."""
        if not edits:
            raise ValueError("steer needs edits, e.g. {3: 2.0} or {3: ('add', 1.5)}")
        self._require_head()
        k = self.latent_dim
        for i in edits:
            if not 0 <= int(i) < k:
                raise ValueError(f"latent index {i} out of range: the head has {k} latents (0..{k - 1})")
        adapter = (
            self.adapter
            if model is None or model is self.adapter.model
            else attach(model, self.hook, **self.adapter_options)
        )
        with adapter.edit(self.hook, lambda a: self.edit_vectors(a, edits)):
            yield self

    # ---------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the head (config.json + safetensors), the probe's hook and normaliser, and the
        directions as a plain safetensors steering-vector file usable without this package."""
        self._require_head()
        directory = Path(directory)
        io.save(self.head, directory / HEAD_DIR)
        tensors = {}
        if self.normalizer is not None:
            tensors["normalizer.mean"], tensors["normalizer.std"] = self.normalizer.mean, self.normalizer.std
        if self.reference_codes is not None:
            tensors["reference_codes"] = self.reference_codes
        data = io.tensors_to_bytes(tensors) if tensors else None
        if data is not None:
            io.atomic_write_bytes(directory / PROBE_TENSORS_FILE, data)
        d = self.directions()
        io.atomic_write_bytes(
            directory / DIRECTIONS_FILE,
            io.tensors_to_bytes(
                {"directions": d},
                metadata={"hook": self.hook, "layout": "[latent, d_model] activation units per unit latent"},
            ),
        )
        import hashlib

        meta = {
            "probe_disentangle_version": __version__,
            "hook": self.hook,
            "adapter_family": self.adapter.family,
            "adapter_options": self.adapter_options,
            "architecture": self.architecture,
            "d_in": int(d.shape[1]),
            "latent_dim": int(d.shape[0]),
            "files": {PROBE_TENSORS_FILE: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}}
            if data is not None
            else {},
        }
        io.atomic_write_json(directory / PROBE_FILE, meta)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, model: nn.Module | Adapter) -> Probe:
        """Rebuild a saved probe and attach it to ``model`` (the hook must exist there)."""
        directory = Path(directory)
        path = directory / PROBE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; pass a folder written by Probe.save_pretrained()")
        try:
            meta = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); save the probe again") from err
        head = io.load(directory / HEAD_DIR)
        tensors = {}
        if PROBE_TENSORS_FILE in meta.get("files", {}):
            tensors = io.load_tensors(directory / PROBE_TENSORS_FILE, meta["files"][PROBE_TENSORS_FILE])
        normalizer = (
            Normalizer(tensors["normalizer.mean"], tensors["normalizer.std"]) if "normalizer.mean" in tensors else None
        )
        probe = cls(model, meta["hook"], head=head, normalizer=normalizer, adapter_options=meta.get("adapter_options"))
        probe.reference_codes = tensors.get("reference_codes")
        return probe

    # ---------------------------------------------------------------- helpers
    def _require_head(self) -> None:
        if self.head is None:
            raise RuntimeError("the probe has no head yet; call fit(...) or pass head=")

    def _param_device(self) -> torch.device:
        return next(self.head.parameters()).device


def load_directions(path: str | Path) -> tuple[Tensor, dict[str, str]]:
    """The exported steering vectors ``[k, d]`` and their metadata (hook name), no package needed
    beyond safetensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return load_file(str(path))["directions"], meta


__all__ = ["Probe", "load_directions"]
