import pytest
import torch
from torch import nn

from probe_disentangle import hosts


class Counter(nn.Module):
    """Logits that make token (last + 1) % V certain: a known-answer host for generation."""

    def __init__(self, vocab: int = 7) -> None:
        super().__init__()
        self.vocab = vocab
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, tokens):
        nxt = (tokens + 1) % self.vocab
        return torch.nn.functional.one_hot(nxt, self.vocab).float() * 50.0 + self.w


def test_generate_follows_a_certain_model_and_stops_at_eos():
    out = hosts.generate(Counter(), torch.tensor([[0], [3]]), max_new_tokens=10, eos_id=5, pad_id=6)
    # row 0 counts 1..5 and then pads; row 1 reaches eos first and waits padded
    assert out[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert out[1].tolist() == [3, 4, 5, 6, 6, 6]
    greedy = hosts.generate(Counter(), torch.tensor([[2]]), max_new_tokens=3, temperature=0)
    assert greedy.tolist() == [[2, 3, 4, 5]]


def test_generate_is_seeded(tiny_bridge):
    prompt = torch.tensor([[1, 2, 3]] * 4)
    a = hosts.generate(tiny_bridge, prompt, 8, seed=1)
    assert torch.equal(a, hosts.generate(tiny_bridge, prompt, 8, seed=1))
    assert not torch.equal(a, hosts.generate(tiny_bridge, prompt, 8, seed=2))
    assert torch.equal(a[:, :3], prompt)


def test_read_tokens_and_batches(tmp_path):
    from safetensors.torch import save_file

    t = torch.arange(12).view(4, 3)
    save_file({"tokens": t}, str(tmp_path / "t.safetensors"))
    assert torch.equal(hosts.read_tokens(tmp_path / "t.safetensors"), t)
    save_file({"ids": t}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ValueError, match="not 'tokens'"):
        hosts.read_tokens(tmp_path / "wrong.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a safetensors file"):
        hosts.read_tokens(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError):
        hosts.read_tokens(tmp_path / "missing.safetensors")
    b = hosts.batches({"tokens": t, "attention_mask": torch.ones_like(t)}, 3)
    assert [len(x["tokens"]) for x in b] == [3, 1] and set(b[0]) == {"tokens", "attention_mask"}


def test_encode_lines_pads_and_masks(tmp_path):
    host = hosts.Host(nn.Linear(1, 1), "toy", lambda s: [len(w) for w in s.split()], None, None, None, pad_id=0)
    (tmp_path / "d.txt").write_text("ab c\n\n  d e fgh ij \n")
    data = hosts.encode_lines(host, tmp_path / "d.txt", seq_len=3)
    assert data["tokens"].tolist() == [[2, 1, 0], [1, 1, 3]]
    assert data["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
