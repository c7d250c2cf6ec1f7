"""Probe.from_sae: an SAE that SAELens itself built and saved, imported as a probe head on a tiny
TransformerBridge (and a Hugging Face GPT-2): encode and decode equal SAELens's, steering keeps
the SAE's error and moves the activation by Δf · W_dec[feature], the normalisation settings are
respected or refused by name, and the probe saves, loads, traverses and is scored like any."""

import json

import numpy as np
import pytest
import torch

from probe_disentangle import metrics
from probe_disentangle.adapters import HookError
from probe_disentangle.heads import SAEHead
from probe_disentangle.probe import Probe
from probe_disentangle.steering import sae as S
from probe_disentangle.steering.interchange import probe_interchanger, vector_reader

HOOK = "blocks.1.hook_resid_post"
D, M = 32, 48  # the bridge's d_model, the SAE's width


@pytest.fixture(scope="module")
def sae_lens():
    pytest.importorskip("transformer_lens")
    S._install_tl4_shim()
    return pytest.importorskip("sae_lens")


def saelens_sae(sae_lens, architecture="standard", seed=0, hook=HOOK, **fields):
    """One of SAELens's own inference SAEs, with random weights (biases too) so that every term counts."""
    from sae_lens.saes.sae import SAEMetadata

    configs = {
        "standard": sae_lens.StandardSAEConfig,
        "topk": sae_lens.TopKSAEConfig,
        "jumprelu": sae_lens.JumpReLUSAEConfig,
        "gated": sae_lens.GatedSAEConfig,
    }
    classes = {
        "standard": sae_lens.StandardSAE,
        "topk": sae_lens.TopKSAE,
        "jumprelu": sae_lens.JumpReLUSAE,
        "gated": sae_lens.GatedSAE,
    }
    cfg = configs[architecture](d_in=D, d_sae=M, metadata=SAEMetadata(hook_name=hook), **fields)
    torch.manual_seed(seed)
    sae = classes[architecture](cfg)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_((0.05 if name == "threshold" else 0.3) * torch.randn_like(p))
            if name == "threshold":
                p.abs_()
    return sae.eval()


def save(sae, folder):
    sae.save_model(folder)
    return folder


