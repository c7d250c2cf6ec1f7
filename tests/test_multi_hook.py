"""fit_probes: several probes from one host forward per batch, each equal to its single-hook fit."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from probe_disentangle import ActivationStore, Probe, SharedForward, TrainConfig, attach, fit_probes, hook_folder
from probe_disentangle.adapters import HookError
from probe_disentangle.constants import LATEST_FILE

SHALLOW, DEEP = "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"
# deep first: the order the hooks are given in must not matter; the deep probe's FactorVAE draws
# permutations from the global RNG every step, which the shallow probe's steps must not disturb
HEADS = {
    DEEP: {"architecture": "vae_head", "latent_dim": 2, "hidden": 16, "objective": "factor_vae"},
    SHALLOW: {"latent_dim": 3, "hidden": 16},
}
FIT = dict(buffer_size=256, normalizer_vectors=200)


def _train(**kw) -> TrainConfig:
    return TrainConfig(steps=24, batch_size=64, progress=False, **kw)


def _same_probe(a: Probe, b: Probe) -> None:
    sa, sb = a.head.state_dict(), b.head.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(a.normalizer.mean, b.normalizer.mean) and torch.equal(a.normalizer.std, b.normalizer.std)
    assert torch.equal(a.reference_codes, b.reference_codes)


class _Counter:
    """Counts the forwards of a module (a pre-hook, removed on exit)."""

    def __init__(self, module: nn.Module) -> None:
        self.module, self.calls = module, 0

    def __enter__(self) -> _Counter:
        self.handle = self.module.register_forward_pre_hook(lambda *a: setattr(self, "calls", self.calls + 1))
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


@pytest.fixture(scope="module")
def together(tiny_bridge):
    """The two probes from fit_probes, with the host forwards counted at the first and last block."""
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(0, 20, (8, 10), generator=g) for _ in range(12)]
    with _Counter(tiny_bridge.blocks[0]) as first, _Counter(tiny_bridge.blocks[2]) as last:
        fitted = fit_probes(tiny_bridge, HEADS, data, _train(), **FIT)
    return data, fitted, first.calls, last.calls


def test_each_probe_equals_its_single_hook_fit_with_the_host_run_once_per_batch(tiny_bridge, together):
    data, fitted, forwards, after_deepest = together
    assert list(fitted) == [DEEP, SHALLOW]
    single_forwards = []
    for hook, spec in HEADS.items():
        spec = dict(spec)
        probe = Probe(tiny_bridge, hook, architecture=spec.pop("architecture", "vae_head"), head_config=spec)
        with _Counter(tiny_bridge.blocks[0]) as c:
            result = probe.fit(data, _train(), **FIT)
        single_forwards.append(c.calls)
        _same_probe(fitted[hook], probe)
        assert fitted.results[hook].step == result.step == 24 and fitted.results[hook].last == result.last
    # 24 steps × 64 vectors from passes of 12 batches × 72 vectors: every fit reads 2 passes of 12 batches;
    # the two probes together ran the host as often as one probe alone does, not twice as often
    assert single_forwards == [24, 24] and forwards == 24
    assert after_deepest == 0  # the last block, after the deepest hook, never ran


def test_forward_stops_after_the_deepest_hook_of_a_torch_module():
    torch.manual_seed(0)
    host = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5), nn.Linear(5, 3)).eval()
    adapter = attach(host)
    x = torch.randn(4, 6)
    with _Counter(host[3]) as after:
        acts = adapter.collect_many(x, ["2", "0"])  # any order
    assert after.calls == 0 and list(acts) == ["2", "0"]
    for hook in ("0", "2"):
        assert torch.equal(acts[hook].vectors, adapter.collect(x, hook).vectors)
    assert adapter.live_hooks == 0
    # the shared forward: one host run per batch per pass, each store's pass the chunks of its hook
    data = [torch.randn(4, 6) for _ in range(3)]
    shared = SharedForward(adapter, ["0", "2"], data)
    with _Counter(host[0]) as first, _Counter(host[3]) as after:
        a = list(shared.chunks("0"))
        b = list(shared.chunks("2"))
    assert first.calls == 3 and after.calls == 0 and shared.forwards == 3
    assert all(torch.equal(u, adapter.collect(d, "0").vectors) for u, d in zip(a, data, strict=True))
    assert all(torch.equal(u, adapter.collect(d, "2").vectors) for u, d in zip(b, data, strict=True))
    assert shared.taken("0") == shared.taken("2") == 3
    # a released hook is read no more: the next pass stops after the shallow one
    shared.release("2")
    with _Counter(host[2]) as deep:
        assert len(list(shared.chunks("0"))) == 3
    assert deep.calls == 0


def test_saved_folders_load_with_from_pretrained(tiny_bridge, together, tmp_path):
    data, fitted, _, _ = together
    out = tmp_path / "probes"
    again = fit_probes(tiny_bridge, HEADS, data, _train(), out=out, **FIT)
    for hook in HEADS:
        folder = out / hook_folder(hook)
        assert folder.name == hook  # hook names of letters, digits, '.' and '_' are their own folder names
        loaded = Probe.from_pretrained(folder, tiny_bridge)
        assert loaded.hook == hook
        _same_probe(loaded, fitted[hook])
        _same_probe(again[hook], fitted[hook])
    with pytest.raises(FileExistsError, match="already holds a probe"):
        fit_probes(tiny_bridge, HEADS, data, _train(), out=out, **FIT)


def test_hook_folder_names():
    assert hook_folder("blocks.3.hook_resid_post") == "blocks.3.hook_resid_post"
    assert hook_folder("model.layers[3]") == "model.layers_3_"
    assert hook_folder("a/b c:d") == "a_b_c_d"
    assert hook_folder(".hidden") == "_hidden"


class _Failing:
    """The same batches as ``data``, pass after pass, but the ``fail_at``-th batch read raises."""

    def __init__(self, data, fail_at: int) -> None:
        self.data, self.fail_at, self.read = data, fail_at, 0

    def __iter__(self):
        for b in self.data:
            self.read += 1
            if self.read == self.fail_at:
                raise RuntimeError("killed")
            yield b


def test_resume_carries_each_probe_on_from_its_own_checkpoint(tiny_bridge, together, tmp_path):
    """An interrupted run, resumed, ends as the uninterrupted one: the deep probe rewound to an
    older checkpoint (as if killed between the two probes' saves), the shallow one with none (as if
    killed before its first), which starts again."""
    data, fitted, _, _ = together
    train = _train(checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_every=5, keep_checkpoints=3)
    with pytest.raises(RuntimeError, match="killed"):
        fit_probes(tiny_bridge, HEADS, _Failing(data, fail_at=20), train, **FIT)
    deep, shallow = (tmp_path / "ckpt" / hook_folder(h) for h in (DEEP, SHALLOW))
    kept = sorted(p.name for p in deep.glob("step_*"))
    assert (deep / LATEST_FILE).read_text() == kept[-1] and len(kept) >= 2 and kept[-1] < "step_00000024"
    (deep / LATEST_FILE).write_text(kept[-2])
    for p in shallow.glob("step_*"):
        shutil.rmtree(p)
    (shallow / LATEST_FILE).unlink()
    resumed = fit_probes(tiny_bridge, HEADS, data, train, resume=True, **FIT)
    for hook in HEADS:
        _same_probe(resumed[hook], fitted[hook])
        assert resumed.results[hook].step == 24
    assert (shallow / LATEST_FILE).read_text() == "step_00000024"


def test_bad_input_gets_a_clear_error(tiny_bridge, token_batches):
    with pytest.raises(HookError, match=r"unknown hook 'blocks.1.hook_resid_pots'.*did you mean"):
        fit_probes(tiny_bridge, {SHALLOW: None, "blocks.1.hook_resid_pots": None}, token_batches, _train())
    with pytest.raises(ValueError, match="heads is empty"):
        fit_probes(tiny_bridge, {}, token_batches, _train())
    with pytest.raises(TypeError, match="must be a dict"):
        fit_probes(tiny_bridge, [SHALLOW, DEEP], token_batches, _train())
    with pytest.raises(TypeError, match=r"heads\['blocks.0.hook_resid_post'\] is a int"):
        fit_probes(tiny_bridge, {SHALLOW: 8}, token_batches, _train())
    with pytest.raises(ValueError, match="drop it"):
        fit_probes(tiny_bridge, {SHALLOW: {"d_in": 32}}, token_batches, _train())
    with pytest.raises(ValueError, match="named twice"):
        SharedForward(attach(tiny_bridge), [SHALLOW, SHALLOW], token_batches)
    with pytest.raises(ValueError, match="resume needs train.checkpoint_dir"):
        fit_probes(tiny_bridge, {SHALLOW: None}, token_batches, _train(), resume=True)
    host = nn.Sequential()
    host.add_module("a:b", nn.Linear(2, 2))
    host.add_module("a;b", nn.Linear(2, 2))
    with pytest.raises(ValueError, match="share the folder name 'a_b'"):
        fit_probes(host, {"a:b": None, "a;b": None}, [torch.randn(4, 2)], _train())
    adapter = attach(host)
    with pytest.raises(ValueError, match="drop cache_dir"):
        ActivationStore(adapter, "a:b", SharedForward(adapter, ["a:b"], []), cache_dir="c")
    with pytest.raises(ValueError, match="build the store with that adapter"):
        ActivationStore(attach(host), "a:b", SharedForward(adapter, ["a:b"], []))
