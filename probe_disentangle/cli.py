"""The ``probe-disentangle`` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__, io, registry
from .constants import DIRECTIONS_FILE, EVAL_JSON_FILE, PROBE_FILE, REPORT_TRAVERSAL_VALUES
from .export import FORMATS


def _architectures(args: argparse.Namespace) -> int:
    for name in registry.names():
        cls, cfg = registry.get(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:<16} {cls.__module__}.{cls.__name__:<14} {doc}")
    return 0


def _info(args: argparse.Namespace) -> int:
    meta = io.read_config(args.path)
    model = io.load(args.path)
    n = sum(p.numel() for p in model.parameters())
    print(
        f"{args.path}: {meta['architecture']} ({n:,} parameters), saved by probe_disentangle {meta.get('probe_disentangle_version', '?')}"
    )
    print(json.dumps(meta["config"], indent=2))
    return 0


def _diffusion_demo(args: argparse.Namespace) -> int:
    from .demo_diffusion import DiffusionDemoConfig, run_diffusion_demo

    cfg = DiffusionDemoConfig(
        out=args.out,
        pipeline=args.pipeline,
        checkpoint=args.checkpoint,
        hook=args.unet_hook,
        head=args.unet_head,
        fit_samples=args.fit_samples,
        eval_samples=args.eval_samples,
        steps=args.ddim_steps,
        latents=args.latents,
        fit_steps=args.steps if args.steps is not None else DiffusionDemoConfig.fit_steps,
        strength=args.strength,
        factors=args.factors.split(",") if args.factors else None,
        seed=args.seed,
        progress=not args.no_progress,
    )
    run_diffusion_demo(cfg)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    if args.host == "sprites_ddpm":
        return _diffusion_demo(args)
    if args.pipeline or args.checkpoint:
        raise ValueError("--pipeline and --checkpoint name a diffusion host: add --host sprites_ddpm")
    if args.restarts < 1:
        raise ValueError(f"--restarts must be ≥ 1, got {args.restarts}")
    if args.prefix_restarts < 1:
        raise ValueError(f"--prefix-restarts must be ≥ 1, got {args.prefix_restarts}")
    if args.prefix_steps < 1:
        raise ValueError(f"--prefix-steps must be ≥ 1, got {args.prefix_steps} (--prefix-hook '' skips the head)")
    if args.n_interchange < 0:
        raise ValueError(f"--n-interchange must be ≥ 0 (0 skips the interchange evaluation), got {args.n_interchange}")
    for flag, v in (("--steps", args.steps), ("--joint-steps", args.joint_steps)):
        if v is not None and v < 1:
            raise ValueError(f"{flag} must be ≥ 1, got {v} (--no-joint skips the joint head)")
    cfg = DemoConfig(
        out=args.out,
        hook=args.hook,
        init=None if args.init == "random" else args.init,
        steps=args.steps,
        joint_steps=0 if args.no_joint else args.joint_steps,
        restarts=args.restarts,
        middle_hook=args.middle_hook or None,
        per_token=args.per_token,
        prefix_hook=args.prefix_hook or None,
        prefix_steps=args.prefix_steps,
        prefix_restarts=args.prefix_restarts,
        seed=args.seed,
        n_steer=args.n_steer,
        n_interchange=args.n_interchange,
        strength=args.strength,
        progress=not args.no_progress,
    )
    run_demo(cfg)
    return 0


def _hooks(args: argparse.Namespace) -> int:
    from .adapters import attach
    from .hosts import load_host

    adapter = attach(load_host(args.model).model)
    names = adapter.hook_names()
    if args.filter:
        names = [n for n in names if args.filter in n]
    for n in names:
        print(n)
    return 0


def _device(name: str) -> str:
    from .train import resolve_device

    return str(resolve_device(name))


def _data(args: argparse.Namespace, host, n_default: int):
    """Host batches from --tokens / --text, or sentences of the factor LM's world."""
    from . import hosts

    if args.tokens and args.text:
        raise ValueError("pass either --tokens or --text, not both")
    if args.tokens:
        data = hosts.read_tokens(args.tokens)
    elif args.text:
        data = hosts.encode_lines(host, args.text, args.seq_len)
    elif host.world is not None:
        data = hosts.world_tokens(host, args.sequences or n_default, args.seed)
    else:
        raise ValueError(
            "no data: pass --tokens FILE.safetensors (an int tensor 'tokens' [N, T]) or --text FILE (one document per line)"
        )
    return hosts.batches(data, args.host_batch)


def _fit(args: argparse.Namespace) -> int:
    from . import distributed

    # under torchrun (torchrun --nproc-per-node N -m probe_disentangle.cli fit ...): data parallel,
    # each rank running the host on its shard of the data; rank 0 alone saves and reports
    dp = distributed.init_from_env(device=_device(args.device))
    try:
        code = _fit_one(args, dp)
    except BaseException:
        distributed.destroy()  # leave at once: the other ranks end when torchrun sees this one fail
        raise
    distributed.destroy(wait=True)
    if dp is not None:  # under torchrun: leave without the runtime's teardown, where gloo can abort a finished rank
        distributed.exit_process(code)
    return code


