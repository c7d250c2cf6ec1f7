"""Malformed inputs, as a hostile user would give them: each gets a clear error — the expected
type, with a message that names the file or the argument — never a raw error from inside torch,
json or Python, and never a silent wrong result. One parametrised test per family: files,
configs, data, edits, caches."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from probe_disentangle import Probe, TrainConfig, Trainer, io
from probe_disentangle.adapters import attach
from probe_disentangle.constants import CONFIG_FILE, PROBE_FILE, PROBE_TENSORS_FILE, WEIGHTS_FILE
from probe_disentangle.heads import JointVAEHeadConfig, VAEHead, VAEHeadConfig
from probe_disentangle.store import CACHE_MANIFEST, ActivationStore

HOOK = "blocks.1.hook_resid_post"
D = 32  # tiny_bridge's d_model


@pytest.fixture(scope="module")
def probe(tiny_bridge):
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 20, (8, 10), generator=g) for _ in range(8)]
    p = Probe(tiny_bridge, HOOK, head_config=dict(latent_dim=4, hidden=16))
    p.fit(batches, TrainConfig(steps=10, batch_size=32, progress=False), buffer_size=256)
    return p


@pytest.fixture(scope="module")
def joint_probe(tiny_bridge):
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, 20, (8, 10), generator=g) for _ in range(8)]
    p = Probe(
        tiny_bridge, HOOK, architecture="joint_vae_head", head_config=dict(categorical=[3], continuous=1, hidden=16)
    )
    p.fit(batches, TrainConfig(steps=5, batch_size=32, progress=False), buffer_size=256)
    return p


def _head() -> VAEHead:
    torch.manual_seed(0)
    return VAEHead(VAEHeadConfig(d_in=6, latent_dim=2, hidden=8, objective="beta_vae"))


def _edit_json(path: Path, change) -> None:
    meta = json.loads(path.read_text())
    meta = change(meta)
    path.write_text(json.dumps(meta))


def _check(run, exc, pattern):
    with pytest.raises(exc) as info:
        run()
    assert re.search(pattern, str(info.value)), f"the message does not name the problem: {info.value}"


# ------------------------------------------------------------------ files
def _probe_without_files_entry(tmp, probe, host):
    probe.save_pretrained(tmp / "p")
    _edit_json(tmp / "p" / PROBE_FILE, lambda m: {k: v for k, v in m.items() if k != "files"})
    (tmp / "p" / PROBE_TENSORS_FILE).unlink()
    Probe.from_pretrained(tmp / "p", host)


def _probe_without_tensors_file(tmp, probe, host):
    probe.save_pretrained(tmp / "p")
    (tmp / "p" / PROBE_TENSORS_FILE).unlink()
    Probe.from_pretrained(tmp / "p", host)


def _probe_with_unlisted_tensors(tmp, probe, host):
    probe.save_pretrained(tmp / "p")

    def drop(m):
        del m["files"][PROBE_TENSORS_FILE]
        m["contents"] = {"normalizer": False, "reference_codes": False}
        return m

    _edit_json(tmp / "p" / PROBE_FILE, drop)
    Probe.from_pretrained(tmp / "p", host)


def _probe_head_from_another_save(tmp, probe, host):
    probe.save_pretrained(tmp / "p")
    io.save(VAEHead(VAEHeadConfig(d_in=D, latent_dim=4, hidden=16)), tmp / "other")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        (tmp / "p" / "head" / name).write_bytes((tmp / "other" / name).read_bytes())
    Probe.from_pretrained(tmp / "p", host)


def _probe_json_a_list(tmp, probe, host):
    probe.save_pretrained(tmp / "p")
    (tmp / "p" / PROBE_FILE).write_text("[1, 2]")
    Probe.from_pretrained(tmp / "p", host)


def _probe_json_broken(tmp, probe, host):
    probe.save_pretrained(tmp / "p")
    (tmp / "p" / PROBE_FILE).write_text('{"hook": ')
    Probe.from_pretrained(tmp / "p", host)


def _architecture_not_a_string(tmp, probe, host):
    io.save(_head(), tmp / "m")
    _edit_json(tmp / "m" / CONFIG_FILE, lambda m: {**m, "architecture": ["vae_head"]})
    io.load(tmp / "m")


def _config_not_an_object(tmp, probe, host):
    io.save(_head(), tmp / "m")
    _edit_json(tmp / "m" / CONFIG_FILE, lambda m: {**m, "config": [6, 2]})
    io.load(tmp / "m")


def _config_field_wrong_type(tmp, probe, host):
    io.save(_head(), tmp / "m")
    _edit_json(tmp / "m" / CONFIG_FILE, lambda m: {**m, "config": {**m["config"], "latent_dim": 2.5}})
    io.load(tmp / "m")


def _load_on_missing_cuda(tmp, probe, host):
    io.save(_head(), tmp / "m")
    io.load(tmp / "m", device="cuda:7" if torch.cuda.is_available() else "cuda")


FILES = {
    "probe.json without 'files', tensors gone": (_probe_without_files_entry, ValueError, r"probe\.json.*'files'"),
    "probe.safetensors gone": (_probe_without_tensors_file, FileNotFoundError, r"probe\.safetensors"),
    "probe.safetensors not listed": (_probe_with_unlisted_tensors, ValueError, r"probe\.safetensors.*not listed"),
    "head from another save": (_probe_head_from_another_save, ValueError, r"head/config\.json.*checksum"),
    "probe.json a list": (_probe_json_a_list, ValueError, r"probe\.json.*JSON object"),
    "probe.json truncated": (_probe_json_broken, ValueError, r"probe\.json is not valid JSON"),
    "architecture a list": (_architecture_not_a_string, ValueError, r"config\.json.*'architecture'"),
    "config a list": (_config_not_an_object, ValueError, r"config\.json.*'config'"),
    "latent_dim a float in the file": (_config_field_wrong_type, ValueError, r"latent_dim must be int"),
    "load on a missing CUDA device": (_load_on_missing_cuda, ValueError, r"cuda.*(no CUDA|visible)"),
}


@pytest.mark.parametrize("case", sorted(FILES))
def test_files(case, tmp_path, probe, tiny_bridge):
    run, exc, pattern = FILES[case]
    if case == "load on a missing CUDA device" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    _check(lambda: run(tmp_path, probe, tiny_bridge), exc, pattern)


# ------------------------------------------------------------------ configs
CONFIGS = {
    "latent_dim a float": (lambda: VAEHeadConfig(d_in=6, latent_dim=8.0), TypeError, r"latent_dim must be int"),
    "d_in a string": (lambda: VAEHeadConfig(d_in="64"), TypeError, r"d_in must be int"),
    "objective not a name": (lambda: VAEHeadConfig(d_in=6, objective=3), TypeError, r"objective must be str"),
    "objective_args a list": (lambda: VAEHeadConfig(d_in=6, objective_args=[6]), TypeError, r"objective_args"),
    "categorical a number": (lambda: JointVAEHeadConfig(d_in=6, categorical=6), TypeError, r"categorical must be"),
    "batch_size a float": (lambda: TrainConfig(batch_size=32.0), TypeError, r"batch_size must be int"),
    "lr a string": (lambda: TrainConfig(lr="1e-3"), TypeError, r"lr must be float"),
    "span of three": (lambda: Probe(_Tiny.bridge, HOOK, adapter_options={"span": (1, 2, 3)}), ValueError, r"span"),
    "span a number": (lambda: Probe(_Tiny.bridge, HOOK, adapter_options={"span": 5}), ValueError, r"span"),
    "head_config with a float width": (
        lambda: Probe(_Tiny.bridge, HOOK, head_config=dict(latent_dim=4.0)).fit(
            [torch.randint(0, 20, (8, 10))] * 8, TrainConfig(steps=1, batch_size=32, progress=False), buffer_size=64
        ),
        TypeError,
        r"latent_dim must be int",
    ),
}


class _Tiny:
    bridge = None


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_configs(case, tiny_bridge):
    _Tiny.bridge = tiny_bridge
    _check(*CONFIGS[case])


# ------------------------------------------------------------------ data
def _fit(data, **kw):
    Trainer(_head(), TrainConfig(steps=2, batch_size=4, progress=False, **kw)).fit(data)


DATA = {
    "int activations": (lambda p, m: _fit(torch.ones(16, 6, dtype=torch.long)), TypeError, r"floating-point"),
    "bool activations": (lambda p, m: _fit(torch.ones(16, 6, dtype=torch.bool)), TypeError, r"floating-point"),
    "activations of another width": (lambda p, m: _fit(torch.randn(16, 5)), ValueError, r"\[batch, 6\].*\(4, 5\)"),
    "an iterable yielding strings": (lambda p, m: _fit(["abc", "def"]), TypeError, r"batch 0.*str"),
    "a string as data": (lambda p, m: _fit("activations.safetensors"), TypeError, r"data must be"),
    "a number as data": (lambda p, m: _fit(3), TypeError, r"data must be"),
    "token ids out of the vocabulary": (
        lambda p, m: p.encode_inputs(torch.full((2, 5), 20)),
        ValueError,
        r"token id 20.*vocabulary 0\.\.19",
    ),
    "negative token ids": (lambda p, m: p.encode_inputs(torch.full((2, 5), -1)), ValueError, r"token id -1"),
    "float token batch": (lambda p, m: p.encode_inputs(torch.ones(2, 5)), TypeError, r"integer tensor.*float32"),
    "3-D token batch": (
        lambda p, m: p.encode_inputs(torch.ones(2, 5, 1, dtype=torch.long)),
        ValueError,
        r"\[batch, positions\]",
    ),
    "text instead of tokens": (lambda p, m: p.encode_inputs("the cat"), TypeError, r"tokenize"),
    "encode of the wrong width": (
        lambda p, m: p.encode(torch.randn(3, D + 1)),
        ValueError,
        rf"\(3, {D + 1}\).*\[N, {D}\]",
    ),
    "encode of a 1-D vector": (lambda p, m: p.encode(torch.randn(D)), ValueError, rf"\[N, {D}\]"),
    "encode of NaN rows": (
        lambda p, m: p.encode(torch.randn(5, D).index_fill_(0, torch.tensor([1, 3]), float("nan"))),
        ValueError,
        r"rows \[1, 3\]",
    ),
    "encode of inf rows": (lambda p, m: p.encode(torch.full((2, D), float("inf"))), ValueError, r"NaN or inf"),
    "encode of a list": (lambda p, m: p.encode([[0.0] * D]), TypeError, r"tensor"),
}


@pytest.mark.parametrize("case", sorted(DATA))
def test_data(case, probe, tiny_bridge):
    run, exc, pattern = DATA[case]
    _check(lambda: run(probe, tiny_bridge), exc, pattern)


def test_float64_activations_train_as_float32():
    head = _head()
    Trainer(head, TrainConfig(steps=3, batch_size=4, progress=False)).fit(torch.randn(16, 6, dtype=torch.float64))
    assert all(p.dtype == torch.float32 for p in head.parameters())


def test_resume_with_another_config_says_so(tmp_path, caplog):
    x = torch.randn(64, 6)
    Trainer(_head(), TrainConfig(steps=4, batch_size=8, progress=False, checkpoint_dir=str(tmp_path))).fit(x)
    changed = TrainConfig(steps=8, batch_size=16, lr=2e-3, progress=False, checkpoint_dir=str(tmp_path))
    _check(lambda: Trainer(_head(), changed).fit(x, resume=True), ValueError, r"batch_size: 8 .*16 now.*lr: 0\.001")
    with caplog.at_level(logging.WARNING, logger="probe_disentangle.train"):
        assert Trainer(_head(), changed).fit(x, resume=True, resume_config="override").step == 8
    assert "batch_size: 8 in the checkpoint, 16 now" in caplog.text
    # settings that do not change the run may differ; so may the step count of a constant schedule
    same = TrainConfig(steps=12, batch_size=8, progress=False, checkpoint_dir=str(tmp_path), log_every=3)
    assert Trainer(_head(), same).fit(x, resume=True, resume_config="override").step == 12
    _check(lambda: Trainer(_head(), same).fit(x, resume="x", resume_config="warn"), ValueError, r"resume_config")


# ------------------------------------------------------------------ edits
EDITS = {
    "NaN value": ({0: float("nan")}, ValueError, r"latent 0.*finite"),
    "+inf value": ({0: float("inf")}, ValueError, r"finite"),
    "('add', -inf)": ({0: ("add", float("-inf"))}, ValueError, r"finite"),
    "('set', nan)": ({1: ("set", float("nan"))}, ValueError, r"finite"),
    "string key": ({"0": 1.0}, TypeError, r"latent indices \(ints\).*'0'"),
    "float key": ({0.0: 1.0}, TypeError, r"latent indices"),
    "key out of range": ({9: 1.0}, ValueError, r"out of range.*4 latents"),
    "list value": ({0: [1.0, 2.0]}, TypeError, r"latent 0.*'nearest'"),
    "None value": ({0: None}, TypeError, r"latent 0"),
    "string value": ({0: "2"}, TypeError, r"latent 0"),
    "('nearest', 5)": ({0: ("nearest", 5)}, ValueError, r"non-empty list"),
    "('nearest', [])": ({0: ("nearest", [])}, ValueError, r"non-empty list"),
    "('nearest', [nan])": ({0: ("nearest", [float("nan")])}, ValueError, r"finite"),
    "unknown op": ({0: ("mul", 2.0)}, ValueError, r"\('add', delta\)"),
    "a list of edits": ([(0, 1.0)], TypeError, r"mapping.*list"),
    "a number": (2.0, TypeError, r"mapping"),
    "no edits": ({}, ValueError, r"needs edits"),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_edits(case, probe, tiny_bridge):
    edits, exc, pattern = EDITS[case]

    def steer():
        with probe.steer(tiny_bridge, edits):
            tiny_bridge(torch.ones(1, 4, dtype=torch.long))

    _check(steer, exc, pattern)
    if isinstance(edits, dict) and edits:
        _check(lambda: probe.edit_vectors(torch.randn(3, D), edits), exc, pattern)


def test_nearest_edits_accept_numpy_and_tuples(joint_probe):
    a = torch.randn(3, D)
    out = joint_probe.edit_vectors(a, {np.int64(0): ("nearest", (np.float32(1.0), 2))})
    assert out.shape == a.shape and torch.isfinite(out).all()


def test_steering_a_host_of_another_width(probe):
    tl = pytest.importorskip("transformer_lens")
    cfg = tl.TransformerBridgeConfig(d_model=16, d_head=8, n_layers=3, n_ctx=16, n_heads=2, d_vocab=20, act_fn="gelu")
    other = tl.TransformerBridge.boot_native(cfg).eval()

    def steer():
        with probe.steer(other, {0: 1.0}):
            other(torch.ones(1, 4, dtype=torch.long))

    _check(steer, ValueError, rf"width 16 at '{re.escape(HOOK)}'.*width {D}")
    assert sum(len(m._forward_hooks) for m in other.modules()) == 0


# ------------------------------------------------------------------ caches
class _Host(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.layer = nn.Linear(width, width)

    def forward(self, x):
        return self.layer(x)


def _cache(tmp: Path, width: int = 4) -> Path:
    data = [torch.randn(10, width) for _ in range(4)]
    store = ActivationStore(
        attach(_Host(width)), "layer", data, batch_size=10, buffer_size=20, cache_dir=tmp, device="cpu"
    )
    list(store)
    return tmp


def _read_cache(tmp: Path):
    store = ActivationStore(attach(_Host()), "layer", [], batch_size=10, buffer_size=20, cache_dir=tmp, device="cpu")
    list(store)


def _manifest_broken(tmp):
    _cache(tmp)
    (tmp / CACHE_MANIFEST).write_text('{"hook": "layer", "sha')
    _read_cache(tmp)


def _manifest_a_list(tmp):
    _cache(tmp)
    (tmp / CACHE_MANIFEST).write_text("[]")
    _read_cache(tmp)


def _manifest_without_shards(tmp):
    _cache(tmp)
    _edit_json(tmp / CACHE_MANIFEST, lambda m: {"hook": m["hook"], "d": m["d"]})
    _read_cache(tmp)


def _manifest_escaping_its_folder(tmp):
    _cache(tmp)
    _edit_json(tmp / CACHE_MANIFEST, lambda m: {**m, "shards": [{"file": "../../etc/passwd", "rows": 1}]})
    _read_cache(tmp)


def _shard_truncated(tmp):
    _cache(tmp)
    shard = tmp / "shard_00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:30])
    _read_cache(tmp)


def _shard_garbage(tmp):
    _cache(tmp)
    (tmp / "shard_00000.safetensors").write_bytes(b"\x00" * 100)
    _read_cache(tmp)


def _shard_missing(tmp):
    _cache(tmp)
    (tmp / "shard_00002.safetensors").unlink()
    _read_cache(tmp)


def _shard_of_another_width(tmp):
    _cache(tmp)
    other = _cache(tmp / "wide", width=6)
    (tmp / "shard_00001.safetensors").write_bytes((other / "shard_00001.safetensors").read_bytes())
    _read_cache(tmp)


CACHES = {
    "manifest truncated": (_manifest_broken, ValueError, r"manifest.json is not valid JSON.*delete"),
    "manifest a list": (_manifest_a_list, ValueError, r"manifest.json lacks"),
    "manifest without shards": (_manifest_without_shards, ValueError, r"manifest.json lacks"),
    "manifest naming a file outside": (_manifest_escaping_its_folder, ValueError, r"outside its folder"),
    "shard truncated": (_shard_truncated, ValueError, r"shard_00001.safetensors is not a readable"),
    "shard garbage": (_shard_garbage, ValueError, r"shard_00000.safetensors is not a readable"),
    "shard missing": (_shard_missing, FileNotFoundError, r"shard_00002.safetensors is missing"),
    "shard of another width": (_shard_of_another_width, ValueError, r"shard_00001.*\(10, 6\).*width is 4"),
}


@pytest.mark.parametrize("case", sorted(CACHES))
def test_caches(case, tmp_path):
    run, exc, pattern = CACHES[case]
    _check(lambda: run(tmp_path), exc, pattern)
