"""Save/load: exact round trip for every registered architecture; clear errors for broken files."""

import json

import pytest
import torch

from probe_disentangle import io, registry
from probe_disentangle.constants import CONFIG_FILE, WEIGHTS_FILE

# a tiny config for each registered architecture (a new architecture must add one here)
TINY = {
    "vae_head": {
        "d_in": 6,
        "latent_dim": 3,
        "hidden": 8,
        "objective": "factor_vae",
        "objective_args": {"disc_hidden": 8, "disc_depth": 1},
    },
    "infogan_head": {"d_in": 6, "noise_dim": 2, "categorical": [3], "continuous": 1, "hidden": 8},
    "joint_vae_head": {"d_in": 6, "categorical": [3, 2], "continuous": 1, "hidden": 8},
    "causal_vae_head": {"d_in": 6, "latent_dim": 3, "hidden": 8, "depth": 1},
    "conv_vae": {
        "image_size": 16,
        "latent_dim": 2,
        "channels": [2, 2],
        "hidden": 4,
        "objective": "factor_vae",
        "objective_args": {"disc_hidden": 4, "disc_depth": 1},
    },
    "infogan": {
        "image_size": 8,
        "noise_dim": 2,
        "categorical": [3],
        "continuous": 1,
        "width": 2,
        "hidden": 4,
        "q_hidden": 4,
    },
    "sae_head": {"d_in": 6, "d_sae": 8, "sae_architecture": "topk", "k": 2, "hook_name": "blocks.0.hook_resid_post"},
    "prefix_code": {"d_in": 6, "vocab": 5, "n_pos": 4, "latent_dim": 2, "hidden": 8, "emb": 2},
    "ddpm_unet": {
        "sample_size": 8,
        "block_out_channels": [4, 8],
        "norm_num_groups": 4,
        "attention_head_dim": 4,
        "num_train_timesteps": 10,
    },
}


def _build(name):
    cls, cfg_cls = registry.get(name)
    torch.manual_seed(0)
    return cls(cfg_cls(**TINY[name]))


def test_every_architecture_has_a_tiny_config():
    assert set(registry.names()) <= set(TINY), "add a tiny config for the new architecture to TINY"


@pytest.mark.parametrize("name", sorted(TINY))
def test_round_trip_is_exact(name, tmp_path):
    obj = _build(name)
    io.save(obj, tmp_path / "m")
    back = io.load(tmp_path / "m")
    assert type(back) is type(obj) and back.config == obj.config
    sd, sd2 = obj.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    meta = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    assert meta["architecture"] == name and "probe_disentangle_version" in meta


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        io.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=CONFIG_FILE):
        io.load(tmp_path / "empty")
    io.save(_build("vae_head"), tmp_path / "m")
    (tmp_path / "m" / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        io.load(tmp_path / "m")


def test_truncated_and_tampered_weights(tmp_path):
    io.save(_build("vae_head"), tmp_path / "m")
    w = tmp_path / "m" / WEIGHTS_FILE
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        io.load(tmp_path / "m")
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF
    w.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="altered"):
        io.load(tmp_path / "m")


def test_broken_config(tmp_path):
    io.save(_build("vae_head"), tmp_path / "m")
    cfg = tmp_path / "m" / CONFIG_FILE
    text = cfg.read_text()
    cfg.write_text(text[:20])
    with pytest.raises(ValueError, match="not valid JSON"):
        io.load(tmp_path / "m")
    meta = json.loads(text)
    meta["architecture"] = "mystery"
    cfg.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown architecture 'mystery'"):
        io.load(tmp_path / "m")
    meta = json.loads(text)
    meta["config"]["wingspan"] = 3
    cfg.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="wingspan"):
        io.load(tmp_path / "m")


def test_shape_mismatch_names_both_shapes(tmp_path):
    io.save(_build("vae_head"), tmp_path / "m")
    cfg = tmp_path / "m" / CONFIG_FILE
    meta = json.loads(cfg.read_text())
    meta["config"]["hidden"] = 9
    del meta["files"]  # a hand-edited config without checksums still loads, but shapes must fit
    cfg.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"shape mismatch.*file has \(8,\).*builds \(9,\)"):
        io.load(tmp_path / "m")


def test_failed_save_keeps_the_previous_one(tmp_path, monkeypatch):
    obj = _build("vae_head")
    io.save(obj, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "fsync", boom)
    with torch.no_grad():
        next(obj.parameters()).add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        io.save(obj, tmp_path / "m")
    after = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    assert after == before  # no temp files left, nothing half-written
    io.load(tmp_path / "m")


def test_load_never_unpickles(tmp_path):
    # a pickle stream disguised as the weights file is rejected, not executed
    pickled = b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01x\x94K\x01s."  # {"x": 1}, protocol 4

    io.save(_build("vae_head"), tmp_path / "m")
    meta = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    del meta["files"]
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps(meta))
    (tmp_path / "m" / WEIGHTS_FILE).write_bytes(pickled)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        io.load(tmp_path / "m")


def test_a_config_declaring_a_huge_width_fails_at_once_and_builds_nothing(tmp_path, monkeypatch):
    # an edited config.json must not make load() allocate what it declares before the weights
    # are checked (d_in = 10¹² would ask for 32 TB)
    io.save(_build("vae_head"), tmp_path / "m")
    cfg = tmp_path / "m" / CONFIG_FILE
    meta = json.loads(cfg.read_text())
    cls, _ = registry.get("vae_head")
    built = []  # the device of each module load() builds
    orig_init = cls.__init__

    def spy(self, *a, **k):
        orig_init(self, *a, **k)
        built.append(next(self.parameters()).device.type)

    monkeypatch.setattr(cls, "__init__", spy)
    for width in (3_000_000, 10**12):
        meta["config"]["d_in"] = width
        cfg.write_text(json.dumps(meta))
        built.clear()
        with pytest.raises(
            ValueError, match=rf"config\.json: shape mismatch for 'decoder\.4\.bias': file has \(6,\).*\({width},\)"
        ):
            io.load(tmp_path / "m")
        assert all(d == "meta" for d in built), built  # nothing was allocated for real
    meta["config"]["d_in"] = 6
    cfg.write_text(json.dumps(meta))
    assert io.load(tmp_path / "m").config.d_in == 6


def test_checksum_errors_name_the_file_that_holds_the_checksum(tmp_path):
    from probe_disentangle.constants import CHECKPOINT_META_FILE, CHECKPOINT_STATE_FILE, PROBE_FILE, PROBE_TENSORS_FILE

    blob = io.tensors_to_bytes({"x": torch.ones(3)})
    wrong = {"sha256": "0" * 64}
    for name, holder in (
        (WEIGHTS_FILE, CONFIG_FILE),
        (PROBE_TENSORS_FILE, PROBE_FILE),
        (CHECKPOINT_STATE_FILE, CHECKPOINT_META_FILE),
    ):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ValueError, match="checksum") as err:
            io.load_tensors(tmp_path / name, wrong)
        others = {CONFIG_FILE, PROBE_FILE, CHECKPOINT_META_FILE} - {holder}
        assert holder in str(err.value) and not any(o in str(err.value) for o in others), str(err.value)
    with pytest.raises(ValueError, match="custom.json"):
        io.load_tensors(tmp_path / WEIGHTS_FILE, wrong, checksum_file="custom.json")


def test_no_space_left_names_the_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    import errno

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    target = tmp_path / "w.bin"
    with pytest.raises(OSError, match="No space left") as err:
        io.atomic_write_bytes(target, b"x" * 100)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert str(target) in str(err.value)
    assert list(tmp_path.iterdir()) == []
