"""SAELens SAEs: the folder loader on hand-written folders (known answers for every inference
architecture, clear errors), training with SAELens itself (skipped without it), feature alignment
by mutual information and the feature-swap interchange."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from probe_disentangle.adapters import attach
from probe_disentangle.steering import sae as S

W_ENC = [[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]]  # d_in = 2, d_sae = 3
B_DEC = [1.0, 0.0]
X = torch.tensor([[2.0, 1.0]])  # x − b_dec = [1, 1]: pre-activations W_enc-side [1, 1, 0] + b_enc


class Toy(torch.nn.Module):
    """A host whose hooked layer sees its input ``[B, d]`` unchanged and outputs it."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Identity()

    def forward(self, x):
        return self.layer(x)


def identity(x):
    return torch.as_tensor(x, dtype=torch.float32)


def write_folder(path, cfg, tensors):
    path.mkdir(parents=True, exist_ok=True)
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file(
        {k: torch.tensor(v, dtype=torch.float32) for k, v in tensors.items()}, str(path / "sae_weights.safetensors")
    )
    return path


def base_tensors(**extra):
    return {"W_enc": W_ENC, "W_dec": [[1.0, 0.0], [0.0, 3.0], [3.0, 4.0]], "b_dec": B_DEC, **extra}


# ------------------------------------------------------------------ loading: known answers


def test_a_standard_sae_encodes_with_relu_and_decodes_linearly(tmp_path):
    folder = write_folder(
        tmp_path / "std",
        {"architecture": "standard", "d_in": 2, "d_sae": 3, "apply_b_dec_to_input": True},
        base_tensors(b_enc=[0.0, -0.5, -0.5]),
    )
    sae = S.load_saelens(folder)
    f = sae.encode(X)  # pre = [1, 0.5, -0.5]
    torch.testing.assert_close(f, torch.tensor([[1.0, 0.5, 0.0]]))
    torch.testing.assert_close(sae.decode(f), torch.tensor([[1 + 1.0, 0 + 1.5]]))  # f @ W_dec + b_dec
    torch.testing.assert_close(sae(X), sae.decode(f))
    assert sae.config.architecture == "standard" and not sae.training


def test_without_b_dec_on_the_input_the_input_is_encoded_as_is(tmp_path):
    folder = write_folder(
        tmp_path / "nob",
        {"architecture": "standard", "d_in": 2, "d_sae": 3, "apply_b_dec_to_input": False},
        base_tensors(b_enc=[0.0, 0.0, 0.0]),
    )
    torch.testing.assert_close(
        S.load_saelens(folder).encode(X), torch.tensor([[2.0, 1.0, 0.0]])
    )  # x W_enc = [2, 1, -1]


def test_topk_keeps_the_k_largest_and_rescales_by_decoder_norms(tmp_path):
    cfg = {"architecture": "topk", "d_in": 2, "d_sae": 3, "k": 1, "metadata": {"hook_name": "blocks.1.x"}}
    folder = write_folder(tmp_path / "topk", cfg, base_tensors(b_enc=[0.0, -0.5, 0.0]))
    sae = S.load_saelens(folder)  # pre = [1, 0.5, 0]
    torch.testing.assert_close(sae.encode(X), torch.tensor([[1.0, 0.0, 0.0]]))
    assert sae.config.k == 1 and sae.config.hook_name == "blocks.1.x"
    # rescaled: pre · ‖W_dec row‖ = [1·1, 0.5·3, 0·5] → feature 1 wins with 1.5; decode divides by the norm again
    cfg["rescale_acts_by_decoder_norm"] = True
    sae = S.load_saelens(write_folder(tmp_path / "topk_r", cfg, base_tensors(b_enc=[0.0, -0.5, 0.0])))
    f = sae.encode(X)
    torch.testing.assert_close(f, torch.tensor([[0.0, 1.5, 0.0]]))
    torch.testing.assert_close(sae.decode(f), torch.tensor([[1.0, 1.5]]))  # 1.5/3 · [0, 3] + b_dec
    torch.testing.assert_close(sae.feature_directions[2], torch.tensor([0.6, 0.8]))


