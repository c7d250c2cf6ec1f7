"""The Hugging Face hub layout: save_pretrained's README.md model card (its front matter and
content; loading never reads it), and from_pretrained with a hub id already in a local cache
folder written here (offline: with huggingface_hub's own lookup and without it)."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch

from probe_disentangle import hub
from probe_disentangle.heads import VAEHead, VAEHeadConfig
from probe_disentangle.probe import Probe

COMMIT_A, COMMIT_B = "a" * 40, "0123456789abcdef0123456789abcdef01234567"


class Host(torch.nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.layer = torch.nn.Linear(d, d)

    def forward(self, x):
        return self.layer(x)


def make_probe(seed=0, host=None):
    torch.manual_seed(seed)
    head = VAEHead(VAEHeadConfig(d_in=4, latent_dim=2, hidden=8, objective="beta_vae"))
    return Probe(host if host is not None else Host(), "layer", head=head)


def front_matter(card):
    yaml = pytest.importorskip("yaml")
    assert card.startswith("---\n")
    head, _, body = card[4:].partition("\n---\n")
    return yaml.safe_load(head), body


def test_the_card_holds_hook_host_head_and_metrics(tmp_path):
    probe = make_probe()
    probe.metrics = {"mig.discrete_mig": 0.4132, "dci.disentanglement": 0.5}
    folder = probe.save_pretrained(tmp_path / "p")
    meta, body = front_matter((folder / "README.md").read_text())
    assert meta["library_name"] == "probe_disentangle"
    assert {"probe_disentangle", "interpretability", "disentanglement", "steering", "vae_head"} <= set(meta["tags"])
    assert "base_model" not in meta  # a host built from a config has no hub name
    assert "`layer`" in body and f"{Host.__module__}.Host" in body
    assert "| latents | 2 |" in body and "| activation width | 4 |" in body
    assert '"latent_dim": 2' in body and '"objective": "beta_vae"' in body  # the head config, as JSON
    assert "| mig.discrete_mig | 0.4132 |" in body and "| dci.disentanglement | 0.5 |" in body
    saved = json.loads((folder / "probe.json").read_text())
    assert saved["metrics"] == probe.metrics and saved["host"]["name"] is None
    assert "README.md" not in saved["files"]  # the card is not part of what loading checks


def test_a_named_host_becomes_base_model_and_no_metrics_say_so(tmp_path):
    transformers = pytest.importorskip("transformers")
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10))
    gpt2.config._name_or_path = "openai-community/gpt2"
    probe = Probe(gpt2, "transformer.h.0", head=VAEHead(VAEHeadConfig(d_in=8, latent_dim=2, hidden=8)))
    meta, body = front_matter((probe.save_pretrained(tmp_path / "p") / "README.md").read_text())
    assert meta["base_model"] == "openai-community/gpt2"
    assert "`openai-community/gpt2`" in body and "GPT2LMHeadModel" in body
    assert "None recorded" in body
    assert hub.host_description(gpt2) == {
        "name": "openai-community/gpt2",
        "class": "transformers.models.gpt2.modeling_gpt2.GPT2LMHeadModel",
    }


def test_loading_does_not_depend_on_the_card_and_metrics_round_trip(tmp_path):
    probe = make_probe()
    probe.metrics = {"mig": 0.25}
    folder = probe.save_pretrained(tmp_path / "p")
    (folder / "README.md").write_text("edited on the hub by hand")
    again = Probe.from_pretrained(folder, probe.adapter.model)
    assert again.metrics == {"mig": 0.25}
    (folder / "README.md").unlink()
    x = torch.randn(3, 4)
    torch.testing.assert_close(Probe.from_pretrained(folder, probe.adapter.model).encode(x), probe.encode(x))
    (folder / "README.md").write_text("a stale card")
    probe.save_pretrained(folder)  # a folder holding a card is a previous save: replaced whole
    assert (folder / "README.md").read_text().startswith("---\nlibrary_name: probe_disentangle\n")
    probe.metrics = {"mig": np.float32(0.5), "explicitness_test": float("nan"), "n": 3}  # NaN: undefined
    folder = probe.save_pretrained(tmp_path / "q")
    assert Probe.from_pretrained(folder, probe.adapter.model).metrics == {"mig": 0.5, "explicitness_test": None, "n": 3}
    assert "| explicitness_test | — |" in (folder / "README.md").read_text()
    probe.metrics = {"mig": "high"}
    with pytest.raises(TypeError, match="metric 'mig' must be a number, got 'high'"):
        probe.save_pretrained(tmp_path / "q")
    probe.metrics = [0.3]
    with pytest.raises(TypeError, match="metrics must be a mapping"):
        probe.save_pretrained(tmp_path / "q")


def write_cache(cache, repo_id, commits, refs):
    """A hub cache as huggingface_hub lays it out: files in blobs/ by content, each snapshot a tree
    of relative links into blobs/, refs/<name> holding a commit hash."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for commit, folder in commits.items():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder)
            blob = repo / "blobs" / f"{hash(path.read_bytes()) & (1 << 60) - 1:x}"
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, blob)
            link = repo / "snapshots" / commit / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    for name, commit in refs.items():
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / name).write_text(commit)
    return repo


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Two versions of one probe in a cache folder: main → commit A (seed 0), v2 → commit B (seed 1)."""
    a, b = make_probe(0), make_probe(1)
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    cache = tmp_path / "cache"
    write_cache(
        cache, "org/probe", {COMMIT_A: tmp_path / "a", COMMIT_B: tmp_path / "b"}, {"main": COMMIT_A, "v2": COMMIT_B}
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # "org/probe" is no local folder here
    return cache, a, b


@pytest.fixture(params=["huggingface_hub", "layout"])
def lookup(request, monkeypatch):
    """Each test twice: with huggingface_hub's own offline lookup, and reading the layout without it."""
    if request.param == "huggingface_hub":
        pytest.importorskip("huggingface_hub")
    else:
        monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # `import huggingface_hub` now fails
    return request.param


