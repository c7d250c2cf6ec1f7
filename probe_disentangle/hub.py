"""The Hugging Face hub layout of a saved probe.

Two parts: :func:`model_card` is the ``README.md`` that :meth:`Probe.save_pretrained` writes
beside the probe's files (YAML front matter the hub reads, then what the probe is: hook, host,
head, measured metrics), so a probe folder can be pushed as is; loading never reads it.
:func:`cached_snapshot` finds a hub id that is already in the local cache
(``models--org--name/refs/<revision>`` → ``snapshots/<commit>/``) for
:meth:`Probe.from_pretrained`, offline: nothing here downloads. With ``huggingface_hub``
installed its own offline lookup (``snapshot_download(local_files_only=True)``) answers;
without it the cache layout is read directly.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

LIBRARY_NAME = "probe_disentangle"
CARD_TAGS = ("probe_disentangle", "interpretability", "disentanglement", "steering")
# "org/name" as the hub spells repository ids (each part: letters, digits, '-', '_', '.')
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def is_repo_id(name: str) -> bool:
    """Is ``name`` spelled like a hub repository id (``org/name``)?"""
    return isinstance(name, str) and bool(_REPO_ID.match(name)) and ".." not in name


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment when called: ``HF_HUB_CACHE``, else
    ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _not_cached(repo_id: str, revision: str | None, cache: Path, why: str) -> FileNotFoundError:
    at = f" at revision {revision!r}" if revision else ""
    rev = f" --revision {revision}" if revision else ""
    return FileNotFoundError(
        f"{repo_id!r} is not a local folder, and the Hugging Face cache at {cache} holds no snapshot of it{at} "
        f"({why}). probe_disentangle never downloads: fetch it first with `hf download {repo_id}{rev}` "
        f"(`huggingface-cli download {repo_id}{rev}` before huggingface_hub 1.0; in Python "
        f"huggingface_hub.snapshot_download({repo_id!r}{f', revision={revision!r}' if revision else ''})), then load "
        "again; set HF_HUB_CACHE or HF_HOME if the cache is elsewhere"
    )


def cached_snapshot(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder of ``repo_id`` at ``revision`` (a branch or tag under ``refs/``, or a commit
    hash; default ``main``) in the local hub cache (``cache_dir``, default :func:`hub_cache_dir`).
    Offline: a repository or revision not in the cache raises ``FileNotFoundError`` saying how
    to download it."""
    if not is_repo_id(repo_id):
        raise ValueError(f"{repo_id!r} is not a hub id; a hub id reads 'org/name'")
    if revision is not None and (not isinstance(revision, str) or not revision or ".." in revision):
        raise ValueError(f"revision must be a branch, tag or commit hash, got {revision!r}")
    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    try:
        from huggingface_hub import errors, snapshot_download
    except ImportError:
        return _read_layout(repo_id, revision, cache)
    names = ("LocalEntryNotFoundError", "EntryNotFoundError", "RevisionNotFoundError", "HFValidationError")
    missing = tuple(getattr(errors, n) for n in names if hasattr(errors, n)) + (OSError, ValueError)
    try:
        path = snapshot_download(repo_id, revision=revision, cache_dir=str(cache), local_files_only=True)
    except missing as err:
        raise _not_cached(repo_id, revision, cache, f"huggingface_hub: {type(err).__name__}") from err
    return Path(path)