def test_topk_as_saelens_5_wrote_it_reads_as_topk(tmp_path):
    cfg = {
        "architecture": "standard",
        "d_in": 2,
        "d_sae": 3,
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 2},
    }
    sae = S.load_saelens(write_folder(tmp_path / "v5", cfg, base_tensors(b_enc=[0.0, -0.5, 0.0])))
    assert (sae.config.architecture, sae.config.k) == ("topk", 2)
    torch.testing.assert_close(sae.encode(X), torch.tensor([[1.0, 0.5, 0.0]]))


def test_jumprelu_zeroes_features_at_or_below_their_threshold(tmp_path):
    cfg = {"architecture": "jumprelu", "d_in": 2, "d_sae": 3}
    folder = write_folder(tmp_path / "jr", cfg, base_tensors(b_enc=[0.0, -0.5, 0.3], threshold=[0.9, 0.6, 0.3]))
    torch.testing.assert_close(S.load_saelens(folder).encode(X), torch.tensor([[1.0, 0.0, 0.0]]))  # pre [1, .5, .3]
    # older folders store log_threshold
    folder = write_folder(
        tmp_path / "jr_log", cfg, base_tensors(b_enc=[0.0, -0.5, 0.3], log_threshold=np.log([0.9, 0.4, 0.2]).tolist())
    )
    torch.testing.assert_close(S.load_saelens(folder).encode(X), torch.tensor([[1.0, 0.5, 0.3]]))


def test_gated_gates_by_one_path_and_sizes_by_the_other(tmp_path):
    cfg = {"architecture": "gated", "d_in": 2, "d_sae": 3}
    tensors = base_tensors(b_gate=[0.0, -3.0, 0.0], b_mag=[0.5, 0.0, 0.0], r_mag=[float(np.log(2.0)), 0.0, 0.0])
    sae = S.load_saelens(write_folder(tmp_path / "gated", cfg, tensors))
    # gate: [1, 1, 0] + b_gate = [1, -2, 0] → only feature 0 open; magnitude: [2, 1, 0] + b_mag = [2.5, 1, 0]
    torch.testing.assert_close(sae.encode(X), torch.tensor([[2.5, 0.0, 0.0]]))


def test_a_fine_tuning_scaling_factor_is_folded_into_the_decoder(tmp_path):
    cfg = {"architecture": "standard", "d_in": 2, "d_sae": 3}
    sae = S.load_saelens(
        write_folder(tmp_path / "sf", cfg, base_tensors(b_enc=[0.0] * 3, scaling_factor=[2.0, 1.0, 1.0]))
    )
    torch.testing.assert_close(sae.W_dec[0], torch.tensor([2.0, 0.0]))


def test_save_saelens_round_trips(tmp_path):
    cfg = {"architecture": "topk", "d_in": 2, "d_sae": 3, "k": 2, "rescale_acts_by_decoder_norm": True}
    sae = S.load_saelens(write_folder(tmp_path / "a", cfg, base_tensors(b_enc=[0.1, 0.2, 0.3])))
    again = S.load_saelens(S.save_saelens(sae, tmp_path / "b"))
    assert again.config == sae.config
    for k, v in sae.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["cfg.json", "sae_weights.safetensors"]


