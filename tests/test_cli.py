import json

import pytest
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


def test_fit_eval_steer_on_the_shipped_lm(tmp_path, capsys):
    """The user workflow end to end on the shipped factor LM: fit saves a loadable probe, eval
    scores it against the true factors, steer prints unsteered and traversed generations."""
    pytest.importorskip("transformer_lens")
    out = tmp_path / "probe"
    common = ["--sequences", "600", "--no-progress"]
    args = ["fit", "factor_lm", "--hook", "blocks.1.hook_resid_post", "--out", str(out), "--steps", "20"]
    assert cli.main([*args, "--latents", "4", "--batch-size", "256", "--tc-batch", "64", *common]) == 0
    assert (out / "probe.json").is_file() and (out / "directions.safetensors").is_file()
    assert "fitted beta_tcvae head (4 latents)" in capsys.readouterr().out
    assert json.loads((out / "head" / "config.json").read_text())["config"]["objective_args"]["tc_batch"] == 64
    # refusing to overwrite keeps the saved probe intact
    before = (out / "directions.safetensors").read_bytes()
    assert cli.main([*args, *common]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "directions.safetensors").read_bytes() == before

    assert cli.main(["eval", str(out), "factor_lm", "--sequences", "400", "--max-vectors", "2000"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["vectors"] == 2000 and len(report["kl_per_latent"]) == 4
    assert 0 < report["explained_variance"] <= 1
    assert 0 <= report["supervised"]["mig.discrete_mig"] <= 1
    assert "against the true factors" in capsys.readouterr().out
    # the HTML page beside eval.json: the heat map, every factor, a traversal per factor, the PCA baseline
    from probe_disentangle.zoo import load_factor_lm

    names = load_factor_lm()[1].factor_names
    assert report["factor_names"] == list(names) and len(report["mutual_information"]) == 4
    assert [t["factor"] for t in report["traversals"]] == list(names)
    assert all(len(t["samples"]) == 5 for t in report["traversals"]) and "pca" in report["baselines"]
    page = (out / "eval.html").read_text()
    assert page.count('class="heat-map"') == 1 and page.count('class="traversal"') == len(names)
    assert "<script" not in page and all(n in page for n in (*names, "z0", "z3", "against pca"))

    steer = ["steer", str(out), "factor_lm", "--prompt", "#red", "--max-new-tokens", "6", "--temperature", "0"]
    assert cli.main([*steer, "--traverse", "0", "--values=-3,3"]) == 0
    printed = capsys.readouterr().out
    assert "[unsteered]" in printed and "[z0 = -3.00]" in printed and "[z0 = +3.00]" in printed
    assert cli.main([*steer, "--set", "7=1"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert cli.main([*steer, "--set", "x"]) == 2
    assert "LATENT=VALUE" in capsys.readouterr().err


def test_fit_and_eval_from_token_and_label_files(tmp_path, capsys):
    """A model without a tokenizer, from a local folder: tokens and labels come as safetensors."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("transformer_lens")
    from safetensors.torch import save_file

    folder = tmp_path / "gpt2"
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=30, n_positions=16)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 30, (64, 12), generator=g)
    save_file({"tokens": tokens}, str(tmp_path / "tokens.safetensors"))
    out = tmp_path / "probe"
    fit = ["fit", str(folder), "--hook", "blocks.0.hook_resid_post", "--out", str(out), "--device", "cpu"]
    assert (
        cli.main(
            [
                *fit,
                "--tokens",
                str(tmp_path / "tokens.safetensors"),
                "--steps",
                "5",
                "--batch-size",
                "64",
                "--latents",
                "3",
                "--hidden",
                "16",
                "--no-progress",
            ]
        )
        == 0
    )
    factors = torch.stack([tokens[:, -1] % 3, tokens[:, -1] % 2], 1)  # known from the last token
    save_file({"tokens": tokens, "factors": factors}, str(tmp_path / "labels.safetensors"))
    ev = ["eval", str(out), str(folder), "--tokens", str(tmp_path / "tokens.safetensors"), "--device", "cpu"]
    trav = ["--traversal-values=-1,0,1", "--traversal-tokens", "4"]
    assert cli.main([*ev, "--labels", str(tmp_path / "labels.safetensors"), *trav]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["vectors"] == 64 * 11  # BOS position excluded
    assert "mig.discrete_mig" in report["supervised"]
    assert [t["factor"] for t in report["traversals"]] == ["factor 0", "factor 1"]
    for t in report["traversals"]:  # 4 token ids generated per value, the latent set to each value
        assert [r["value"] for r in t["samples"]] == [-1.0, 0.0, 1.0]
        assert all(len(r["text"].split()) == 4 for r in t["samples"])
    page = (out / "eval.html").read_text()
    assert "factor 0" in page and "factor 1" in page and page.count('class="traversal"') == 2
    # without labels: no heat map, the latents of highest KL are traversed
    assert cli.main([*ev, *trav, "--out", str(tmp_path / "plain.json")]) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert len(plain["traversals"]) == 3 and {t["factor"] for t in plain["traversals"]} == {None}
    assert 'class="heat-map"' not in (tmp_path / "plain.html").read_text()
    capsys.readouterr()
    assert cli.main([*ev, "--traversal-values", "a,b"]) == 2
    assert "--traversal-values" in capsys.readouterr().err
    # clear errors: no tokenizer for --text, a float token file, no data at all
    (tmp_path / "t.txt").write_text("hello\n")
    assert cli.main([*fit, "--overwrite", "--text", str(tmp_path / "t.txt")]) == 2
    assert "has no tokenizer" in capsys.readouterr().err
    save_file({"tokens": tokens.float()}, str(tmp_path / "bad.safetensors"))
    assert cli.main([*fit, "--overwrite", "--tokens", str(tmp_path / "bad.safetensors")]) == 2
    assert "integer tensor" in capsys.readouterr().err
    assert cli.main([*fit, "--overwrite"]) == 2
    assert "no data" in capsys.readouterr().err


def test_fit_a_joint_head_on_a_span(tmp_path, capsys):
    pytest.importorskip("transformer_lens")
    out = tmp_path / "plan"
    args = ["fit", "factor_lm", "--hook", "blocks.0.hook_resid_pre", "--out", str(out), "--steps", "5"]
    args += ["--categorical", "3,2", "--latents", "1", "--span", "1,10", "--sequences", "300", "--no-progress"]
    assert cli.main([*args, "--tc-batch", "32"]) == 2
    assert "--tc-batch applies to the beta_tcvae objective of a Gaussian head" in capsys.readouterr().err
    assert cli.main([*args, "--batch-size", "64", "--decoder", "additive", "--decoder-hidden", "0"]) == 0
    assert "joint VAE head (2 categorical + 1 Gaussian latents)" in capsys.readouterr().out
    meta = json.loads((out / "probe.json").read_text())
    assert meta["architecture"] == "joint_vae_head" and meta["adapter_options"]["span"] == [1, 10]
    assert meta["d_in"] == 9 * 64 and meta["latent_dim"] == 3
    head_config = json.loads((out / "head" / "config.json").read_text())["config"]
    assert head_config["decoder"] == "additive" and head_config["decoder_hidden"] == 0
    # eval reads the span vectors, from the world and from a label file (positions are refused)
    from safetensors.torch import save_file

    from probe_disentangle import metrics
    from probe_disentangle.probe import Probe
    from probe_disentangle.zoo import load_factor_lm

    model, world = load_factor_lm()
    factors, tokens = world.sample(200, 5)
    save_file({"tokens": torch.from_numpy(tokens), "factors": torch.from_numpy(factors)}, str(tmp_path / "l.st"))
    ev = ["eval", str(out), "factor_lm", "--sequences", "200", "--labels", str(tmp_path / "l.st")]
    assert cli.main([*ev, "--tokens", str(tmp_path / "l.st")]) == 0
    report = json.loads((out / "eval.json").read_text())
    probe = Probe.from_pretrained(out, model)
    codes = probe.encode(probe.adapter.collect(torch.from_numpy(tokens), probe.hook).vectors).numpy()
    expected = metrics.evaluate(codes, factors, fast=True)
    assert report["supervised"]["mig.discrete_mig"] == pytest.approx(expected["mig.discrete_mig"])
    assert cli.main([*ev, "--tokens", str(tmp_path / "l.st")[:-3] + "x"]) == 2  # missing token file
    save_file(
        {"tokens": torch.from_numpy(tokens), "factors": torch.from_numpy(factors), "positions": torch.zeros(200)},
        str(tmp_path / "p.st"),
    )
    capsys.readouterr()
    assert cli.main([*ev[:-1], str(tmp_path / "p.st"), "--tokens", str(tmp_path / "l.st")]) == 2
    assert "drop the positions" in capsys.readouterr().err
    assert cli.main([*args, "--overwrite", "--span", "1"]) == 2
    assert "START,STOP" in capsys.readouterr().err
    assert cli.main([*args, "--overwrite", "--categorical", "a,b"]) == 2
    assert "sizes" in capsys.readouterr().err


def test_demo_refuses_zero_restarts(capsys):
    assert cli.main(["demo", "--restarts", "0", "--out", "unused"]) == 2
    assert "--restarts must be ≥ 1" in capsys.readouterr().err
    assert cli.main(["demo", "--joint-steps", "0", "--out", "unused"]) == 2
    assert "--no-joint skips the joint head" in capsys.readouterr().err
    assert cli.main(["demo", "--n-interchange", "-1", "--out", "unused"]) == 2
    assert "0 skips the interchange evaluation" in capsys.readouterr().err


def test_fit_and_steer_a_per_token_sequence_head(tmp_path, capsys):
    """`fit --condition token,position` fits a prefix-code head (one vector per token), `--pairs`
    the pair-supervised one; `steer` then edits every position of the generation."""
    pytest.importorskip("transformer_lens")
    import numpy as np
    import safetensors.torch
    import torch

    from probe_disentangle.hosts import load_host

    out = tmp_path / "seq"
    base = ["fit", "factor_lm", "--hook", "blocks.1.hook_resid_post", "--steps", "15", "--latents", "4"]
    common = ["--sequences", "300", "--no-progress", "--batch-size", "512"]
    assert cli.main([*base, "--out", str(out), "--condition", "token,position", *common]) == 0
    assert "unsupervised" in capsys.readouterr().out
    meta = json.loads((out / "config.json").read_text())
    assert meta["architecture"] == "prefix_code" and meta["kind"] == "sequence"
    assert meta["hook"] == "blocks.1.hook_resid_post" and meta["config"]["latent_dim"] == 4
    assert cli.main([*base, "--out", str(out), "--condition", "token,position", *common]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "x"), "--condition", "token", *common]) == 2
    assert "token,position" in capsys.readouterr().err

    world = load_host("factor_lm").world
    rng = np.random.default_rng(0)
    fa = world.sample_factors(100, rng)
    fb = fa.copy()
    fb[:, 0] = (fb[:, 0] + 1) % world.factor_sizes[0]
    pairs = tmp_path / "pairs.safetensors"
    safetensors.torch.save_file({k: torch.as_tensor(world.render(f)).long() for k, f in (("a", fa), ("b", fb))}, pairs)
    assert cli.main([*base, "--out", str(tmp_path / "pairs"), "--pairs", str(pairs), *common]) == 0
    assert "pair-supervised" in capsys.readouterr().out
    bad = tmp_path / "bad.safetensors"
    safetensors.torch.save_file({"tokens": torch.zeros(2, 3, dtype=torch.long)}, bad)
    assert cli.main([*base, "--out", str(tmp_path / "bad"), "--pairs", str(bad), *common]) == 2
    assert "'a' and 'b'" in capsys.readouterr().err

    steer = ["steer", str(out), "factor_lm", "--prompt", "#red", "--max-new-tokens", "6", "--temperature", "0"]
    assert cli.main([*steer, "--traverse", "1", "--values=-3,3"]) == 0
    printed = capsys.readouterr().out
    assert "[unsteered]" in printed and "[z1 = +3.00]" in printed
    assert cli.main([*steer, "--add", "0=2"]) == 0
    assert cli.main([*steer, "--set", "9=1"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert cli.main([*steer, "--knob", "0=0"]) == 2  # 15 steps: every latent still at the prior, no knobs
    assert "holds no knobs" in capsys.readouterr().err

    # restarts, one kept without labels (onset purity), and the knobs saved with the head
    out2 = tmp_path / "seq2"
    longer = ["fit", "factor_lm", "--hook", "blocks.1.hook_resid_post", "--steps", "300", "--latents", "6"]
    assert cli.main([*longer, "--out", str(out2), "--condition", "token,position", "--restarts", "2", *common]) == 0
    printed = capsys.readouterr().out
    assert "of 2 restarts (onset purity" in printed and "knob 0: latents" in printed
    meta = json.loads((out2 / "config.json").read_text())
    assert [r["seed"] for r in meta["restarts"]] == [0, 1] and sum(r["chosen"] for r in meta["restarts"]) == 1
    n_settings = len(meta["knobs"]["settings"][0])
    steer2 = ["steer", str(out2), "factor_lm", "--prompt", "", "--max-new-tokens", "12", "--temperature", "0"]
    assert cli.main([*steer2, "--traverse-knob", "0"]) == 0
    printed = capsys.readouterr().out
    assert all(f"[knob 0 at setting {s}]" in printed for s in range(n_settings))
    assert cli.main([*steer2, "--knob", "0=0"]) == 0
    assert "[knobs 0=0]" in capsys.readouterr().out
    assert cli.main([*steer2, "--knob", "0=99"]) == 2
    assert "settings 0.." in capsys.readouterr().err
    assert cli.main([*steer2, "--knob", "zero"]) == 2
    assert "KNOB=SETTING" in capsys.readouterr().err
    assert (
        cli.main([*longer, "--out", str(tmp_path / "r0"), "--condition", "token,position", "--restarts", "0", *common])
        == 2
    )


def test_fit_several_hooks_saves_a_probe_per_hook_equal_to_single_hook_fits(tmp_path, capsys):
    """`fit --hook A --hook B`: one folder per hook under --out (named by the hook), each the probe
    a single-hook `fit` gives with the same arguments."""
    pytest.importorskip("transformer_lens")
    from probe_disentangle import Probe
    from probe_disentangle.hosts import load_host

    hooks = ["blocks.2.hook_resid_post", "blocks.0.hook_resid_post"]
    common = ["--steps", "6", "--latents", "3", "--hidden", "32", "--batch-size", "128", "--sequences", "120"]
    common += ["--host-batch", "40", "--buffer", "512", "--no-progress"]
    out = tmp_path / "probes"
    assert cli.main(["fit", "factor_lm", "--hook", hooks[0], "--hook", hooks[1], "--out", str(out), *common]) == 0
    text = capsys.readouterr().out
    model = load_host("factor_lm").model
    for h in hooks:
        assert f"at {h} of factor_lm: 6 steps" in text and f"saved probe to {out / h}" in text
        assert cli.main(["fit", "factor_lm", "--hook", h, "--out", str(tmp_path / "single" / h), *common]) == 0
        a, b = (Probe.from_pretrained(d, model) for d in (out / h, tmp_path / "single" / h))
        sa, sb = a.head.state_dict(), b.head.state_dict()
        assert a.hook == h and all(torch.equal(sa[k], sb[k]) for k in sa)
    capsys.readouterr()
    assert cli.main(["fit", "factor_lm", "--hook", hooks[0], "--hook", hooks[1], "--out", str(out), *common]) == 2
    assert "already holds a probe" in capsys.readouterr().err
    assert cli.main(["fit", "factor_lm", "--hook", hooks[0], "--hook", hooks[0], "--out", str(out), *common]) == 2
    assert "given twice" in capsys.readouterr().err
    bad = ["fit", "factor_lm", "--hook", hooks[0], "--hook", "blocks.9.hook_resid_post", "--out", str(tmp_path / "x")]
    assert cli.main([*bad, *common]) == 2
    assert "unknown hook 'blocks.9.hook_resid_post'" in capsys.readouterr().err