def _read_layout(repo_id: str, revision: str | None, cache: Path) -> Path:
    """:func:`cached_snapshot` from the cache layout itself (no huggingface_hub)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    if not repo.is_dir():
        raise _not_cached(repo_id, revision, cache, f"no {repo.name} folder")
    rev = revision or "main"
    ref = repo / "refs" / rev
    if ref.is_file():
        commit = ref.read_text().strip()
    elif _COMMIT.match(rev):
        commit = rev
    else:
        raise _not_cached(repo_id, revision, cache, f"no refs/{rev}")
    snapshot = repo / "snapshots" / commit
    if not _COMMIT.match(commit) or not snapshot.is_dir():
        raise _not_cached(repo_id, revision, cache, f"no snapshots/{commit}")
    return snapshot


# ------------------------------------------------------------------ the model card


def host_description(model: nn.Module) -> dict[str, str | None]:
    """The host's name (a Hugging Face ``name_or_path``, a TransformerLens ``cfg.model_name``;
    None when it was built from a config) and class, for the card and ``probe.json``."""
    name = None
    for m in (model, getattr(model, "original_model", None), getattr(model, "unet", None)):
        if m is None:
            continue
        config = getattr(m, "config", None)
        for value in (
            getattr(config, "_name_or_path", None),
            getattr(m, "name_or_path", None),
            getattr(getattr(m, "cfg", None), "model_name", None),
        ):
            if isinstance(value, str) and value:
                name = value
                break
        if name:
            break
    return {"name": name, "class": f"{type(model).__module__}.{type(model).__qualname__}"}


def check_metrics(metrics: Any) -> dict[str, float | None] | None:
    """``metrics`` as ``{name: number}`` (what the card's table and ``probe.json`` hold). A NaN or
    infinite value (a score undefined on the data, e.g. an AUC on a split holding one class)
    becomes None, shown as "—"; anything that is not a number is refused, naming it."""
    if metrics is None:
        return None
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"metrics must be a mapping {{name: number}}, e.g. {{'mig': 0.41}}, got {type(metrics).__name__}"
        )
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"metric names must be non-empty strings, got {key!r}")
        if value is None:
            out[key] = None
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
            raise TypeError(f"metric {key!r} must be a number, got {value!r} ({type(value).__name__})")
        out[key] = float(value) if math.isfinite(float(value)) else None
    return out


def _yaml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a YAML scalar, quotes and escapes included


def model_card(meta: Mapping[str, Any], head_config: Mapping[str, Any]) -> str:
    """``README.md`` for a probe folder: front matter (``library_name``, ``tags``, ``base_model``
    when the host's name is a hub id ``org/name``), then the hook, the host, the head and its config, and
    the metrics ``meta`` records. ``meta``: what :meth:`Probe.save_pretrained` writes to
    ``probe.json``; ``head_config``: the head's config fields."""
    arch, hook = meta["architecture"], meta["hook"]
    host = meta.get("host") or {}
    name, cls = host.get("name"), host.get("class") or "unknown"
    tags = [*CARD_TAGS, arch]
    front = ["---", f"library_name: {LIBRARY_NAME}", "tags:", *[f"- {_yaml_str(t)}" for t in tags]]
    if isinstance(name, str) and is_repo_id(name) and not Path(name).exists():  # a hub id, not a local path
        front.append(f"base_model: {_yaml_str(name)}")
    front.append("---")
    host_line = f"`{name}` ({cls})" if name else f"a {cls} (built from a config; no hub name)"
    lines = [
        *front,
        "",
        f"# {arch} probe at `{hook}`",
        "",
        f"A probe_disentangle probe: a `{arch}` head reading the activations of "
        f"{host_line} at the hook `{hook}`. Its {meta['latent_dim']} latents encode those "
        f"{meta['d_in']}-wide activation vectors; steering sets or shifts latents and writes back "
        "a' = a + dec(z') − dec(z), keeping whatever the head does not reconstruct.",
        *(
            [
                "",
                f"The head is a SAELens SAE ({head_config.get('sae_architecture')}, {head_config.get('d_sae')} "
                "features) imported with `Probe.from_sae`: its latents are the SAE's feature activations and an "
                "edit of feature i moves the activation by Δf · W_dec[i]; `head.sae` exports back to a SAELens "
                "folder with `probe_disentangle.steering.sae.save_saelens`.",
            ]
            if arch == "sae_head"
            else []
        ),
        "",
        "| | |",
        "|---|---|",
        f"| hook | `{hook}` |",
        f"| host | {f'`{name}`' if name else '—'} |",
        f"| host class | `{cls}` |",
        f"| adapter | `{meta.get('adapter_family', '—')}` |",
        f"| head architecture | `{arch}` |",
        f"| latents | {meta['latent_dim']} |",
        f"| activation width | {meta['d_in']} |",
        f"| probe_disentangle | {meta.get('probe_disentangle_version', '—')} |",
        "",
        "## Head config",
        "",
        "```json",
        json.dumps(dict(head_config), indent=2, sort_keys=True),
        "```",
        "",
        "## Metrics",
        "",
    ]
    metrics = meta.get("metrics")
    if metrics:
        lines += [
            "| metric | value |",
            "|---|---|",
            *[f"| {k} | {'—' if v is None else f'{v:.4g}'} |" for k, v in sorted(metrics.items())],
        ]
    else:
        lines.append("None recorded (set `probe.metrics = {...}` before `save_pretrained` to list them here).")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from probe_disentangle import Probe",
        "",
        "# model: the host above, built or loaded as usual",
        'probe = Probe.from_pretrained("ORG/NAME", model)  # a local folder, or a hub id already downloaded',
        "with probe.steer(model, {0: 2.0}):  # latent 0 set to 2.0 at every forward",
        "    ...",
        "```",
        "",
        "`from_pretrained` reads `probe.json`, `head/config.json` and the safetensors files (checksums "
        "checked, nothing unpickled); this card is for people and is never read. `directions.safetensors` "
        "holds one steering vector per latent `[latent, d]` for tools without this package.",
        "",
    ]
    return "\n".join(lines)