def test_a_constant_activation_scale_is_folded_in_from_the_checkpoints_scaler(tmp_path):
    cfg = {"architecture": "standard", "d_in": 2, "d_sae": 3, "normalize_activations": "expected_average_only_in"}
    folder = write_folder(tmp_path / "scaled", cfg, base_tensors(b_enc=[0.0, -0.5, -0.5]))
    with pytest.raises(ValueError, match=r"activation_scaler\.json .*is missing"):
        S.load_saelens(folder)
    (folder / "activation_scaler.json").write_text(json.dumps({"scaling_factor": 2.0, "has_whitening": False}))
    sae = S.load_saelens(folder)
    # SAELens reads x·2: pre = (2x − b_dec) W_enc + b_enc = (x − b_dec/2)(2 W_enc) + b_enc, decode / 2
    plain = S.load_saelens(
        write_folder(
            tmp_path / "plain", {**cfg, "normalize_activations": "none"}, base_tensors(b_enc=[0.0, -0.5, -0.5])
        )
    )
    f = sae.encode(X)
    torch.testing.assert_close(f, plain.encode(2 * X))  # pre = [3, 1.5, -1.5] → [3, 1.5, 0]
    torch.testing.assert_close(f, torch.tensor([[3.0, 1.5, 0.0]]))
    torch.testing.assert_close(sae.decode(f), plain.decode(f) / 2)
    for bad, match in (
        ({"scaling_factor": None}, "no positive finite"),
        ({"scaling_factor": 2.0, "has_whitening": True}, "whitened"),
    ):
        (folder / "activation_scaler.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            S.load_saelens(folder)
    for norm in ("constant_norm_rescale", "covariance_whitening", "mystery"):
        with pytest.raises(ValueError, match=f"normalize_activations='{norm}' is .*reproduces only"):
            S.load_saelens(
                write_folder(tmp_path / norm, {**cfg, "normalize_activations": norm}, base_tensors(b_enc=[0.0] * 3))
            )


# ------------------------------------------------------------------ loading: errors


def test_bad_folders_say_what_is_wrong(tmp_path):
    good = {"architecture": "standard", "d_in": 2, "d_sae": 3}
    with pytest.raises(FileNotFoundError, match="not a folder"):
        S.load_saelens(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"cfg\.json is missing"):
        S.load_saelens(tmp_path / "empty")
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "cfg.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        S.load_saelens(tmp_path / "badjson")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "cfg.json").write_text(json.dumps(good))
    with pytest.raises(FileNotFoundError, match=r"sae_weights\.safetensors is missing"):
        S.load_saelens(tmp_path / "noweights")
    (tmp_path / "noweights" / "sae_weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        S.load_saelens(tmp_path / "noweights")
    with pytest.raises(ValueError, match=r"missing \['b_enc'\]"):
        S.load_saelens(write_folder(tmp_path / "missing", good, base_tensors()))
    with pytest.raises(ValueError, match=r"unexpected \['threshold'\]"):
        S.load_saelens(write_folder(tmp_path / "extra", good, base_tensors(b_enc=[0.0] * 3, threshold=[0.0] * 3)))
    with pytest.raises(ValueError, match=r"W_enc is \(2, 3\) but cfg\.json \(d_in=2, d_sae=4\) needs \(2, 4\)"):
        S.load_saelens(write_folder(tmp_path / "shape", {**good, "d_sae": 4}, base_tensors(b_enc=[0.0] * 4)))
    with pytest.raises(ValueError, match="architecture 'matryoshka' is not one this loader reads"):
        S.load_saelens(write_folder(tmp_path / "arch", {**good, "architecture": "matryoshka"}, base_tensors()))
    with pytest.raises(ValueError, match="normalize_activations='layer_norm'"):
        S.load_saelens(write_folder(tmp_path / "ln", {**good, "normalize_activations": "layer_norm"}, base_tensors()))
    with pytest.raises(ValueError, match=r"no integer \['d_sae'\]"):
        S.load_saelens(write_folder(tmp_path / "nod", {"architecture": "standard", "d_in": 2}, base_tensors()))
    with pytest.raises(ValueError, match="needs k in 1..d_sae=3"):
        S.load_saelens(write_folder(tmp_path / "nok", {**good, "architecture": "topk"}, base_tensors(b_enc=[0.0] * 3)))
    sae = S.load_saelens(write_folder(tmp_path / "ok", good, base_tensors(b_enc=[0.0] * 3)))
    with pytest.raises(ValueError, match=r"must be \[N, 2\] for this SAE, got \(4,\)"):
        sae.encode(torch.zeros(4))


# ------------------------------------------------------------------ alignment


def test_align_features_gives_each_factor_its_own_most_informative_features():
    mi = np.array(
        [
            [0.9, 0.0],  # factor 0's best
            [0.5, 0.1],  # factor 0's second
            [0.2, 0.3],  # factor 1's, by raw MI and by MI / H(factor) alike
            [0.0, 0.0],  # dead: nobody's
        ]
    )
    assert S.align_features(mi, 2) == {0: [0, 1], 1: [2]}
    assert S.align_features(mi, [1, 1]) == {0: [0], 1: [2]}
    assert S.align_features(mi, 3, entropies=[np.log(5), np.log(2)]) == {0: [0, 1], 1: [2]}
    # a factor that owns no feature takes its single best one
    assert S.align_features(np.array([[0.9, 0.2], [0.8, 0.1]]), 1) == {0: [0], 1: [0]}
    with pytest.raises(ValueError, match="per_factor must be ≥ 1"):
        S.align_features(mi, [1])
    with pytest.raises(ValueError, match="entropies must be 2 positive"):
        S.align_features(mi, 1, entropies=[1.0, 0.0])


def test_factor_entropies_are_in_nats():
    f = np.array([[0, 0], [1, 0], [0, 0], [1, 0]])
    assert S.factor_entropies(f) == pytest.approx([np.log(2), 1.0])  # a constant factor counts as 1 (no division by 0)


# ------------------------------------------------------------------ the interchange


def identity_sae(tmp_path, d=3):
    eye = torch.eye(d).tolist()
    cfg = {"architecture": "standard", "d_in": d, "d_sae": d}
    return S.load_saelens(
        write_folder(tmp_path / "id", cfg, {"W_enc": eye, "W_dec": eye, "b_dec": [0.0] * d, "b_enc": [0.0] * d})
    )


def test_the_feature_swap_moves_the_base_by_the_feature_difference_along_its_decoder_row(tmp_path):
    sae = identity_sae(tmp_path)
    adapter = attach(Toy())
    inter, feats = S.sae_interchanger(sae, adapter, "layer", read=identity, features={0: [0], 1: [1, 2]})
    assert feats == {0: [0], 1: [1, 2]}
    base, src = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 2.0, 3.0]]), torch.tensor([[5.0, 0.0, 1.0], [5.0, 0.0, 1.0]])
    with inter(0, src):
        out = adapter.model(base)
    # row 1: the base's feature 0 is ReLU(−1) = 0, so the −1 the SAE does not reconstruct is kept: −1 + 5
    torch.testing.assert_close(out, torch.tensor([[5.0, 2.0, 3.0], [4.0, 2.0, 3.0]]))
    with inter(1, src):
        out = adapter.model(base)
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]))
    # the subspace form replaces the component in the rows' span, whatever the SAE encodes
    sub, _ = S.sae_interchanger(sae, adapter, "layer", read=identity, features={0: [0], 1: [1, 2]}, form="subspace")
    with sub(0, src):
        out = adapter.model(base)
    torch.testing.assert_close(out, torch.tensor([[5.0, 2.0, 3.0], [5.0, 2.0, 3.0]]))
    assert adapter.live_hooks == 0


