"""probe_disentangle: find and steer disentangled directions inside pretrained networks."""

__version__ = "0.1.0"

from . import losses, registry  # noqa: E402
from .adapters import attach  # noqa: E402
from .heads import (  # noqa: E402
    CausalVAEConfig,
    CausalVAEHead,
    InfoGANHead,
    InfoGANHeadConfig,
    JointVAEHead,
    JointVAEHeadConfig,
    SAEHead,
    SAEHeadConfig,
    VAEHead,
    VAEHeadConfig,
)
from .image_models import ConvVAE, ConvVAEConfig, InfoGAN, InfoGANConfig  # noqa: E402
from .io import load, save  # noqa: E402
from .multi_hook import FittedProbes, fit_probes, hook_folder  # noqa: E402
from .probe import Probe, load_directions  # noqa: E402
from .store import ActivationStore, Normalizer, SharedForward  # noqa: E402
from .train import NonFiniteError, TrainConfig, Trainer, TrainResult, fit, resolve_device  # noqa: E402

__all__ = [
    "__version__",
    "losses",
    "registry",
    "attach",
    "Probe",
    "load_directions",
    "fit_probes",
    "FittedProbes",
    "hook_folder",
    "ActivationStore",
    "Normalizer",
    "SharedForward",
    "VAEHead",
    "VAEHeadConfig",
    "InfoGANHead",
    "InfoGANHeadConfig",
    "JointVAEHead",
    "JointVAEHeadConfig",
    "CausalVAEHead",
    "CausalVAEConfig",
    "SAEHead",
    "SAEHeadConfig",
    "ConvVAE",
    "ConvVAEConfig",
    "InfoGAN",
    "InfoGANConfig",
    "save",
    "load",
    "Trainer",
    "TrainConfig",
    "TrainResult",
    "NonFiniteError",
    "fit",
    "resolve_device",
]