def _fit_one(args: argparse.Namespace, dp) -> int:
    from .hosts import load_host
    from .multi_hook import hook_folder
    from .probe import Probe
    from .train import TrainConfig

    main = dp is None or dp.is_main
    hooks = list(args.hook)
    dup = sorted({h for h in hooks if hooks.count(h) > 1})
    if dup:
        raise ValueError(f"--hook {dup[0]} is given twice; name each hook once")
    if len(hooks) > 1 and (args.condition or args.pairs):
        raise ValueError("--condition / --pairs fit a sequence head at one hook; pass a single --hook")
    out = Path(args.out)
    # one hook: --out is the probe's folder; several: --out holds a folder per hook, named by hook_folder
    outs = [out] if len(hooks) == 1 else [out / hook_folder(h) for h in hooks]
    for folder in outs:
        if (folder / PROBE_FILE).exists() and not args.overwrite:
            raise ValueError(f"{folder} already holds a probe; pass --overwrite to replace it or choose another --out")
    args.hook = hooks[0]
    device = _device(args.device)
    host = load_host(args.model, device)
    batches = _data(args, host, n_default=20_000)
    if args.condition or args.pairs:
        if dp is not None:
            raise ValueError("--condition and --pairs heads train in one process: run this fit without torchrun")
        return _fit_sequence(args, host, batches, out)
    objective_args = dict(json.loads(args.objective_args)) if args.objective_args else {}
    if args.beta is not None:
        objective_args["beta"] = args.beta
    if args.tc_batch is not None:
        if args.objective != "beta_tcvae" or args.categorical:
            raise ValueError("--tc-batch applies to the beta_tcvae objective of a Gaussian head; drop it")
        objective_args["tc_batch"] = args.tc_batch
    if args.categorical:  # a joint VAE head: categorical latents beside --latents Gaussian ones
        try:
            cats = [int(v) for v in args.categorical.split(",")]
        except ValueError:
            raise ValueError(f"--categorical {args.categorical!r}: write the sizes as e.g. 6,6,4") from None
        architecture = "joint_vae_head"
        head_config = {
            "categorical": cats,
            "continuous": args.latents,
            "hidden": args.hidden,
            # from ISA codes the capacity starts at its maximum (Σ log V): a rising one blurs the start
            "c_steps": 1 if args.init == "isa" else max(1, int(0.6 * args.steps)),
            **({"c_disc_max": None, "marginal_weight": 0.0} if args.init == "isa" else {}),
            "decoder": args.decoder,
            "decoder_hidden": args.decoder_hidden,
            **objective_args,
        }
        head_config.pop("beta", None)
        what = f"joint VAE head ({len(cats)} categorical + {args.latents} Gaussian latents)"
    else:
        architecture = "vae_head"
        head_config = {
            "latent_dim": args.latents,
            "hidden": args.hidden,
            "objective": args.objective,
            "decoder": args.decoder,
            "decoder_hidden": args.decoder_hidden,
        }
        if objective_args:
            head_config["objective_args"] = objective_args
        what = f"{args.objective} head ({args.latents} latents)"
    options = {}
    if args.span:
        try:
            start, stop = (int(v) for v in args.span.split(","))
        except ValueError:
            raise ValueError(f"--span {args.span!r}: write START,STOP token positions, e.g. 1,10") from None
        options["span"] = (start, stop)
    train = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=device,
        progress=not args.no_progress,
    )
    if len(hooks) > 1:  # one host forward per batch feeds every probe (multi_hook.fit_probes)
        from .multi_hook import fit_probes

        spec = {"architecture": architecture, **head_config}
        fitted = fit_probes(
            host.model,
            {h: spec for h in hooks},
            batches,
            train,
            out=out,
            overwrite=args.overwrite,
            adapter_options=options,
            buffer_size=args.buffer,
            device=device,
            init=args.init,
        )
        for h, folder in zip(hooks, outs, strict=True):
            if h not in fitted:  # under torchrun each rank trains (and reports) the hooks it owns
                continue
            result = fitted.results[h]
            last = ", ".join(f"{k}={v:.4g}" for k, v in result.last.items())
            print(f"fitted {what} at {h} of {args.model}: {result.step} steps; {last}")
            print(f"saved probe to {folder}  (directions: {folder / DIRECTIONS_FILE})")
        return 0
    probe = Probe(host.model, args.hook, architecture=architecture, head_config=head_config, adapter_options=options)
    result = probe.fit(batches, train, buffer_size=args.buffer, device=device, init=args.init)
    probe.save_pretrained(out)  # rank 0 writes, the others wait
    if main:
        last = ", ".join(f"{k}={v:.4g}" for k, v in result.last.items())
        ranks = f" on {dp.world_size} processes" if dp is not None else ""
        print(f"fitted {what} at {args.hook} of {args.model}: {result.step} steps{ranks}; {last}")
        print(f"saved probe to {out}  (directions: {out / DIRECTIONS_FILE})")
    return 0


PAIRS_FORMAT = (
    "a safetensors file with two int tensors 'a' and 'b' [N, T]: row i of 'a' and row i of 'b' are token "
    "sequences that differ in some factors (which ones is not given), e.g. minimal pairs or contrast pairs"
)