def test_sae_interchanger_aligns_by_mutual_information_and_reads_per_factor(tmp_path):
    sae = identity_sae(tmp_path)
    adapter = attach(Toy())
    rng = np.random.default_rng(0)
    f = rng.integers(0, 2, size=(400, 2))
    acts = torch.as_tensor(np.stack([f[:, 1], rng.random(400), f[:, 0]], 1), dtype=torch.float32)
    _, feats = S.sae_interchanger(sae, adapter, "layer", acts, f, read=identity, per_factor=1)
    assert feats == {0: [2], 1: [0]}
    # one reader per factor: factor 1 reads the source doubled
    inter, _ = S.sae_interchanger(
        sae, adapter, "layer", features=feats, read={0: identity, 1: lambda t: 2 * identity(t)}
    )
    with inter(1, torch.tensor([[1.0, 0.0, 0.0]])):
        out = adapter.model(torch.zeros(1, 3))
    torch.testing.assert_close(out, torch.tensor([[2.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="out of range"):
        inter(2, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="pass acts and factors"):
        S.sae_interchanger(sae, adapter, "layer", read=identity)
    with pytest.raises(ValueError, match=r"features \[7\] are not among"):
        S.sae_interchanger(sae, adapter, "layer", read=identity, features={0: [7]})
    with pytest.raises(ValueError, match="form must be"):
        S.sae_interchanger(sae, adapter, "layer", read=identity, features=feats, form="rows")


# ------------------------------------------------------------------ training with SAELens


def test_training_refuses_bad_arguments_before_importing_saelens():
    x = torch.randn(64, 4)
    with pytest.raises(ValueError, match="needs k"):
        S.train_sae(x, 8, "topk")
    with pytest.raises(ValueError, match="takes none"):
        S.train_sae(x, 8, "standard", k=2)
    with pytest.raises(ValueError, match="unknown SAE architecture 'sparse'"):
        S.train_sae(x, 8, "sparse")


def test_a_missing_saelens_names_what_to_install(monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *a, **k):
        if name == "sae_lens":
            raise ModuleNotFoundError("No module named 'sae_lens'")
        return real(name, *a, **k)

    monkeypatch.setattr(S.importlib, "import_module", fake)
    pytest.importorskip("transformer_lens")
    with pytest.raises(ImportError, match=r"pip install --no-deps sae-lens==6\.54\.12"):
        S.train_sae(torch.randn(64, 4), 8, "topk", k=2, steps=1)


@pytest.fixture(scope="module")
def sae_lens():
    pytest.importorskip("transformer_lens")
    S._install_tl4_shim()
    return pytest.importorskip("sae_lens")


def planted(n=3000, d=8, m=6, seed=0):
    """Vectors that are each one of ``m`` unit directions times a positive amplitude."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=1)
    which = torch.randint(0, m, (n,), generator=g)
    return dirs[which] * (1 + torch.rand(n, 1, generator=g)), dirs


def test_train_sae_runs_saelens_and_recovers_a_planted_dictionary(sae_lens):
    x, dirs = planted()
    sae = S.train_sae(x, 12, "topk", k=1, steps=300, batch_size=128, lr=3e-3, seed=0)
    assert sae.config.architecture == "topk" and sae.config.k == 1 and not sae.training
    fvu = ((sae(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
    assert fvu < 0.1, fvu  # 0.061 measured
    # each planted direction has a decoder row pointing its way
    cos = torch.nn.functional.normalize(sae.feature_directions, dim=1) @ dirs.T
    assert float(cos.max(0).values.min()) > 0.8  # 0.91 measured (seed 0)
    again = S.train_sae(x, 12, "topk", k=1, steps=300, batch_size=128, lr=3e-3, seed=0)
    torch.testing.assert_close(again.W_dec, sae.W_dec)  # seeded
    # another architecture, fed by an iterator of batches; BatchTopK is saved (and loaded) as jumprelu
    batches = (x[i : i + 100] for i in range(0, 3000, 100))
    bt = S.train_sae(batches, 6, "batchtopk", k=1, steps=20, lr=3e-3)
    assert bt.config.architecture == "jumprelu"
    with pytest.raises(ValueError, match="ran out after 2 batches"):
        S.train_sae(iter([x[:10], x[10:20]]), 6, "standard", steps=5)
    with pytest.raises(ValueError, match=r"batch 1 of the activation iterator is \(10, 3\)"):
        S.train_sae(iter([x[:10], x[:10, :3]]), 6, "standard", steps=5)


def test_saelens_reads_what_we_write_and_we_read_what_it_writes(sae_lens, tmp_path):
    from sae_lens import SAE
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    torch.manual_seed(0)
    x = torch.randn(20, 8)
    for theirs in (TopKSAE(TopKSAEConfig(d_in=8, d_sae=12, k=3)), JumpReLUSAE(JumpReLUSAEConfig(d_in=8, d_sae=12))):
        with torch.no_grad():
            for p in theirs.parameters():
                p.copy_(0.3 * torch.randn_like(p))
        theirs.save_model(tmp_path / theirs.cfg.architecture())
        ours = S.load_saelens(tmp_path / theirs.cfg.architecture())
        with torch.no_grad():
            torch.testing.assert_close(ours.encode(x), theirs.encode(x))
            torch.testing.assert_close(ours.decode(ours.encode(x)), theirs.decode(theirs.encode(x)))
        back = SAE.load_from_disk(S.save_saelens(ours, tmp_path / f"ours_{theirs.cfg.architecture()}"))
        with torch.no_grad():
            torch.testing.assert_close(back.encode(x), ours.encode(x))