def test_a_hub_id_in_the_cache_loads_at_each_revision(cache, lookup, monkeypatch):
    _, a, b = cache
    calls = []
    if lookup == "huggingface_hub":  # its own lookup answers, offline
        import huggingface_hub

        real = huggingface_hub.snapshot_download
        monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: calls.append(k) or real(*a, **k))
    x = torch.randn(5, 4)
    host = Host()
    torch.testing.assert_close(Probe.from_pretrained("org/probe", host).encode(x), a.encode(x))
    torch.testing.assert_close(Probe.from_pretrained("org/probe", host, revision="v2").encode(x), b.encode(x))
    torch.testing.assert_close(Probe.from_pretrained("org/probe", host, revision=COMMIT_B).encode(x), b.encode(x))
    assert hub.cached_snapshot("org/probe").name == COMMIT_A
    assert all(c["local_files_only"] for c in calls) and len(calls) == (4 if lookup == "huggingface_hub" else 0)


def test_an_id_not_in_the_cache_says_how_to_download_it(cache, lookup, monkeypatch):
    with pytest.raises(
        FileNotFoundError,
        match=r"'org/missing' is not a local folder.*`hf download org/missing`.*huggingface-cli download org/missing",
    ):
        Probe.from_pretrained("org/missing", Host())
    with pytest.raises(
        FileNotFoundError,
        match=r"revision 'v9'.*hf download org/probe --revision v9.*snapshot_download\('org/probe', revision='v9'\)",
    ):
        Probe.from_pretrained("org/probe", Host(), revision="v9")
    # the cache is read from the environment when loading, HF_HOME too
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(cache[0].parent / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        Probe.from_pretrained("org/probe", Host())


def test_local_folders_win_and_revision_is_only_for_hub_ids(cache, tmp_path):
    _, a, _ = cache
    (tmp_path / "org").mkdir()
    a.save_pretrained(tmp_path / "org" / "probe")  # a local folder spelled like the id
    x = torch.randn(2, 4)
    torch.testing.assert_close(Probe.from_pretrained("org/probe", Host()).encode(x), a.encode(x))
    with pytest.raises(ValueError, match="is a local folder; drop revision"):
        Probe.from_pretrained("org/probe", Host(), revision="v2")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        Probe.from_pretrained("no/such/folder", Host())
    assert hub.is_repo_id("org/name-1.0") and not hub.is_repo_id("a/b/c") and not hub.is_repo_id("../x")
