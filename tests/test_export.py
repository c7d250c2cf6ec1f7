"""export.py: a probe's direction as a llama.cpp control vector (GGUF), a steering-vectors
SteeringVector, and plain safetensors; the CLI's export command."""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from probe_disentangle import cli, export
from probe_disentangle.probe import Probe
from probe_disentangle.train import TrainConfig

HOOK = "transformer.h.1"  # the output of block 1 of a Hugging Face GPT-2 (module path)
LATENT, SCALE = 2, 2.0


@pytest.fixture(scope="module")
def gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=40, n_positions=32)
    return transformers.GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="module")
def probe(gpt2):
    """A probe with a linear decoder (additive, no hidden layer): dec(z) = b + z W, so adding
    ``s`` to latent k moves every activation by s·W_k (times the normaliser's std), which is what
    directions()[k] is (its central difference of a linear map is that same vector)."""
    g = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(0, 40, (8, 12), generator=g)} for _ in range(8)]
    p = Probe(gpt2, HOOK, head_config=dict(latent_dim=4, hidden=32, decoder="additive", decoder_hidden=0))
    p.fit(batches, TrainConfig(steps=10, batch_size=64, progress=False), buffer_size=256)
    return p


def _tokens():
    return torch.randint(0, 40, (3, 10), generator=torch.Generator().manual_seed(1))


def test_steering_vector_is_scaled_direction_row_and_checks_input(probe):
    v = export.steering_vector(probe, LATENT, SCALE)
    assert v.shape == (32,) and v.dtype == torch.float32
    torch.testing.assert_close(v, SCALE * probe.directions()[LATENT], rtol=0, atol=0)
    with pytest.raises(ValueError, match="out of range"):
        export.steering_vector(probe, 4, 1.0)
    with pytest.raises(TypeError, match="int index"):
        export.steering_vector(probe, True, 1.0)
    with pytest.raises(ValueError, match="finite"):
        export.steering_vector(probe, 0, float("nan"))


def test_block_layer_of_module_paths_and_transformer_lens_hooks(probe, gpt2, tiny_bridge):
    assert export.block_layer(probe) == 1
    assert probe.adapter.layer_of("transformer.h.0.mlp.c_fc") == 0
    assert probe.adapter.layer_of("transformer.wte") is None
    head = probe.head
    with pytest.raises(ValueError, match="not the block's output"):
        export.block_layer(Probe(gpt2, "transformer.h.1.attn", head=head))
    with pytest.raises(ValueError, match="not inside a transformer block"):
        export.block_layer(Probe(gpt2, "transformer.ln_f", head=head))
    assert export.block_layer(Probe(tiny_bridge, "blocks.2.hook_resid_post", head=head)) == 2
    assert export.block_layer(Probe(tiny_bridge, "blocks.2.hook_resid_pre", head=head)) == 1
    with pytest.raises(ValueError, match="residual stream after a block"):
        export.block_layer(Probe(tiny_bridge, "blocks.0.hook_resid_pre", head=head))
    with pytest.raises(ValueError, match="residual stream after a block"):
        export.block_layer(Probe(tiny_bridge, "blocks.1.hook_attn_out", head=head))


def test_gguf_reads_back_with_ggufs_own_reader(probe, tmp_path):
    gguf = pytest.importorskip("gguf")
    path = export.export_gguf(probe, tmp_path / "cvec.gguf", LATENT, SCALE)
    reader = gguf.GGUFReader(str(path))
    fields = {name: f.contents() for name, f in reader.fields.items() if not name.startswith("GGUF.")}
    assert fields["general.architecture"] == "controlvector"
    assert fields["controlvector.model_hint"] == "gpt2"
    assert fields["controlvector.layer_count"] == 1
    assert reader.fields["controlvector.layer_count"].types == [gguf.GGUFValueType.UINT32]
    assert [t.name for t in reader.tensors] == ["direction.1"]  # llama.cpp: added to block 1's output
    t = reader.tensors[0]
    assert t.tensor_type == gguf.GGMLQuantizationType.F32 and list(t.shape) == [32]
    torch.testing.assert_close(torch.from_numpy(t.data.copy()), export.steering_vector(probe, LATENT, SCALE))
    with pytest.raises(ValueError, match="refuses direction.0"):
        export.export_gguf(probe, tmp_path / "zero.gguf", LATENT, SCALE, layer=0)
    assert not (tmp_path / "zero.gguf").exists()