def tokens(seed=0, n=4, t=8):
    return torch.randint(0, 20, (n, t), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def standard(sae_lens, tiny_bridge, tmp_path_factory):
    """(SAELens's SAE, our probe from its folder, activations at the hook)."""
    theirs = saelens_sae(sae_lens)
    probe = Probe.from_sae(tiny_bridge, save(theirs, tmp_path_factory.mktemp("sae") / "standard"))
    acts = probe.adapter.collect(tokens(), HOOK).vectors
    return theirs, probe, acts


@pytest.mark.parametrize(
    "architecture, fields",
    [("standard", {}), ("topk", {"k": 5}), ("topk", {"k": 5, "rescale_acts_by_decoder_norm": True}),
     ("jumprelu", {}), ("gated", {})],
)  # fmt: skip
def test_encode_and_decode_equal_saelens(sae_lens, tiny_bridge, tmp_path, architecture, fields):
    theirs = saelens_sae(sae_lens, architecture, **fields)
    probe = Probe.from_sae(tiny_bridge, save(theirs, tmp_path / "sae"))
    assert probe.hook == HOOK and probe.latent_dim == M and probe.architecture == "sae_head"
    acts = probe.adapter.collect(tokens(), HOOK).vectors
    with torch.no_grad():
        f = theirs.encode(acts)
        assert (f > 0).any() and (f == 0).any()  # some features fire, some do not: the activation counts
        torch.testing.assert_close(probe.encode(acts), f)
        torch.testing.assert_close(probe.decode(f), theirs.decode(f))


def test_an_empty_edit_leaves_the_hosts_logits_bit_identical(standard, tiny_bridge):
    _, probe, acts = standard
    assert torch.equal(probe.edit_vectors(acts, {}), acts)
    x = tokens(1)
    clean = tiny_bridge(x)
    with probe.steer(tiny_bridge, {3: ("add", 0.0)}):  # z' = z: dec(z') − dec(z) is exactly 0
        same = tiny_bridge(x)
    assert torch.equal(same, clean)
    with probe.steer(tiny_bridge, {3: ("add", 4.0)}):
        moved = tiny_bridge(x)
    assert not torch.allclose(moved, clean)
    assert torch.equal(tiny_bridge(x), clean)  # and no hook is left behind


def test_an_edit_of_one_feature_moves_the_activation_by_its_decoder_row_and_keeps_the_error(standard):
    theirs, probe, acts = standard
    j, v = 7, 2.5
    out = probe.edit_vectors(acts, {j: v})
    with torch.no_grad():
        f = theirs.encode(acts)
        delta_f = v - f[:, j]  # the change of feature j, per vector
        torch.testing.assert_close(out - acts, delta_f[:, None] * theirs.W_dec[j], rtol=0, atol=2e-6)
        assert torch.equal(out, acts + delta_f[:, None] * theirs.W_dec[j])  # the same sum, bit for bit
        # the SAE's reconstruction error of the edited vector is the original's: nothing it misses is lost
        f2 = f.clone()
        f2[:, j] = v
        torch.testing.assert_close(out - theirs.decode(f2), acts - theirs.decode(f), rtol=0, atol=1e-5)
    torch.testing.assert_close(probe.directions(), theirs.W_dec.detach())


def test_save_and_load_round_trip(standard, tiny_bridge, tmp_path):
    theirs, probe, acts = standard
    probe.metrics = {"mig": 0.25}
    folder = probe.save_pretrained(tmp_path / "probe")
    again = Probe.from_pretrained(folder, tiny_bridge)
    assert isinstance(again.head, SAEHead) and again.hook == HOOK and again.metrics == {"mig": 0.25}
    assert again.normalizer is None and again.reference_codes is None
    assert torch.equal(again.encode(acts), probe.encode(acts))
    assert torch.equal(again.edit_vectors(acts, {7: 2.5}), probe.edit_vectors(acts, {7: 2.5}))
    card = (folder / "README.md").read_text()
    assert "base_model" not in card  # the bridge booted from a config calls itself "native": no hub id
    assert (
        "sae_head" in card and HOOK in card and '"d_sae": 48' in card and "SAELens SAE (standard, 48 features)" in card
    )
    # the head goes back out as a SAELens folder that SAELens reads
    back = sae_lens_load(S.save_saelens(again.head.sae, tmp_path / "out"))
    with torch.no_grad():
        torch.testing.assert_close(back.encode(acts), theirs.encode(acts))


def sae_lens_load(folder):
    from sae_lens import SAE

    return SAE.load_from_disk(folder)


def test_metrics_interchange_and_a_traversal_run_on_sae_features(standard):
    probe = standard[1]
    acts = probe.adapter.collect(tokens(2, n=32), HOOK).vectors  # enough rows for the metrics' 20% test split
    codes = probe.encode(acts).numpy()
    j = int(np.argmax((codes > 0).mean(0) * ((codes > 0).mean(0) < 1)))  # a feature that fires on some vectors
    # factor 0: whether feature j fires; factor 1: unrelated to every feature (the row index mod 3)
    factors = np.stack([(codes[:, j] > 0).astype(int), np.arange(len(codes)) % 3], 1)
    scores = metrics.evaluate(codes, factors, metrics=["mig", "sap", "dci", "modularity_explicitness"], fast=True)
    assert scores and all(np.isfinite(v) for v in scores.values())
    assert 0 < scores["mig.discrete_mig"] <= 1
    inter, latents = probe_interchanger(probe, acts, factors, read=vector_reader(probe.adapter, HOOK, position=1))
    assert latents[0] == [j]  # the feature that is the factor carries the most information about it
    base, sources = tokens(3), tokens(4)
    clean = probe.adapter.model(base)
    with inter(1, sources):  # the base takes the sources' codes of factor 1's feature
        swapped = probe.adapter.model(base)
    assert swapped.shape == clean.shape and torch.isfinite(swapped).all()
    assert torch.equal(probe.adapter.model(base), clean)
    grid = probe.traverse(acts[:5], j, [0.0, 1.0, 3.0])
    assert grid.shape == (3, 5, D)
    w = probe.head.feature_directions[j]
    torch.testing.assert_close(grid[2] - grid[0], 3.0 * w.expand(5, -1), rtol=0, atol=1e-5)
    torch.testing.assert_close(grid[1] - grid[0], w.expand(5, -1), rtol=0, atol=1e-5)


def test_the_hook_comes_from_the_cfg_unless_given_and_must_exist(sae_lens, tiny_bridge, tmp_path):
    folder = save(saelens_sae(sae_lens, hook="blocks.9.hook_resid_post"), tmp_path / "deep")
    with pytest.raises(HookError, match=r"the SAE reads 'blocks\.9\.hook_resid_post' \(the hook_name in .*cfg\.json\)"):
        Probe.from_sae(tiny_bridge, folder)
    assert Probe.from_sae(tiny_bridge, folder, hook="blocks.0.hook_resid_post").hook == "blocks.0.hook_resid_post"
    with pytest.raises(HookError, match="given as hook="):
        Probe.from_sae(tiny_bridge, folder, hook="blocks.0.hook_nope")
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["metadata"].pop("hook_name")
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="names no hook"):
        Probe.from_sae(tiny_bridge, folder)


