"""Probe: fit, encode/decode, directions, steering with exact edit semantics, hook hygiene, save/load."""

import pytest
import torch

from probe_disentangle.heads import InfoGANHead, InfoGANHeadConfig
from probe_disentangle.probe import Probe, load_directions
from probe_disentangle.train import TrainConfig

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def probe(tiny_bridge):
    g = torch.Generator().manual_seed(0)
    token_batches = [torch.randint(0, 20, (8, 10), generator=g) for _ in range(12)]
    torch.manual_seed(0)
    p = Probe(tiny_bridge, HOOK, head_config=dict(latent_dim=4, hidden=32, objective_args={"beta": 6.0}))
    p.fit(token_batches, TrainConfig(steps=60, batch_size=64, progress=False), buffer_size=512)
    return p


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_fit_sets_normaliser_and_head_width(probe):
    assert probe.head.config.d_in == 32 and probe.latent_dim == 4
    assert probe.normalizer.mean.shape == (32,) and probe.reference_codes.shape[1] == 4


def test_fit_runs_the_host_once_per_batch_and_trains_on_a_one_shot_iterator(tiny_bridge, token_batches):
    # the normaliser, the reference codes and training share one pass over the data: a generator
    # of host batches works, and nothing is run through the host twice
    runs = []
    handle = tiny_bridge.blocks[0].register_forward_pre_hook(lambda *a: runs.append(1))
    try:
        torch.manual_seed(0)
        p = Probe(tiny_bridge, HOOK, head_config=dict(latent_dim=2, hidden=16))
        p.fit(
            (b for b in token_batches),
            TrainConfig(steps=5, batch_size=64, progress=False),
            buffer_size=128,
            normalizer_vectors=100,
        )
    finally:
        handle.remove()
    assert len(runs) == len(token_batches)  # the 4096 reference vectors read all 12 batches: each ran once
    assert p.reference_codes.shape == (len(token_batches) * 8 * 9, 2)  # 8 rows × 9 tokens (BOS excluded)


def test_edit_semantics_keep_what_the_head_does_not_reconstruct(probe):
    a = torch.randn(6, 32)
    torch.testing.assert_close(probe.edit_vectors(a, {}), a)  # no edit: identity, not the reconstruction
    z = probe.encode(a)
    edited = probe.edit_vectors(a, {1: 2.0})
    z2 = z.clone()
    z2[:, 1] = 2.0
    want = a + probe.decode(z2) - probe.decode(z)
    torch.testing.assert_close(edited, want, rtol=1e-4, atol=1e-5)
    added = probe.edit_vectors(a, {1: ("add", 0.5)})
    z3 = z.clone()
    z3[:, 1] += 0.5
    torch.testing.assert_close(added, a + probe.decode(z3) - probe.decode(z), rtol=1e-4, atol=1e-5)
    trav = probe.traverse(a, 2, [-1.0, 0.0, 1.0])
    assert trav.shape == (3, 6, 32)
    with pytest.raises(ValueError, match="out of range"):
        probe.edit_vectors(a, {7: 1.0})


def test_directions_are_decoder_changes_per_unit(probe):
    d = probe.directions()
    assert d.shape == (4, 32)
    z = probe.reference_codes
    e = torch.zeros(4)
    e[0] = 0.5
    want = (probe.decode(z + e) - probe.decode(z - e)).mean(0)
    torch.testing.assert_close(d[0], want, rtol=1e-4, atol=1e-5)


def test_steer_edits_every_forward_then_leaves_no_trace(probe, tiny_bridge):
    toks = torch.randint(0, 20, (2, 5), generator=torch.Generator().manual_seed(3))
    params = _params(tiny_bridge)
    base = tiny_bridge(toks)
    with torch.no_grad(), probe.steer(tiny_bridge, {0: 3.0}):
        steered = tiny_bridge(toks)
    assert not torch.equal(steered, base)
    assert torch.equal(tiny_bridge(toks), base)  # bit-identical once detached
    assert all(torch.equal(v, params[k]) for k, v in tiny_bridge.state_dict().items())
    assert probe.adapter.live_hooks == 0


def test_steer_edits_kv_cached_generation_steps(hf_bridge):
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(1, 30, (8, 8), generator=g) for _ in range(6)]
    torch.manual_seed(0)
    p = Probe(
        hf_bridge,
        "blocks.0.hook_resid_post",
        head_config=dict(latent_dim=3, hidden=16, objective="beta_vae", objective_args={"beta": 1.0}),
    )
    p.fit(data, TrainConfig(steps=20, batch_size=32, progress=False), buffer_size=128)
    seen = []
    orig = p.edit_vectors

    def spy(a, edits):
        out = orig(a, edits)
        seen.append(a.shape[0])
        changed.append(bool((out - a).abs().max() > 0))
        return out

    changed = []
    p.edit_vectors = spy
    prompt = data[0][:2, :5]
    kw = dict(max_new_tokens=4, stop_at_eos=False, verbose=False, do_sample=False, use_past_kv_cache=True)
    with torch.no_grad():
        plain = hf_bridge.generate(prompt, **kw)
        with p.steer(hf_bridge, {0: 8.0}):
            steered = hf_bridge.generate(prompt, **kw)
        again = hf_bridge.generate(prompt, **kw)
    assert seen[0] == 2 * 5 and seen[1:] == [2] * 3  # prompt, then single-token cached steps
    assert all(changed)  # every forward, cached steps included, had its activation edited
    assert torch.equal(again, plain) and steered.shape == plain.shape


