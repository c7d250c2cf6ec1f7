"""``SAEHead``: a sparse autoencoder trained elsewhere (SAELens) as a probe head, its features
the latents.

:class:`SparseAutoencoder` is SAELens's inference SAE re-implemented (same parameter names,
encode and decode) so that a folder SAELens saved is read as safetensors and JSON, with no
SAELens installed (:func:`probe_disentangle.steering.sae.load_saelens`). :class:`SAEHead`
registers it in the architecture registry, so a probe holding one saves and loads like any
other; it is imported, never trained here (train one with
:func:`probe_disentangle.steering.sae.train_sae`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..registry import register
from .common import _check_width

# inference architecture -> its tensors besides W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_dec [d_in]
ARCHITECTURE_TENSORS = {
    "standard": ("b_enc",),
    "topk": ("b_enc",),
    "jumprelu": ("b_enc", "threshold"),
    "gated": ("b_gate", "b_mag", "r_mag"),
}


# ------------------------------------------------------------------ the inference SAE


@dataclass
class SparseAutoencoderConfig:
    """What an SAELens inference SAE needs to encode and decode: sizes, the activation
    (``architecture``; ``k`` for topk), whether ``b_dec`` is subtracted from the input before
    encoding, whether topk activations are scaled by the decoder row norms, and the hook it was
    trained at (informational)."""

    d_in: int
    d_sae: int
    architecture: str = "standard"
    k: int | None = None
    apply_b_dec_to_input: bool = True
    rescale_acts_by_decoder_norm: bool = False
    hook_name: str | None = None

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURE_TENSORS:
            raise ValueError(
                f"unknown SAE architecture {self.architecture!r}; this loader reads {sorted(ARCHITECTURE_TENSORS)}"
            )
        if self.d_in < 1 or self.d_sae < 1:
            raise ValueError(f"d_in and d_sae must be ≥ 1, got {self.d_in} and {self.d_sae}")
        if self.architecture == "topk":
            if self.k is None or not 1 <= self.k <= self.d_sae:
                raise ValueError(f"a topk SAE needs k in 1..d_sae={self.d_sae}, got {self.k}")
        elif self.k is not None:
            raise ValueError(f"k is for topk SAEs only; a {self.architecture} SAE has none (got k={self.k})")


class SparseAutoencoder(nn.Module):
    """An SAELens inference SAE (same parameter names and shapes, same encode/decode), float32.

    encode: ``x [N, d_in] → f [N, d_sae]``, with ``pre = (x − b_dec·apply) W_enc + b_enc`` and
    standard: ReLU(pre); topk: the k largest of pre (times ‖W_dec row‖ if rescaled), ReLU'd, the
    rest 0; jumprelu: ReLU(pre)·[pre > threshold]; gated: [x̃ W_enc + b_gate > 0]·ReLU(x̃ (W_enc ∘
    exp r_mag) + b_mag), x̃ = x − b_dec·apply. decode: ``f @ feature_directions + b_dec``.
    """

    def __init__(self, config: SparseAutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        d, m = config.d_in, config.d_sae
        self.W_enc = nn.Parameter(torch.zeros(d, m))
        self.W_dec = nn.Parameter(torch.zeros(m, d))
        self.b_dec = nn.Parameter(torch.zeros(d))
        for name in ARCHITECTURE_TENSORS[config.architecture]:
            self.register_parameter(name, nn.Parameter(torch.zeros(m)))

    @property
    def feature_directions(self) -> Tensor:
        """``[d_sae, d_in]``: what one unit of each feature adds to the reconstruction, so that
        decode(f) = f @ feature_directions + b_dec (W_dec, divided by its row norms when topk
        activations are rescaled by them)."""
        if self.config.rescale_acts_by_decoder_norm:
            return self.W_dec / self.W_dec.norm(dim=-1, keepdim=True)
        return self.W_dec

    def _check(self, x: Tensor, width: int, what: str) -> Tensor:
        if x.ndim != 2 or x.shape[1] != width:
            raise ValueError(f"{what} must be [N, {width}] for this SAE, got {tuple(x.shape)}")
        return x.to(self.W_enc.dtype)

    def encode(self, x: Tensor) -> Tensor:
        """Feature activations ``[N, d_sae]`` of vectors ``x [N, d_in]``."""
        cfg = self.config
        x = self._check(x, cfg.d_in, "the vectors to encode")
        if cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        if cfg.architecture == "gated":
            gate = (x @ self.W_enc + self.b_gate) > 0
            return gate.to(x.dtype) * torch.relu(x @ (self.W_enc * self.r_mag.exp()) + self.b_mag)
        pre = x @ self.W_enc + self.b_enc
        if cfg.architecture == "standard":
            return torch.relu(pre)
        if cfg.architecture == "jumprelu":
            return torch.relu(pre) * (pre > self.threshold).to(pre.dtype)
        if cfg.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec.norm(dim=-1)
        vals, idx = pre.topk(cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())

    def decode(self, f: Tensor) -> Tensor:
        """Reconstructions ``[N, d_in]`` of feature activations ``f [N, d_sae]``."""
        f = self._check(f, self.config.d_sae, "the feature activations to decode")
        return f @ self.feature_directions + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


# ------------------------------------------------------------------ the registered head


@dataclass
class SAEHeadConfig:
    """A :class:`SparseAutoencoderConfig` under the registry's rules: the SAE's own
    architecture (standard, topk, jumprelu, gated) is ``sae_architecture``, since a config's
    ``architecture`` names the registered head (``sae_head``)."""

    d_in: int
    d_sae: int
    sae_architecture: str = "standard"
    k: int | None = None
    apply_b_dec_to_input: bool = True
    rescale_acts_by_decoder_norm: bool = False
    hook_name: str | None = None

    def __post_init__(self) -> None:
        self.sae_config()  # its checks

    def sae_config(self) -> SparseAutoencoderConfig:
        return SparseAutoencoderConfig(
            d_in=self.d_in,
            d_sae=self.d_sae,
            architecture=self.sae_architecture,
            k=self.k,
            apply_b_dec_to_input=self.apply_b_dec_to_input,
            rescale_acts_by_decoder_norm=self.rescale_acts_by_decoder_norm,
            hook_name=self.hook_name,
        )


@register("sae_head", SAEHeadConfig)
class SAEHead(nn.Module):
    """A frozen SAE as a probe head: encode = the feature activations ``[N, d_sae]``, decode =
    the SAE's decoder (``f @ feature_directions + b_dec``), so a probe's edit
    a' = a + dec(f') − dec(f) moves an activation by Δf · (feature's decoder row) and keeps the
    SAE's reconstruction error."""

    def __init__(self, config: SAEHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.sae = SparseAutoencoder(config.sae_config())
        self.requires_grad_(False)  # imported, not trained here

    @classmethod
    def from_sparse_autoencoder(cls, sae: SparseAutoencoder) -> SAEHead:
        """The head holding a copy of ``sae``'s weights (float32, CPU)."""
        c = sae.config
        head = cls(
            SAEHeadConfig(
                d_in=c.d_in,
                d_sae=c.d_sae,
                sae_architecture=c.architecture,
                k=c.k,
                apply_b_dec_to_input=c.apply_b_dec_to_input,
                rescale_acts_by_decoder_norm=c.rescale_acts_by_decoder_norm,
                hook_name=c.hook_name,
            )
        )
        head.sae.load_state_dict({k: v.detach().float().cpu() for k, v in sae.state_dict().items()})
        return head.eval()

    @property
    def latent_dim(self) -> int:
        return self.config.d_sae

    @property
    def feature_directions(self) -> Tensor:
        """``[d_sae, d_in]``: the change of the reconstruction per unit of each feature."""
        return self.sae.feature_directions

    def encode(self, x: Tensor) -> Tensor:
        """Feature activations ``[N, d_sae]`` of activation vectors ``[N, d_in]``."""
        return self.sae.encode(_check_width(x, self.config.d_in, "SAEHead.encode"))

    def decode(self, f: Tensor) -> Tensor:
        """Reconstructions ``[N, d_in]`` of feature activations ``[N, d_sae]`` (b_dec included)."""
        return self.sae.decode(f)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))
