"""fusedgan: fused, numerically stable GAN losses (loss and gradient in one pass)."""
from __future__ import annotations

__version__ = "0.1.0"

from . import codes, ops  # noqa: E402  (ops registers every operator, once)
from . import backends, compat, kinds, nn, reference  # noqa: E402
from .backends import available_backends, get_backend, set_backend, use_backend  # noqa: E402
from .functional import discriminator_loss, feature_matching_loss, generator_loss  # noqa: E402
from .plan import STAT_KEYS, GANLossResult  # noqa: E402
from . import penalties  # noqa: E402
from .penalties import (  # noqa: E402
    LazyRegularization,
    dragan,
    gradient_penalty,
    r1,
    r1_penalty,
    r2,
    r2_penalty,
    wgan_gp,
)
from . import regularizers  # noqa: E402
from .regularizers import (  # noqa: E402
    LeCamRegularizer,
    PathLengthRegularizer,
    adaptive_gan_weight,
    approx_r1,
    approx_r1_penalty,
    approx_r2,
    cosine_decay,
    path_length_noise,
)
from .compat import is_patched, patch_torch, patched, unpatch_torch  # noqa: E402
from .kinds import KINDS  # noqa: E402
from .info import info  # noqa: E402

__all__ = [
    "GANLossResult",
    "LazyRegularization",
    "LeCamRegularizer",
    "PathLengthRegularizer",
    "adaptive_gan_weight",
    "approx_r1",
    "approx_r1_penalty",
    "approx_r2",
    "cosine_decay",
    "path_length_noise",
    "regularizers",
    "STAT_KEYS",
    "codes",
    "dragan",
    "gradient_penalty",
    "penalties",
    "r1",
    "r1_penalty",
    "r2",
    "r2_penalty",
    "wgan_gp",
    "KINDS",
    "available_backends",
    "backends",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_loss",
    "get_backend",
    "info",
    "is_patched",
    "patch_torch",
    "patched",
    "unpatch_torch",
    "kinds",
    "nn",
    "ops",
    "reference",
    "set_backend",
    "use_backend",
]