def test_no_hook_left_after_exception_in_steer_or_collection(probe, tiny_bridge):
    before = sum(len(m._forward_hooks) for m in tiny_bridge.modules())
    with pytest.raises(RuntimeError, match="user"), probe.steer(tiny_bridge, {0: 1.0}):
        raise RuntimeError("user")
    with pytest.raises(ValueError, match="vocabulary"):
        probe.encode_inputs(torch.full((1, 4), 99))  # token id out of range: fails with the hooks in place
    assert sum(len(m._forward_hooks) for m in tiny_bridge.modules()) == before
    with pytest.raises(ValueError, match="needs edits"), probe.steer(tiny_bridge, {}):
        pass


def test_save_load_round_trip_and_plain_directions(probe, tiny_bridge, tmp_path):
    probe.save_pretrained(tmp_path / "p")
    back = Probe.from_pretrained(tmp_path / "p", tiny_bridge)
    a = torch.randn(4, 32)
    torch.testing.assert_close(back.encode(a), probe.encode(a))
    torch.testing.assert_close(back.edit_vectors(a, {0: 1.0}), probe.edit_vectors(a, {0: 1.0}))
    dirs, meta = load_directions(tmp_path / "p" / "directions.safetensors")
    torch.testing.assert_close(dirs, probe.directions())
    assert meta["hook"] == HOOK
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        Probe.from_pretrained(tmp_path, tiny_bridge)


def test_infogan_head_probe_edits_by_generator_means(tiny_bridge, token_batches):
    torch.manual_seed(0)
    head = InfoGANHead(InfoGANHeadConfig(d_in=32, noise_dim=4, categorical=[3], continuous=1, hidden=32))
    p = Probe(tiny_bridge, HOOK, head=head)
    p.fit(token_batches, TrainConfig(steps=20, batch_size=64, progress=False), buffer_size=512)
    a = torch.randn(5, 32)
    codes = p.encode(a)
    assert codes.shape == (5, 2)
    edited = p.edit_vectors(a, {0: 2.0})
    means = p._infogan_code_means()
    want = a + p.normalizer.scale(means["cat0"][2] - means["cat0"][codes[:, 0].long()])
    torch.testing.assert_close(edited, want, rtol=1e-4, atol=1e-5)
    assert p.directions().shape == (2, 32)


def test_fit_starts_the_head_from_the_train_seed_not_the_global_generator(tiny_bridge, token_batches):
    def head_after_fit(global_seed, seed):
        torch.manual_seed(global_seed)
        p = Probe(tiny_bridge, HOOK, head_config=dict(latent_dim=2, hidden=16))
        p.fit(token_batches, TrainConfig(steps=3, batch_size=64, progress=False, seed=seed), buffer_size=128)
        return _params(p.head)

    a, b, c = head_after_fit(1, 5), head_after_fit(2, 5), head_after_fit(1, 6)
    assert all(torch.equal(a[k], b[k]) for k in a)  # same TrainConfig.seed: the same probe
    assert any(not torch.equal(a[k], c[k]) for k in a)  # another seed: another start (restarts differ)


def test_a_tampered_probe_file_names_probe_json(probe, tiny_bridge, tmp_path):
    # the checksum of probe.safetensors lives in probe.json: the error names that file
    probe.save_pretrained(tmp_path / "p")
    tensors = tmp_path / "p" / "probe.safetensors"
    blob = bytearray(tensors.read_bytes())
    blob[-3] ^= 0xFF
    tensors.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"probe\.safetensors.*checksum in probe\.json") as err:
        Probe.from_pretrained(tmp_path / "p", tiny_bridge)
    assert "config.json" not in str(err.value)


def test_save_pretrained_in_a_data_parallel_job_writes_on_rank_zero_unless_local(probe, tmp_path, monkeypatch):
    """A non-main rank waits for rank 0 and writes nothing; ``local=True`` (a probe that lives on one
    rank, as fit_probes spreads them) writes on any rank without waiting."""
    from probe_disentangle import distributed

    class Rank1:
        is_main = False

    waits = []
    monkeypatch.setattr(distributed.DataParallel, "current", classmethod(lambda cls: Rank1()))
    monkeypatch.setattr(distributed, "barrier", lambda dp: waits.append(dp))
    assert probe.save_pretrained(tmp_path / "shared") == tmp_path / "shared"
    assert not (tmp_path / "shared").exists() and len(waits) == 1
    probe.save_pretrained(tmp_path / "mine", local=True)
    assert (tmp_path / "mine" / "probe.json").is_file() and len(waits) == 1
