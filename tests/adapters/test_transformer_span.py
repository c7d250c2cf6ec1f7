import pytest
import torch


def test_span_layout_reads_and_edits_the_span_only(tiny_bridge):
    """span=(1, 4): one vector per sequence, positions 1..3 concatenated; an edit rewrites exactly
    those positions, and forwards too short to hold the span pass through untouched."""
    from probe_disentangle.adapters import attach

    tokens = torch.randint(0, 20, (5, 8), generator=torch.Generator().manual_seed(0))
    plain = attach(tiny_bridge)
    span = attach(tiny_bridge, "blocks.0.hook_resid_post", span=(1, 4))
    full = plain.collect(tokens, "blocks.0.hook_resid_post")
    acts = span.collect(tokens, "blocks.0.hook_resid_post")
    d = full.vectors.shape[1]
    assert acts.vectors.shape == (5, 3 * d)
    per_pos = full.vectors.view(5, 7, d)  # BOS excluded: row p holds position p + 1
    assert torch.equal(acts.vectors, per_pos[:, :3].reshape(5, -1))
    assert acts.index.tolist() == [[r, 1] for r in range(5)]

    seen = []
    with span.edit("blocks.0.hook_resid_post", lambda v: v + 1.0), plain.hook("blocks.0.hook_resid_post", seen.append):
        tiny_bridge(tokens)
        tiny_bridge(tokens[:, :3])  # shorter than the span: unchanged
    with plain.hook("blocks.0.hook_resid_post", seen.append):
        tiny_bridge(tokens)
        tiny_bridge(tokens[:, :3])
    edited, short, ref, ref_short = seen
    diff = edited - ref
    assert torch.allclose(diff[:, 1:4], torch.ones_like(diff[:, 1:4]))
    assert torch.equal(diff[:, 0], torch.zeros_like(diff[:, 0])) and torch.equal(
        diff[:, 4:], torch.zeros_like(diff[:, 4:])
    )
    assert torch.equal(short, ref_short)
    assert span.live_hooks == 0 and plain.live_hooks == 0


def test_span_rejects_bad_spans_and_short_data(tiny_bridge):
    from probe_disentangle.adapters import attach

    with pytest.raises(ValueError, match="includes BOS"):
        attach(tiny_bridge, span=(0, 3))
    with pytest.raises(ValueError, match="start < stop"):
        attach(tiny_bridge, span=(3, 3))
    span = attach(tiny_bridge, span=(1, 6))
    with pytest.raises(ValueError, match="shorter than the span"):
        span.collect(torch.zeros(2, 4, dtype=torch.long), "blocks.0.hook_resid_post")
    batch = {"tokens": torch.zeros(2, 8, dtype=torch.long), "attention_mask": torch.ones(2, 8, dtype=torch.long)}
    batch["attention_mask"][1, 5:] = 0
    with pytest.raises(ValueError, match="padding inside the span"):
        span.collect(batch, "blocks.0.hook_resid_post")