def test_steering_vector_changes_logits_exactly_as_probe_steer(probe, gpt2):
    """With the probe's linear decoder, steer(edits={k: ("add", s)}) writes a + std·(dec(z + s e_k)
    − dec(z)) = a + s·std·W_k = a + s·directions()[k] at every position (up to float rounding in
    the decoder's subtraction), which is what the SteeringVector adds to block 1's output. With an
    MLP decoder the two would differ (directions() is a central difference averaged over the
    reference codes, the edit is the decoder's change at each vector's own code)."""
    pytest.importorskip("steering_vectors")
    sv = export.to_steering_vector(probe, LATENT, SCALE)
    assert set(sv.layer_activations) == {1} and sv.layer_type == "decoder_block"
    toks = _tokens()
    with torch.no_grad():
        base = gpt2(input_ids=toks).logits
        with probe.steer(edits={LATENT: ("add", SCALE)}):
            steered = gpt2(input_ids=toks).logits
        with sv.apply(gpt2):
            exported = gpt2(input_ids=toks).logits
        after = gpt2(input_ids=toks).logits
    assert (steered - base).abs().max() > 1e-2  # the edit does something
    torch.testing.assert_close(exported, steered, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(after, base, rtol=0, atol=0)  # the context removed its hook


def test_steering_vector_file_round_trips(probe, tmp_path):
    pytest.importorskip("steering_vectors")
    path = export.export_steering_vector(probe, tmp_path / "sv.safetensors", LATENT, SCALE)
    sv = export.load_steering_vector(path)
    assert sv.layer_type == "decoder_block" and set(sv.layer_activations) == {1}
    torch.testing.assert_close(sv.layer_activations[1], export.steering_vector(probe, LATENT, SCALE))
    export.export_safetensors(probe, tmp_path / "plain.safetensors", LATENT, SCALE)
    with pytest.raises(ValueError, match="not layer_activations"):
        export.load_steering_vector(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a safetensors file"):
        export.load_steering_vector(tmp_path / "junk.safetensors")


def test_safetensors_export_holds_direction_and_metadata(probe, tmp_path):
    path = export.export_direction(probe, tmp_path / "d.safetensors", "safetensors", LATENT, SCALE)
    torch.testing.assert_close(load_file(str(path))["direction"], export.steering_vector(probe, LATENT, SCALE))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert (meta["hook"], meta["latent"], float(meta["scale"]), meta["layer"]) == (HOOK, "2", SCALE, "1")


def test_export_direction_dispatches_and_refuses_unknown_format(probe, tmp_path):
    pytest.importorskip("gguf")
    a = export.export_direction(probe, tmp_path / "a.gguf", "gguf", LATENT, SCALE)
    b = export.export_gguf(probe, tmp_path / "b.gguf", LATENT, SCALE)
    assert a.read_bytes() == b.read_bytes()
    s = export.export_direction(probe, tmp_path / "s.safetensors", "steering-vectors", LATENT, SCALE)
    assert set(load_file(str(s))) == {"layer_activations.1"}
    with pytest.raises(ValueError, match="unknown export format 'onnx'"):
        export.export_direction(probe, tmp_path / "x", "onnx", LATENT, SCALE)
    # layer= places the direction at another block (a hook that is not a block's output, on purpose)
    o = export.export_direction(probe, tmp_path / "o.safetensors", "steering-vectors", LATENT, SCALE, layer=3)
    assert set(load_file(str(o))) == {"layer_activations.3"}
    with pytest.raises(ValueError, match="block index ≥ 0"):
        export.export_direction(probe, tmp_path / "n.gguf", "gguf", LATENT, SCALE, layer=-1)
    with pytest.raises(ValueError, match="drop it for safetensors"):
        export.export_direction(probe, tmp_path / "n.safetensors", "safetensors", LATENT, SCALE, layer=1)


def test_model_hint_is_the_hf_model_type_else_the_class_name(gpt2):
    assert export.model_hint(gpt2) == "gpt2"
    assert export.model_hint(torch.nn.Linear(2, 2)) == "Linear"


def test_cli_export_writes_each_format(tmp_path, capsys):
    """export PROBE MODEL loads the probe with its model as `steer` does (TransformerLens host)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("transformer_lens")
    gguf = pytest.importorskip("gguf")
    from probe_disentangle.adapters import load_transformer

    folder = tmp_path / "gpt2"
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=30, n_positions=16)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
    host = load_transformer(str(folder), device="cpu").eval()
    g = torch.Generator().manual_seed(0)
    p = Probe(host, "blocks.1.hook_resid_post", head_config=dict(latent_dim=3, hidden=16))
    p.fit(
        [torch.randint(0, 30, (8, 10), generator=g) for _ in range(4)],
        TrainConfig(steps=3, batch_size=32, progress=False),
        buffer_size=64,
    )
    p.save_pretrained(tmp_path / "probe")
    run = ["export", str(tmp_path / "probe"), str(folder), "--latent", "1", "--scale", "-1.5", "--device", "cpu"]
    assert cli.main([*run, "--format", "gguf", "--out", str(tmp_path / "v.gguf")]) == 0
    reader = gguf.GGUFReader(str(tmp_path / "v.gguf"))
    assert [t.name for t in reader.tensors] == ["direction.1"]
    assert reader.fields["controlvector.model_hint"].contents() == "gpt2"  # the bridge's wrapped HF model
    expected = -1.5 * p.directions()[1]
    torch.testing.assert_close(torch.from_numpy(reader.tensors[0].data.copy()), expected, rtol=1e-5, atol=1e-6)
    assert "direction.1" in capsys.readouterr().out
    assert cli.main([*run, "--format", "safetensors", "--out", str(tmp_path / "v.safetensors")]) == 0
    torch.testing.assert_close(load_file(str(tmp_path / "v.safetensors"))["direction"], expected, rtol=1e-5, atol=1e-6)
    capsys.readouterr()
    assert cli.main([*run, "--latent", "7", "--format", "safetensors", "--out", str(tmp_path / "w")]) == 2
    assert "out of range" in capsys.readouterr().err


def test_missing_optional_packages_name_the_extra(probe, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf now raises ImportError
    monkeypatch.setitem(sys.modules, "steering_vectors", None)
    with pytest.raises(ImportError, match=r"probe-disentangle\[gguf\]"):
        export.export_gguf(probe, tmp_path / "v.gguf", LATENT, SCALE)
    with pytest.raises(ImportError, match=r"probe-disentangle\[steering\].*--no-deps steering-vectors"):
        export.to_steering_vector(probe, LATENT, SCALE)
    path = export.export_steering_vector(probe, tmp_path / "sv.safetensors", LATENT, SCALE)  # needs neither
    with pytest.raises(ImportError, match="steering"):
        export.load_steering_vector(path)