def test_a_hugging_face_gpt2_host_by_module_path(sae_lens, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=2, n_embd=D, n_head=4, vocab_size=40, n_positions=32)
    ).eval()
    theirs = saelens_sae(sae_lens)
    folder = save(theirs, tmp_path / "sae")
    with pytest.raises(HookError, match="does not have"):  # a TransformerLens name: not a module path of GPT-2
        Probe.from_sae(gpt2, folder)
    probe = Probe.from_sae(gpt2, folder, hook="transformer.h.1")
    x = {"input_ids": torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(0))}
    acts = probe.adapter.collect(x, "transformer.h.1").vectors
    with torch.no_grad():
        torch.testing.assert_close(probe.encode(acts), theirs.encode(acts))
    clean = gpt2(**x).logits
    with probe.steer(gpt2, {0: ("add", 0.0)}):
        assert torch.equal(gpt2(**x).logits, clean)


def test_a_constant_normalisation_is_folded_and_per_vector_ones_are_refused(sae_lens, tiny_bridge, tmp_path, standard):
    from sae_lens.training.activation_scaler import ActivationScaler

    theirs = saelens_sae(sae_lens, seed=1)
    theirs.cfg.normalize_activations = "expected_average_only_in"
    folder = save(theirs, tmp_path / "scaled")
    with pytest.raises(ValueError, match=r"expected_average_only_in.*activation_scaler\.json.*is missing"):
        Probe.from_sae(tiny_bridge, folder)
    scaler = ActivationScaler()
    scaler.scaling_factor = 2.5
    scaler.save(str(folder / "activation_scaler.json"))  # as a SAELens checkpoint keeps it
    probe = Probe.from_sae(tiny_bridge, folder)
    acts = standard[2]
    with torch.no_grad():  # SAELens's training-time view: the SAE reads x·s and its output is divided by s
        f = theirs.encode(acts * 2.5)
        torch.testing.assert_close(probe.encode(acts), f, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(probe.decode(f), theirs.decode(f) / 2.5, rtol=1e-5, atol=1e-5)
    for norm in ("layer_norm", "constant_norm_rescale", "covariance_whitening"):
        cfg = json.loads((folder / "cfg.json").read_text())
        cfg["normalize_activations"] = norm
        (folder / "cfg.json").write_text(json.dumps(cfg))
        with pytest.raises(ValueError, match=f"normalize_activations='{norm}' is .*reproduces only"):
            Probe.from_sae(tiny_bridge, folder)


def test_an_sae_probe_is_not_fitted(standard, token_batches):
    _, probe, _ = standard
    with pytest.raises(ValueError, match="imported, not fitted here"):
        probe.fit(token_batches)


def test_the_sae_head_round_trips_through_the_registry(tmp_path):
    from probe_disentangle import io
    from probe_disentangle.heads import SAEHeadConfig

    head = SAEHead(SAEHeadConfig(d_in=4, d_sae=6, sae_architecture="topk", k=2, hook_name="h"))
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn_like(p))
    again = io.load(io.save(head, tmp_path / "head"))
    assert again.config == head.config and isinstance(again, SAEHead)
    x = torch.randn(5, 4)
    assert torch.equal(again.encode(x), head.encode(x))
    assert int((head.encode(x) != 0).sum(1).max()) <= 2
    with pytest.raises(ValueError, match="needs k"):
        SAEHeadConfig(d_in=4, d_sae=6, sae_architecture="topk")
    with pytest.raises(ValueError, match="expects activations of shape"):
        head.encode(torch.randn(5, 3))
    np.testing.assert_allclose(head.latent_dim, 6)
