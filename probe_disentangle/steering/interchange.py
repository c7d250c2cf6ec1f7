"""Interchange interventions scored by Cause, Isolate and Disentangle (RAVEL: Huang et al., ACL
2024, "RAVEL: Evaluating Interpretability Methods on Disentangling Language Model Representations").

An *interchanger* is ``interchanger(factor, source_tokens [n, T]) -> context manager``: inside it,
every forward of the host on a batch of ``n`` rows has the factor's features at the hook replaced
by the features that paired source input has (row i of the batch with row i of the sources), and
everything else the method does not assign to that factor left as the base has it. The source's
features are read once, where the method reads (the span of a span adapter, else a given token
position); the base's are replaced in every forward, at every vector the adapter edits.

:func:`evaluate_interchange` pairs each base with a source and scores, per factor:

- **Cause**: the fraction of pairs whose intervened output has the *source's* value of the factor,
- **Isolate**: the fraction whose output keeps the *base's* value of every other factor,
- **Disentangle** = (Cause + Isolate) / 2, and the parse rate of the intervened outputs.

An output that does not parse counts as a failure for both Cause and Isolate. Bases are the
host's own seeded generations (as :func:`~.evaluate.evaluate_steering` samples them); only bases
that parse are paired, as RAVEL keeps only the prompts a model gets right (their values must be
known to score against). The intervened run uses the same sampling seed and batch, so without an
intervention it reproduces the base exactly (Cause 0, Isolate 1). Sources are rendered from
factor rows drawn uniformly at random — the other factors of a source are random, as a random
other entity is in RAVEL, so Isolate tests that they do not leak — with the intervened factor
redrawn among the values that differ from the base's: a source with the base's value would score
Cause by doing nothing (SAEBench's RAVEL port re-draws a source until its attribute differs too).

Interchangers here: a probe's latents (:func:`probe_interchanger`), PCA directions
(:func:`pca_interchanger`), difference of means (:func:`diff_means_interchanger`, supervised
reference), and any linear subspace per factor (:func:`subspace_interchanger`: an SAE's decoder
rows, a DAS rotation, coordinate blocks for an oracle).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..adapters import Adapter
from .baselines import align, principal_directions
from .evaluate import parse_all, sample_tokens, sequence_vectors

Interchanger = Callable[[int, Any], contextlib.AbstractContextManager]
Reader = Callable[[Tensor], Tensor]

DEFAULT_PAIRS = 100  # base/source pairs per factor
MAX_BASE_ROUNDS = 10  # generation rounds to find enough parsable bases before giving up


# ------------------------------------------------------------------ reading and replacing features


def vector_reader(adapter: Adapter, hook: str, position: int | None = None, batch: int = 512) -> Reader:
    """Source tokens ``[n, T]`` → the vectors ``[n, d]`` a method reads: the span of a span adapter
    (``position=None``), else the activation at token column ``position`` of every source."""
    span = getattr(adapter, "span", None)
    if span is not None and position is not None:
        raise ValueError(f"this adapter reads its span {tuple(span)} as one vector; drop the position")
    if span is None and position is None:
        raise ValueError(
            "this adapter reads one vector per token: pass position= (the token column where the source's "
            "factors are known, e.g. a planned world's colon) or a reader of your own"
        )

    def read(tokens: Tensor) -> Tensor:
        tokens = torch.as_tensor(tokens)
        pos = None if position is None else torch.full((len(tokens),), int(position))
        return sequence_vectors(adapter, hook, tokens, pos, batch=batch)

    return read


@dataclass
class FeatureInterchanger:
    """An interchanger from three parts: ``read`` (source tokens → vectors ``[n, d]``),
    ``featurize(vectors, factor)`` (→ the source's features, once per context) and
    ``swap(vectors, features, factor)`` (base vectors ``[N, d]`` and their rows' source features
    → edited vectors). Every forward inside the context must have ``n`` rows, one per source;
    a row's vectors (one, a span, or one per token) all take that row's source features."""

    adapter: Adapter
    hook: str
    read: Reader
    featurize: Callable[[Tensor, int], Tensor]
    swap: Callable[[Tensor, Tensor, int], Tensor]
    num_factors: int

    @contextlib.contextmanager
    def __call__(self, factor: int, sources) -> Iterator[None]:
        if not 0 <= int(factor) < self.num_factors:
            raise ValueError(f"factor {factor} out of range: this interchanger knows factors 0..{self.num_factors - 1}")
        sources = torch.as_tensor(sources)
        if sources.ndim < 1 or len(sources) == 0:
            raise ValueError("interchange needs at least one source input (a batch [n, ...])")
        feats = self.featurize(self.read(sources), int(factor))
        n = len(sources)

        def fn(act: Tensor) -> Tensor:
            if act.shape[0] != n:
                raise ValueError(
                    f"the host ran a batch of {act.shape[0]} rows inside an interchange with {n} sources; "
                    "run the base inputs as one batch with row i paired with source i"
                )

            def edit(vecs: Tensor) -> Tensor:  # (n·k, d): k vectors per row, row-major
                k = vecs.shape[0] // n
                return self.swap(vecs, feats.to(vecs.device).repeat_interleave(k, 0), int(factor))

            return self.adapter.edit_tensor(act, edit)

        with self.adapter.hook(self.hook, fn):
            yield


def _projector(basis: Tensor) -> Tensor:
    """Orthogonal projector ``[d, d]`` onto the row space of ``basis [k, d]`` (any rows, not
    necessarily orthonormal)."""
    b = basis.double()
    return (torch.linalg.pinv(b) @ b).float()


def subspace_interchanger(
    adapter: Adapter, hook: str, bases: Mapping[int, Tensor] | Sequence[Tensor], read: Reader | None = None
) -> FeatureInterchanger:
    """Interchange in a linear subspace per factor: ``bases[f]`` ``[k, d]`` spans factor f's
    features (a DAS rotation's rows, an SAE's decoder rows, a PCA direction). The base's
    component in that subspace is replaced by the source's, the rest kept:
    a' = a + P_f (s − a), P_f the orthogonal projector onto the rows' span."""
    items = bases.items() if isinstance(bases, Mapping) else enumerate(bases)
    proj: dict[int, Tensor] = {}
    for f, b in items:
        b = torch.as_tensor(b)
        if b.ndim != 2 or b.shape[0] == 0:
            raise ValueError(f"the basis of factor {f} must be [k, d] with k ≥ 1, got {tuple(b.shape)}")
        proj[int(f)] = _projector(b)
    if sorted(proj) != list(range(len(proj))):
        raise ValueError(f"bases must cover factors 0..{len(proj) - 1}, got {sorted(proj)}")
    read = read if read is not None else vector_reader(adapter, hook)

    def swap(a: Tensor, s: Tensor, f: int) -> Tensor:
        p = proj[f].to(a.device)
        if a.shape[1] != p.shape[0]:
            raise ValueError(f"the host's vectors are {a.shape[1]}-dim; the basis of factor {f} is {p.shape[0]}-dim")
        return (a.float() + (s.float() - a.float()) @ p).to(a.dtype)

    return FeatureInterchanger(adapter, hook, read, lambda v, f: v, swap, len(proj))


def probe_interchanger(
    probe,
    acts: Tensor,
    factors: np.ndarray,
    read: Reader | None = None,
    latents: Mapping[int, Sequence[int]] | None = None,
) -> tuple[FeatureInterchanger, dict[int, list[int]]]:
    """A probe's latents: factor f's latents (by default the one with the highest mutual
    information with f on ``acts``, as :func:`~.baselines.probe_steerer` aligns them) take the
    source's codes; a' = a + dec(z') − dec(z), so what the head does not reconstruct is kept.
    Returns the interchanger and the latents per factor."""
    F = factors.shape[1]
    if latents is None:
        codes = probe.encode(acts).cpu().numpy()
        latents = {f: [i] for f, i in enumerate(align(codes, factors))}
    latents = {int(f): [int(i) for i in v] for f, v in latents.items()}
    if sorted(latents) != list(range(F)) or not all(latents.values()):
        raise ValueError(f"latents must give at least one latent for each factor 0..{F - 1}, got {latents}")
    read = read if read is not None else vector_reader(probe.adapter, probe.hook)

    def swap(a: Tensor, codes: Tensor, f: int) -> Tensor:
        return probe.edit_vectors(a, {i: codes[:, i] for i in latents[f]})

    inter = FeatureInterchanger(probe.adapter, probe.hook, read, lambda v, f: probe.encode(v), swap, F)
    return inter, latents


def pca_interchanger(
    adapter: Adapter, hook: str, acts: Tensor, factors: np.ndarray, k: int, read: Reader | None = None
) -> tuple[FeatureInterchanger, list[int]]:
    """The top-``k`` principal directions of ``acts``, each factor aligned to one by mutual
    information (as :func:`~.baselines.pca_steerer`); the source's projection onto it replaces the
    base's. Returns the interchanger and the direction per factor."""
    pcs = principal_directions(acts, k)  # (k, d)
    codes = ((acts - acts.mean(0)) @ pcs.T).numpy()
    alignment = align(codes, factors)
    return subspace_interchanger(adapter, hook, [pcs[i : i + 1] for i in alignment], read), alignment


def diff_means_interchanger(
    adapter: Adapter, hook: str, acts: Tensor, factors: np.ndarray, sizes: Sequence[int], read: Reader | None = None
) -> FeatureInterchanger:
    """Difference of means (the supervised reference): with μ_{f,v} the mean of ``acts`` over the
    rows whose factor f has value v, a' = a − μ_{f,base value} + μ_{f,source value}. A vector's
    value is its nearest class mean within the span of the centred class means of f (the subspace
    the labels say f moves; other factors' variance outside it cannot sway the choice); the class
    means come from labels, the base's and source's values from their own activations."""
    acts = acts.float()
    if len(acts) != len(factors):
        raise ValueError(f"acts has {len(acts)} rows but factors {len(factors)}; pass one factor row per vector")
    means, projs = [], []
    for f, size in enumerate(sizes):
        rows = [acts[torch.as_tensor(factors[:, f] == v)] for v in range(size)]
        if any(len(r) == 0 for r in rows):
            missing = [v for v, r in enumerate(rows) if len(r) == 0]
            raise ValueError(f"factor {f} has no rows with value(s) {missing} in acts; pass more labelled vectors")
        mu = torch.stack([r.mean(0) for r in rows])  # (V, d)
        means.append(mu)
        projs.append(_projector(mu - mu.mean(0)))
    read = read if read is not None else vector_reader(adapter, hook)

    def classify(v: Tensor, f: int) -> Tensor:
        mu, p = means[f].to(v.device), projs[f].to(v.device)
        return torch.cdist(v.float() @ p, mu @ p).argmin(1)

    def swap(a: Tensor, src_value: Tensor, f: int) -> Tensor:
        mu = means[f].to(a.device)
        return (a.float() - mu[classify(a, f)] + mu[src_value]).to(a.dtype)

    return FeatureInterchanger(adapter, hook, read, classify, swap, len(sizes))


# ------------------------------------------------------------------ pairs and scores


def sample_sources(world, base_factors: np.ndarray, factor: int, seed: int) -> np.ndarray:
    """Source factor rows ``[n, F]`` for bases ``[n, F]``: every factor uniform at random, except
    ``factor``, drawn uniformly among the values that differ from the base's (a base value of −1,
    unknown, allows any). Seeded by ``(seed, factor)``."""
    sizes = world.factor_sizes
    if not 0 <= factor < len(sizes):
        raise ValueError(f"factor {factor} out of range: the world has factors 0..{len(sizes) - 1}")
    if sizes[factor] < 2:
        raise ValueError(f"factor {world.factor_names[factor]!r} has one value: no source can differ from the base")
    base = np.asarray(base_factors)
    rng = np.random.default_rng([seed, factor])
    src = world.sample_factors(len(base), rng)
    shift = rng.integers(1, sizes[factor], len(base))  # 1..V-1 away from the base: never the base's value
    known = base[:, factor] >= 0
    src[known, factor] = (base[known, factor] + shift[known]) % sizes[factor]
    return src


def interchange_scores(
    names: Sequence[str], factor: int, bases: Sequence[dict], sources: np.ndarray, outputs: Sequence[dict | None]
) -> dict[str, float]:
    """Cause, Isolate, Disentangle and parse rate of one factor's pairs: ``bases`` (parsed base
    outputs), ``sources`` (source factor rows ``[n, F]``), ``outputs`` (parsed intervened outputs,
    None where they did not parse: a failure for both scores)."""
    n = len(bases)
    if not n or len(sources) != n or len(outputs) != n:
        raise ValueError(
            f"need as many bases, sources and outputs, at least one; got {n}, {len(sources)}, {len(outputs)}"
        )
    name = names[factor]
    others = [nm for j, nm in enumerate(names) if j != factor]
    cause = [o is not None and o[name] == int(s[factor]) for o, s in zip(outputs, sources, strict=True)]
    isolate = [o is not None and all(o[nm] == b[nm] for nm in others) for o, b in zip(outputs, bases, strict=True)]
    c, i = float(np.mean(cause)), float(np.mean(isolate))
    return {
        "cause": c,
        "isolate": i,
        "disentangle": (c + i) / 2,
        "parse_rate": float(np.mean([o is not None for o in outputs])),
        "pairs": n,
    }


@dataclass
class BaseRound:
    """One batch of seeded base generations (see :func:`base_generations`)."""

    seed: int
    tokens: np.ndarray  # (m, T) base generations
    keep: np.ndarray  # indices of the parsed bases this round contributes
    factors: np.ndarray  # (m, F) parsed base values, -1 where the base did not parse
    parsed: int  # how many of the m bases parse


def base_generations(model, world, n: int = DEFAULT_PAIRS, seed: int = 1234, batch: int = 256) -> list[BaseRound]:
    """The host's seeded base generations, in rounds of ≤ ``batch`` rows (one generation batch
    each) until ``n`` of them parse; the first ``n`` that parse are the bases. Compute them once
    and pass them to :func:`evaluate_interchange` to score several methods on the same bases."""
    if n < 1:
        raise ValueError(f"n must be ≥ 1 pairs per factor, got {n}")
    tok, names = world.tokenizer, world.factor_names
    rounds, have, total = [], 0, 0
    while have < n:
        if len(rounds) == MAX_BASE_ROUNDS:
            raise ValueError(
                f"only {have} of {total} base generations parse; the host must write the world's language "
                f"(check the host, or lower n from {n})"
            )
        m = min(batch, n - have + max(2, (n - have) // 50))  # a margin for the few that do not parse
        s = seed + 7919 * len(rounds)
        toks = sample_tokens(model, m, tok.bos_id, tok.eos_id, tok.pad_id, world.max_length, s, batch=m)
        parsed = parse_all(world, toks)
        fac = np.array([[p[nm] for nm in names] if p is not None else [-1] * len(names) for p in parsed])
        keep = np.array([r for r, p in enumerate(parsed) if p is not None][: n - have], dtype=int)
        rounds.append(BaseRound(s, toks, keep, fac.reshape(m, len(names)), int((fac[:, 0] >= 0).sum())))
        have, total = have + len(keep), total + m
    return rounds


def evaluate_interchange(
    model,
    world,
    interchanger: Interchanger,
    factors: Sequence[int] | None = None,
    n: int = DEFAULT_PAIRS,
    seed: int = 1234,
    batch: int = 256,
    bases: Sequence[BaseRound] | None = None,
) -> dict[str, Any]:
    """Cause, Isolate, Disentangle and parse rate per factor (``n`` base/source pairs each) and
    their means over the factors: ``{"per_factor": {name: {...}}, "mean": {...}, "pairs": n,
    "base_parse_rate": ...}``. The same bases serve every factor and, for a given ``seed``, every
    method (``bases``: from :func:`base_generations`, instead of ``n``, ``seed`` and ``batch``);
    ``batch`` bounds the rows generated at once (one interchange context per batch)."""
    names = world.factor_names
    factors = list(range(len(names))) if factors is None else [int(f) for f in factors]
    if not factors or any(not 0 <= f < len(names) for f in factors):
        raise ValueError(f"factors must be indices into the world's factors 0..{len(names) - 1}, got {factors}")
    if bases is None:
        rounds = base_generations(model, world, n, seed, batch)
    else:
        rounds, n = list(bases), sum(len(r.keep) for r in bases)
        if not n:
            raise ValueError("bases holds no parsed base generation; make them with base_generations(model, world, n)")
    tok = world.tokenizer
    per_factor: dict[str, dict[str, float]] = {}
    for f in factors:
        bases, sources, outputs = [], [], []
        for r in rounds:
            src = sample_sources(world, r.factors, f, r.seed)
            with interchanger(f, world.render(src)):
                out = sample_tokens(
                    model,
                    len(r.tokens),
                    tok.bos_id,
                    tok.eos_id,
                    tok.pad_id,
                    world.max_length,
                    r.seed,
                    batch=len(r.tokens),
                )
            parsed = parse_all(world, out[r.keep])
            bases += [dict(zip(names, map(int, r.factors[i]), strict=True)) for i in r.keep]
            sources.append(src[r.keep])
            outputs += parsed
        per_factor[names[f]] = interchange_scores(names, f, bases, np.concatenate(sources), outputs)
    keys = ("cause", "isolate", "disentangle", "parse_rate")
    return {
        "per_factor": per_factor,
        "mean": {k: float(np.mean([r[k] for r in per_factor.values()])) for k in keys},
        "pairs": n,
        "base_parse_rate": sum(r.parsed for r in rounds) / sum(len(r.tokens) for r in rounds),
    }