def _condition(text: str) -> tuple[str, ...]:
    parts = tuple(sorted(p.strip() for p in text.split(",") if p.strip()))
    if parts != ("position", "token"):
        raise ValueError(f"--condition {text!r}: a sequence head conditions on both, write --condition token,position")
    return parts


def _sequences(adapter, hook: str, batches, pad_id: int | None):
    """(acts, cond, mask) of every host batch, padding masked by the batch's attention mask or pad id."""
    import torch

    from .steering.sequence import read_sequences

    parts = []
    for b in batches:
        tokens, attn = (b["tokens"], b.get("attention_mask")) if isinstance(b, dict) else (b, None)
        if attn is None and pad_id is not None:
            attn = (tokens != pad_id).long()
            attn[:, 0] = 1
        parts.append(read_sequences(adapter, hook, tokens, attn))
    return tuple(torch.cat(x) for x in zip(*parts, strict=True))


def _fit_sequence(args: argparse.Namespace, host, batches, out: Path) -> int:
    """``fit --condition token,position [--pairs FILE]``: a per-token prefix-code head (heads/sequence.py)."""
    from .adapters import attach
    from .constants import CONFIG_FILE
    from .heads.sequence import PrefixCodeConfig, PrefixFitConfig, fit_prefix_code_restarts
    from .steering.knobs import find_knobs

    _condition(args.condition or "token,position")
    if args.restarts < 1:
        raise ValueError(f"--restarts must be >= 1, got {args.restarts}")
    if (out / CONFIG_FILE).exists() and not args.overwrite:
        raise ValueError(f"{out} already holds a saved head; pass --overwrite to replace it or choose another --out")
    if args.span or args.categorical:
        raise ValueError("--span and --categorical do not apply to a per-token sequence head; drop them")
    adapter = attach(host.model)
    adapter.check_hook(args.hook)
    acts, cond, mask = _sequences(adapter, args.hook, batches, host.pad_id)
    vocab = int(getattr(getattr(host.model, "cfg", None), "d_vocab", 0) or host.model.config.vocab_size)
    n_pos = int(cond[..., 1].max()) + 1 if args.max_positions is None else args.max_positions
    centre = "token_position" if vocab * n_pos * acts.shape[-1] <= (1 << 24) else "position"
    cfg = PrefixCodeConfig(
        d_in=acts.shape[-1],
        vocab=vocab,
        n_pos=n_pos,
        latent_dim=args.latents,
        hidden=args.hidden,
        centre=centre,
        beta=4.0 if args.beta is None else args.beta,
    )
    pairs = None
    if args.pairs:
        import safetensors.torch

        try:
            data = safetensors.torch.load_file(args.pairs)
        except Exception as err:
            raise ValueError(f"--pairs {args.pairs}: cannot read it ({err}); write {PAIRS_FORMAT}") from None
        if set(data) != {"a", "b"} or data["a"].shape != data["b"].shape or data["a"].is_floating_point():
            raise ValueError(f"--pairs {args.pairs} holds {sorted(data)}; write {PAIRS_FORMAT}")
        pairs = tuple(_sequences(adapter, args.hook, [data[k]], host.pad_id) for k in ("a", "b"))
    fit = PrefixFitConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    head, rows = fit_prefix_code_restarts(cfg, acts, cond, mask, fit, restarts=args.restarts, pairs=pairs)
    chosen = next(r for r in rows if r["chosen"])
    codes = head.codes(acts, cond, mask)[:, -1]
    extra = {"hook": args.hook, "model": args.model, "kind": "sequence"}
    try:
        knobs = find_knobs(codes, onsets=head.onsets(acts, cond, mask))
        extra["knobs"] = knobs.to_dict()
    except ValueError as err:  # every latent at the prior, or too few sequences: a head without knobs
        knobs, why = None, str(err)
    extra["restarts"] = [{"seed": r["seed"], "onset_purity": r["onset_purity"], "chosen": r["chosen"]} for r in rows]
    io.save(head, out, extra=extra)
    what = "pair-supervised (Ada-GVAE)" if pairs else "unsupervised (β-TCVAE)"
    choice = (
        f"; kept seed {chosen['seed']} of {len(rows)} restarts (onset purity "
        + ", ".join(f"{r['onset_purity']:.3f}" for r in rows)
        + ")"
        if len(rows) > 1
        else ""
    )
    print(
        f"fitted a per-token prefix-code head, {what}, {args.latents} latents, at {args.hook} of {args.model} on "
        f"{int(mask.sum())} token vectors: {args.steps} steps, loss {chosen['fit']['loss']:.4g}{choice}; saved to {out}"
    )
    if knobs is None:
        print(f"no knobs saved ({why})")
        return 0
    print(f"{len(knobs)} knobs (latents grouped without labels by where they take their value):")
    for i, (g, st) in enumerate(zip(knobs.groups, knobs.settings, strict=True)):
        print(f"  knob {i}: latents {g}, {len(st)} settings (steer --knob {i}=S, S in 0..{len(st) - 1})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import torch

    from . import metrics
    from .heads import VAEHead
    from .hosts import load_host
    from .probe import Probe
    from .steering import factor_position_activations, mutual_information_matrix, principal_directions

    device = _device(args.device)
    host = load_host(args.model, device)
    probe = Probe.from_pretrained(args.probe, host.model)
    probe.head.to(device)
    batches = _data(args, host, n_default=4000)
    acts = []
    for b in batches:
        acts.append(probe.adapter.collect(b, probe.hook).vectors.float())
        if sum(a.shape[0] for a in acts) >= args.max_vectors:
            break
    a = torch.cat(acts)[: args.max_vectors]
    report: dict = {"model": args.model, "hook": probe.hook, "vectors": int(a.shape[0])}
    z = probe.encode(a)
    kl = None
    if isinstance(probe.head, VAEHead):
        report["explained_variance"] = probe.explained_variance(a)
        with torch.no_grad():
            mu, logvar = probe.head.encode(probe._norm(a.to(z.device)))
            kl = (0.5 * (mu**2 + logvar.exp() - 1 - logvar)).mean(0).cpu().numpy()
        report["kl_per_latent"] = [round(float(v), 4) for v in kl]
        report["active_latents"] = int((kl > args.active_kl).sum())
    report["unsupervised"] = metrics.unsupervised(z.cpu().numpy(), fast=True)
    labelled = None  # (vectors, codes, factors, factor names) where the true factors are known
    if host.world is not None and not (args.tokens or args.text):
        # the factor LM: its true factors are known where every factor is (the plan's colon / last word)
        factors, tokens = host.world.sample(args.sequences or 4000, args.seed + 1)
        vecs = factor_position_activations(probe.adapter, probe.hook, host.world, tokens).to(device)
        labelled = (vecs, probe.encode(vecs).cpu().numpy(), factors, list(host.world.factor_names))
    elif args.labels:
        vecs, codes, factors = _labelled_codes(args, probe, device)
        labelled = (vecs, codes, factors, [f"factor {j}" for j in range(factors.shape[1])])
    if labelled is not None:
        vecs, codes, factors, names = labelled
        report["supervised"] = metrics.evaluate(codes, factors, fast=True)
        report["factor_names"] = names
        report["mutual_information"] = mutual_information_matrix(codes, factors).round(4).tolist()
        # the baseline: as many principal directions of the same vectors as the probe has latents
        pcs = principal_directions(vecs.float().cpu(), codes.shape[1])
        pca_codes = ((vecs.float().cpu() - vecs.float().cpu().mean(0)) @ pcs.T).numpy()
        report["baselines"] = {"pca": metrics.evaluate(pca_codes, factors, fast=True)}
    print(f"{args.probe} at {probe.hook} of {args.model}: {report['vectors']} vectors")
    if kl is not None:
        print(
            f"  explained variance {report['explained_variance']:.3f}; "
            f"active latents (KL > {args.active_kl}) {report['active_latents']}/{len(kl)}"
        )
        print("  KL per latent: " + " ".join(f"{v:.2f}" for v in kl))
    print(metrics.format_table(report["unsupervised"], title="unsupervised"))
    if "supervised" in report:
        print(metrics.format_table(report["supervised"], title="against the true factors"))
    report["traversals"] = _eval_traversals(args, host, probe, labelled, z.cpu().numpy(), kl)
    out = Path(args.out) if args.out else Path(args.probe) / EVAL_JSON_FILE
    io.atomic_write_json(out, report)
    page = _eval_html(args, report, out.with_suffix(".html"))
    print(f"wrote {out} and {page} ({page.stat().st_size / 1024:.0f} KiB)")
    return 0


def _traversal_values(args: argparse.Namespace) -> list[float] | None:
    """--traversal-values as floats, or None (then each latent's own held-out range)."""
    if not args.traversal_values:
        return None
    try:
        values = [float(v) for v in args.traversal_values.split(",")]
    except ValueError:
        raise ValueError(f"--traversal-values {args.traversal_values!r}: write numbers, e.g. -2,-1,0,1,2") from None
    return values


def _eval_traversals(args: argparse.Namespace, host, probe, labelled, z, kl) -> list[dict]:
    """One generation per value (the same sampling seed) of each aligned latent (the one with the
    most information about each factor; without factors the latents of highest KL), set to
    --traversal-values or to evenly spaced values over its held-out codes."""
    import numpy as np
    import torch

    from .hosts import generate
    from .steering import mutual_information_matrix, sample_tokens

    if args.traversal_tokens == 0:
        return []
    if labelled is not None:
        _, codes, factors, names = labelled
        best = mutual_information_matrix(codes, factors).round(4).argmax(0)  # as eval.json holds it: ties agree
        aligned = [(int(best[j]), name) for j, name in enumerate(names)]
    else:
        codes = z
        order = np.argsort(-kl) if kl is not None else np.arange(z.shape[1])
        aligned = [(int(i), None) for i in order[:REPORT_TRAVERSAL_VALUES]]
    given = _traversal_values(args)
    world = host.world if not (args.tokens or args.text) else None
    show = host.decode or (lambda seq: " ".join(str(t) for t in seq))
    out = []
    for latent, name in aligned:
        values = given or np.linspace(codes[:, latent].min(), codes[:, latent].max(), REPORT_TRAVERSAL_VALUES).tolist()
        rows = []
        for v in values:
            with probe.steer(edits={latent: float(v)}):
                if world is not None:
                    tok = world.tokenizer
                    seq = sample_tokens(
                        host.model, 1, tok.bos_id, tok.eos_id, tok.pad_id, world.max_length, seed=args.seed
                    )
                    text = tok.decode(seq[0])
                else:
                    start = host.bos_id if host.bos_id is not None else 0
                    prompt = torch.tensor([[start]], dtype=torch.long)
                    kwargs = dict(seed=args.seed, eos_id=host.eos_id, pad_id=host.pad_id)
                    seq = generate(host.model, prompt, args.traversal_tokens, **kwargs)[0].tolist()
                    text = show([t for t in seq[1:] if t != host.pad_id or host.eos_id is None])
            rows.append({"value": float(v), "text": text})
        out.append({"latent": latent, "factor": name, "samples": rows})
    return out


def _eval_html(args: argparse.Namespace, report: dict, path: Path) -> Path:
    """``eval``'s report as one HTML page (report_html): the metric tables, the heat map of mutual
    information, the traversals and the PCA baseline."""
    import numpy as np

    from .report_html import Table, Traversal, metrics_table, write_report

    tables = [metrics_table(report["unsupervised"], "Without labels")]
    if "supervised" in report:
        tables.append(metrics_table(report["supervised"], "Against the true factors"))
    summary = f"{args.probe} at {report['hook']} of {report['model']}: {report['vectors']} vectors."
    if "explained_variance" in report:
        summary += (
            f" Explained variance {report['explained_variance']:.3f}; {report['active_latents']} of "
            f"{len(report['kl_per_latent'])} latents active (KL > {args.active_kl})."
        )
        tables.append(
            Table(
                "KL per latent (nats)", ("latent", "KL"), [(f"z{i}", v) for i, v in enumerate(report["kl_per_latent"])]
            )
        )
    baselines = []
    for m, res in report.get("baselines", {}).items():
        keys = [k for k, v in res.items() if isinstance(v, float)]
        baselines.append(
            Table(
                f"The probe against {m} (as many components of the same vectors as the probe has latents)",
                ("metric", "probe", m),
                [(k, report["supervised"].get(k), res[k]) for k in keys],
            )
        )
    mi = report.get("mutual_information")
    return write_report(
        path,
        f"probe_disentangle eval: {args.probe}",
        summary=summary,
        metrics=tables,
        mutual_information=None if mi is None else np.asarray(mi),
        latent_labels=[] if mi is None else [f"z{i}" for i in range(len(mi))],
        factor_labels=report.get("factor_names", []),
        traversals=[
            Traversal(t["latent"], t["factor"], [r["value"] for r in t["samples"]], [r["text"] for r in t["samples"]])
            for t in report["traversals"]
        ],
        baselines=baselines,
    )


def _labelled_codes(args: argparse.Namespace, probe, device: str):
    """(vectors, codes, factors) from a safetensors file: tokens [N, T], factors [N, F] (integer
    classes) and optional positions [N] (default: the last token) where each sequence's factors
    are read; a span probe reads each sequence's span instead."""
    from safetensors.torch import load_file

    from .steering import sequence_vectors

    path = Path(args.labels)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist")
    t = load_file(str(path))
    missing = [k for k in ("tokens", "factors") if k not in t]
    if missing:
        raise ValueError(
            f"{path} lacks {missing}: it needs 'tokens' [N, T], 'factors' [N, F] and optionally 'positions' [N]"
        )
    tokens, factors = t["tokens"].long(), t["factors"].long()
    if len(tokens) != len(factors):
        raise ValueError(f"{path}: {len(tokens)} token rows but {len(factors)} factor rows")
    vecs = sequence_vectors(probe.adapter, probe.hook, tokens, t.get("positions"), args.host_batch, device)
    return vecs, probe.encode(vecs).cpu().numpy(), factors.numpy()


def _parse_edits(args: argparse.Namespace) -> dict:
    edits: dict = {}
    for text, add in [(e, False) for e in args.set] + [(e, True) for e in args.add]:
        i, eq, v = text.partition("=")
        try:
            idx, val = int(i), float(v)
        except ValueError:
            raise ValueError(f"edit {text!r}: write LATENT=VALUE, e.g. --set 3=2.0 or --add 3=-1.5") from None
        if not eq:
            raise ValueError(f"edit {text!r}: write LATENT=VALUE, e.g. --set 3=2.0")
        edits[idx] = ("add", val) if add else val
    return edits


def _steer(args: argparse.Namespace) -> int:
    import torch

    from .hosts import generate, load_host
    from .probe import Probe

    device = _device(args.device)
    host = load_host(args.model, device)
    steer_ctx = _sequence_steerer(args.probe, host)  # a per-token sequence head edits every position
    if steer_ctx is None:
        probe = Probe.from_pretrained(args.probe, host.model)
        probe.head.to(device)
        steer_ctx = lambda e: probe.steer(edits=e)  # noqa: E731
    if args.prompt_ids:
        ids = [int(x) for x in args.prompt_ids.split(",")]
    elif host.encode is not None:
        ids = ([host.bos_id] if host.world is not None else []) + host.encode(args.prompt)
    else:
        raise ValueError(f"{args.model} has no tokenizer: pass --prompt-ids 0,5,7")
    if not ids:
        raise ValueError("the prompt is empty: pass --prompt TEXT or --prompt-ids")
    prompt = torch.tensor([ids] * args.samples, dtype=torch.long)
    runs: list[tuple[str, dict | None]] = [("unsteered", None)]
    if args.knob or args.traverse_knob is not None:
        knobs = _knobs_of(args.probe)
        if args.traverse_knob is not None:
            k = args.traverse_knob
            if not 0 <= k < len(knobs):
                raise ValueError(f"--traverse-knob {k}: {args.probe} has knobs 0..{len(knobs) - 1}")
            runs += [(f"knob {k} at setting {s}", knobs.setting_codes(k, s)) for s in range(len(knobs.settings[k]))]
        if args.knob:
            edits = {}
            for text in args.knob:
                k, eq, v = text.partition("=")
                try:
                    edits.update(knobs.setting_codes(int(k), int(v)))
                except ValueError:
                    if not eq or not (k.strip().isdigit() and v.strip().isdigit()):
                        raise ValueError(f"--knob {text!r}: write KNOB=SETTING, e.g. --knob 2=1") from None
                    raise
            runs.append(("knobs " + " ".join(args.knob), edits))
    if args.traverse is not None:
        values = [float(v) for v in args.values.split(",")]
        runs += [(f"z{args.traverse} = {v:+.2f}", {args.traverse: v}) for v in values]
    edits = _parse_edits(args)
    if edits:
        runs.append(
            (
                "steered "
                + " ".join(
                    f"z{i}{'+=' if isinstance(e, tuple) else '='}{e[1] if isinstance(e, tuple) else e}"
                    for i, e in edits.items()
                ),
                edits,
            )
        )
    if len(runs) == 1:
        raise ValueError(
            "nothing to steer: pass --set LATENT=VALUE, --add LATENT=DELTA, --traverse LATENT, --knob KNOB=SETTING "
            "or --traverse-knob KNOB"
        )
    show = host.decode or (lambda seq: " ".join(str(t) for t in seq))
    for label, e in runs:
        kwargs = dict(seed=args.seed, temperature=args.temperature, eos_id=host.eos_id, pad_id=host.pad_id)
        if e is None:
            seqs = generate(host.model, prompt, args.max_new_tokens, **kwargs)
        else:
            with steer_ctx(e):
                seqs = generate(host.model, prompt, args.max_new_tokens, **kwargs)
        print(f"[{label}]")
        for seq in seqs.tolist():
            print("  " + show([t for t in seq if t != host.pad_id] if host.world is not None else seq))
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import block_layer, export_direction
    from .hosts import load_host
    from .probe import Probe

    device = _device(args.device)
    host = load_host(args.model, device)
    probe = Probe.from_pretrained(args.probe, host.model)
    probe.head.to(device)
    out = export_direction(probe, args.out, args.format, args.latent, args.scale, args.layer)
    if args.format == "safetensors":
        where = f"hook {probe.hook}"
    else:
        layer = args.layer if args.layer is not None else block_layer(probe)
        where = f"direction.{layer}" if args.format == "gguf" else f"decoder_block {layer}"
    print(
        f"exported {args.scale:g} × the direction of latent {args.latent} of {args.probe} as {args.format}: {out} "
        f"({out.stat().st_size:,} bytes, {where})"
    )
    return 0


def _knobs_of(folder: str):
    """The knobs `fit --condition` saved with a sequence head (its config.json), or a clear error."""
    from .constants import CONFIG_FILE
    from .steering.knobs import Knobs

    path = Path(folder) / CONFIG_FILE
    meta = json.loads(path.read_text()) if path.exists() else {}
    if "knobs" not in meta:
        raise ValueError(
            f"{folder} holds no knobs: --knob and --traverse-knob need a sequence head saved by "
            "`probe-disentangle fit --condition token,position` (use --set / --traverse for latents)"
        )
    return Knobs.from_dict(meta["knobs"])


def _sequence_steerer(folder: str, host):
    """For a folder `fit --condition` wrote: edits on every position (KV-cached steps included); else None."""
    from .constants import CONFIG_FILE

    path = Path(folder) / CONFIG_FILE
    if (Path(folder) / PROBE_FILE).exists() or not path.exists():
        return None
    meta = json.loads(path.read_text())
    if meta.get("kind") != "sequence":
        return None
    from .adapters import attach
    from .steering.sequence import steer_sequences

    head = io.load(folder, next(host.model.parameters()).device)
    adapter = attach(host.model)
    return lambda edits: steer_sequences(adapter, meta["hook"], head, edits)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokens", help="safetensors file with an int tensor 'tokens' [N, T]")
    p.add_argument("--text", help="text file, one document per line (uses the model's tokenizer)")
    p.add_argument("--seq-len", type=int, default=128, help="cut --text documents to this many tokens")
    p.add_argument(
        "--sequences", type=int, default=0, help="factor_lm only: sentences to sample (default 20000 for fit)"
    )
    p.add_argument("--host-batch", type=int, default=64, help="sequences per host forward")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="probe-disentangle", description="Find and steer disentangled directions inside pretrained networks."
    )
    ap.add_argument("--version", action="version", version=f"probe_disentangle {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("architectures", help="list the registered head and model architectures").set_defaults(
        fn=_architectures
    )
    p = sub.add_parser("info", help="describe a saved head or model folder (and check it loads)")
    p.add_argument("path")
    p.set_defaults(fn=_info)
    p = sub.add_parser(
        "demo",
        help="fit a β-TCVAE probe on a shipped host (the factor LM's plan, or the sprites DDPM's h-space), "
        "measure it, steer it (offline)",
    )
    p.add_argument("--out", default="runs/demo")
    p.add_argument(
        "--host",
        choices=("factor_lm", "sprites_ddpm"),
        default="factor_lm",
        help="factor_lm: the transformer demo; sprites_ddpm: a probe in the DDPM's mid_block (h-space), "
        "steering its sampling",
    )
    d = p.add_argument_group("sprites_ddpm host")
    d.add_argument("--pipeline", default=None, help="an exported DDPM pipeline folder (default: the shipped one)")
    d.add_argument("--checkpoint", default=None, help="a training checkpoint of examples/train_sprites_ddpm.py")
    d.add_argument("--unet-hook", default="mid_block", help="the UNet block the probe reads and edits")
    d.add_argument(
        "--unet-head",
        choices=("mlp", "map"),
        default="mlp",
        help="mlp: the block's output as one vector; map: a conv encoder and a spatial broadcast decoder on its "
        "[C, H, W] map (an edit can then move an object; use it at a late up block)",
    )
    d.add_argument("--fit-samples", type=int, default=96, help="DDIM sampling runs the probe learns on")
    d.add_argument("--eval-samples", type=int, default=12, help="images per steered target value")
    d.add_argument("--ddim-steps", type=int, default=10, help="DDIM steps (η = 0)")
    d.add_argument("--latents", type=int, default=10)
    d.add_argument("--factors", default=None, help="comma-separated factors to steer (default: all six)")
    p.add_argument("--hook", default="blocks.0.hook_resid_pre", help="where the probe reads and edits the plan")
    p.add_argument(
        "--init",
        choices=("isa", "random"),
        default="isa",
        help="start the heads from independent subspace analysis (default) or at random",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps of the β-TCVAE head, its β = 1 baseline and the middle-layer head (default: 200 from isa, 3000 random)",
    )
    p.add_argument(
        "--joint-steps", type=int, default=None, help="joint VAE head steps (default: 500 from isa, 6000 random)"
    )
    p.add_argument("--no-joint", action="store_true", help="skip the categorical joint VAE head")
    p.add_argument(
        "--restarts",
        type=int,
        default=1,
        help="fits per head to choose from without labels (a random start needs several)",
    )
    p.add_argument(
        "--prefix-hook",
        default="blocks.2.hook_resid_post",
        help="the headline: a per-token prefix-code head here, every position edited, knobs found without labels "
        "('' to skip)",
    )
    p.add_argument("--prefix-steps", type=int, default=5000, help="steps of the per-token head")
    p.add_argument(
        "--prefix-restarts", type=int, default=1, help="per-token head fits; the highest onset purity is kept"
    )
    p.add_argument(
        "--middle-hook",
        default="",
        help="also fit the plan-span β-TCVAE head here (e.g. blocks.2.hook_resid_post) and report its metrics and "
        "steering: it reads the factors there but steers none (default: skip)",
    )
    p.add_argument("--per-token", action="store_true", help="also fit per-token heads (measured at the last word)")
    p.add_argument("--n-steer", type=int, default=40, help="generated sentences per steered factor value")
    p.add_argument(
        "--n-interchange",
        type=int,
        default=100,
        help="base/source pairs per factor of the interchange evaluation (cause / isolate; 0 skips it)",
    )
    p.add_argument(
        "--strength",
        type=float,
        default=2.0,
        help="edit strength of the PCA and difference-of-means baselines and the per-token heads",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(fn=_demo)
    p = sub.add_parser(
        "hooks", help="list the hook points of a model (Hugging Face name or local folder, or factor_lm)"
    )
    p.add_argument("model")
    p.add_argument("--filter", default="", help="only names containing this text")
    p.set_defaults(fn=_hooks)
    p = sub.add_parser("fit", help="fit a disentangling head at a hook of a model and save the probe")
    p.add_argument("model", help="Hugging Face name (cached) or local folder, or factor_lm")
    p.add_argument(
        "--hook",
        required=True,
        action="append",
        help="hook point, e.g. blocks.6.hook_resid_post (see `hooks MODEL`); repeat it to fit a probe per hook "
        "from one host forward per batch",
    )
    p.add_argument(
        "--out",
        required=True,
        help="folder for the probe (save_pretrained format); with several --hook, a folder per hook inside it, "
        "named by the hook (characters other than letters, digits, '.', '_', '-' become '_')",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a probe already in --out")
    p.add_argument("--objective", default="beta_tcvae", help="beta_vae, capacity, beta_tcvae, factor_vae, dip_vae")
    p.add_argument("--beta", type=float, default=None, help="the objective's β (default: the objective's own)")
    p.add_argument(
        "--objective-args", default="", help='JSON object of further objective settings, e.g. \'{"estimator": "mws"}\''
    )
    p.add_argument("--latents", type=int, default=16, help="Gaussian latents")
    p.add_argument(
        "--categorical", default="", help="sizes of categorical latents, e.g. 6,6,6: a joint VAE head (JointVAE)"
    )
    p.add_argument("--span", default="", help="START,STOP: one vector per sequence from these token positions")
    p.add_argument(
        "--init",
        choices=("isa",),
        default=None,
        help="isa: start the latents from independent subspace analysis (one factor per latent)",
    )
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument(
        "--decoder",
        choices=["mlp", "additive"],
        default="mlp",
        help="additive: one term per latent, summed (edits move the activation the same way in every context)",
    )
    p.add_argument(
        "--decoder-hidden",
        type=int,
        default=32,
        help="additive decoder: width per latent (0: linear, a direction each)",
    )
    p.add_argument(
        "--condition",
        default="",
        help="token,position: a per-token prefix-code head conditioned on each vector's token id and position "
        "(one vector per token, every position edited by `steer`)",
    )
    p.add_argument("--pairs", default="", help="pair-supervised (Ada-GVAE) sequence head: " + PAIRS_FORMAT)
    p.add_argument("--max-positions", type=int, default=None, help="sequence head: positions it can condition on")
    p.add_argument(
        "--restarts",
        type=int,
        default=1,
        help="sequence head: fits to choose from without labels (the highest onset purity is kept)",
    )
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=1024, help="activation vectors per head step")
    p.add_argument(
        "--tc-batch",
        type=int,
        default=None,
        help="β-TCVAE: estimate the total correlation on this many vectors of each batch (cost M² not B²)",
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--buffer", type=int, default=65_536, help="shuffle-buffer size (vectors)")
    p.add_argument("--no-progress", action="store_true")
    _add_data_args(p)
    p.set_defaults(fn=_fit)
    p = sub.add_parser(
        "eval", help="score a saved probe: reconstruction, latent use, unsupervised and supervised metrics"
    )
    p.add_argument("probe", help="folder written by fit / save_pretrained")
    p.add_argument("model")
    p.add_argument("--labels", help="safetensors: tokens [N, T], factors [N, F], optional positions [N]")
    p.add_argument("--max-vectors", type=int, default=20_000)
    p.add_argument("--active-kl", type=float, default=0.1, help="a latent is active above this mean KL (nats)")
    p.add_argument("--out", default="", help="report JSON (default PROBE/eval.json); the HTML page goes beside it")
    p.add_argument(
        "--traversal-values",
        default="",
        help="comma-separated values each traversed latent is set to (default: 5 over its held-out codes)",
    )
    p.add_argument(
        "--traversal-tokens",
        type=int,
        default=20,
        help="tokens generated per traversal value on a host without a world (the factor LM writes whole "
        "sentences); 0: no traversals",
    )
    _add_data_args(p)
    p.set_defaults(fn=_eval)
    p = sub.add_parser("steer", help="generate with and without latent edits (or a traversal) from a saved probe")
    p.add_argument("probe")
    p.add_argument("model")
    p.add_argument("--prompt", default="", help="text prompt (the model's tokenizer)")
    p.add_argument("--prompt-ids", default="", help="comma-separated token ids, for models without a tokenizer")
    p.add_argument("--set", action="append", default=[], metavar="LATENT=VALUE", help="set a latent (repeatable)")
    p.add_argument("--add", action="append", default=[], metavar="LATENT=DELTA", help="shift a latent (repeatable)")
    p.add_argument("--traverse", type=int, default=None, metavar="LATENT", help="one generation per --values")
    p.add_argument("--values", default="-2,-1,0,1,2")
    p.add_argument(
        "--knob", action="append", default=[], metavar="KNOB=SETTING", help="sequence head: put a knob at a setting"
    )
    p.add_argument("--traverse-knob", type=int, default=None, metavar="KNOB", help="one generation per setting")
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--samples", type=int, default=1, help="generations per setting")
    p.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_steer)
    p = sub.add_parser(
        "export",
        help="write a saved probe's direction (scale × one latent's) for llama.cpp (GGUF control vector), "
        "steering-vectors or as plain safetensors",
    )
    p.add_argument("probe", help="folder written by fit / save_pretrained")
    p.add_argument("model", help="the model the probe was fitted on (as for steer)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--latent", type=int, required=True, help="which latent's direction")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the direction (activation units per unit)")
    p.add_argument("--out", required=True, help="file to write (.gguf, .safetensors)")
    p.add_argument(
        "--layer",
        type=int,
        default=None,
        help="block index to place it at (default: the block whose output the hook is)",
    )
    p.add_argument("--device", default="auto")
    p.set_defaults(fn=_export)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except (FileNotFoundError, ValueError, KeyError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
