"""Tiny host models built inside the tests (nothing downloads)."""

import os

# Triton reads TRITON_INTERPRET when it is first imported, and other tests import it indirectly
# (diffusers, SAELens): set it here, before any of them, so test_kernels runs on the CPU interpreter.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bridge():
    tl = pytest.importorskip("transformer_lens")
    cfg = tl.TransformerBridgeConfig(
        d_model=32, d_head=8, n_layers=3, n_ctx=16, n_heads=4, d_vocab=20, act_fn="gelu", seed=0
    )
    model = tl.TransformerBridge.boot_native(cfg)
    model.eval()
    return model


@pytest.fixture
def token_batches():
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 20, (8, 10), generator=g) for _ in range(12)]


@pytest.fixture(scope="session")
def hf_bridge(tmp_path_factory):
    """A tiny GPT-2 written to a temp folder and loaded through TransformerBridge.boot_transformers
    (its generate uses a KV cache: single-token forwards after the prompt)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("transformer_lens")
    from probe_disentangle.adapters import load_transformer

    path = tmp_path_factory.mktemp("gpt2-tiny")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=16, n_head=2, vocab_size=30, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    transformers.GPT2LMHeadModel(cfg).save_pretrained(path)
    return load_transformer(str(path), device="cpu").eval()


@pytest.fixture
def one_thread():
    """The test body on one intra-op thread, as the torchrun workers run: a reference fitted with
    another thread count may split its matrix products differently (AVX-512 kernels do at 2
    threads), which no data-parallel code can be asked to reproduce bit for bit."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
