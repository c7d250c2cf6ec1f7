import torch

from probe_disentangle import cli, io
from probe_disentangle.heads import VAEHead, VAEHeadConfig


def test_architectures_lists_the_registry(capsys):
    assert cli.main(["architectures"]) == 0
    out = capsys.readouterr().out
    assert "vae_head" in out and "infogan_head" in out


def test_info_reads_a_saved_head_and_reports_errors(tmp_path, capsys):
    torch.manual_seed(0)
    io.save(VAEHead(VAEHeadConfig(d_in=4, latent_dim=2, hidden=8)), tmp_path / "h")
    assert cli.main(["info", str(tmp_path / "h")]) == 0
    assert '"latent_dim": 2' in capsys.readouterr().out
    assert cli.main(["info", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err
