"""Modern GAN regularizers: approximate R1/R2, gamma schedules, LeCam, path length, adaptive weight.

- ``approx_r1_penalty(logits, perturbed_logits, *, sigma, gamma)``:
  ``(gamma/2) E_b sum (p - l)^2 / sigma^2`` (Seaweed-APT, Lin et al. 2025); ``approx_r1(D, real)``
  and ``approx_r2(D, fake)`` with ``p = D(x + sigma * eps)``.
- ``cosine_decay(step, *, total_steps, start, end, warmup_steps)``: a gamma schedule (R3GAN,
  Huang et al. 2024), a plain float.
- ``LeCamRegularizer(decay)``: ``E relu(r - ema_f)^2 + E relu(ema_r - f)^2`` (Tseng et al. 2021).
- ``PathLengthRegularizer(decay)``: ``E_b (len_b - m)^2``, ``m`` the moving mean of the lengths
  (StyleGAN2, Karras et al. 2020); ``path_length_noise(images)``.
- ``adaptive_gan_weight(rec, g, W)``: ``clamp(||d rec/dW|| / (||d g/dW|| + eps), 0, max)``
  (VQGAN, Esser et al. 2021).

What runs: ``approx_r1_penalty`` is a plan over ``fusedgan::rel_gan_loss`` (the pairwise
relativistic logit ``d = perturbed - logits``, element ``HALF_SQUARE`` with label 0, coefficient
``gamma / (B sigma^2)``, reduction ``sum``): one operator call on every backend, its gradient
into both inputs from the one C++ autograd of that family.  ``PathLengthRegularizer`` takes the
per-sample sums of squares of ``grad_ws`` with ``fusedgan::gan_penalty`` (one fused pass over the
large tensor forward, one backward); the rest acts on ``[B]`` values.  ``LeCamRegularizer`` is
one ``fusedgan::gan_loss`` call (elements ``SQ_RELU_ABOVE`` / ``SQ_RELU_BELOW`` with the averages
as tensor labels; in training mode its ``loss_terms_stats`` pass also gives the sums of the logits,
whence the batch means and the update, on the device).  ``adaptive_gan_weight`` is plain PyTorch
on norms (no host sync).  Docs: docs/penalties.md.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Optional

import torch
from torch import nn

from . import plan as P
from . import reference
from .codes import Elem, Reduction, RelLogit, StatCol, acc_dtype

Tensor = torch.Tensor

__all__ = ["LeCamRegularizer", "PathLengthRegularizer", "adaptive_gan_weight", "approx_r1",
           "approx_r1_penalty", "approx_r2", "cosine_decay", "path_length_noise"]


# ---------------------------------------------------------------------------------------------
# Argument checks (errors name the argument).


def _real(value, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {value}")
    if nonneg and value < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value}")
    return value


def _decay(value, name: str = "decay") -> float:
    value = _real(value, name)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value}")
    return value


def _int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    return int(value)


def _float_tensor(x, name: str, what: str = "tensor") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor ({what}), got {type(x).__name__}")
    if x.dtype not in P.FLOAT_DTYPES:
        raise TypeError(f"{name}: must be float16, bfloat16, float32 or float64, got {x.dtype}")


def _first(out):
    """D's output: the first element when D returns a tuple or list."""
    return out[0] if isinstance(out, (tuple, list)) else out


# ---------------------------------------------------------------------------------------------
# Approximate R1 / R2 by finite differences.


def approx_r1_penalty(logits: Tensor, perturbed_logits: Tensor, *, sigma: float, gamma: float = 10.0,
                      backend: Optional[str] = None) -> Tensor:
    """``(gamma / 2) * E_b sum_{non-batch} (perturbed_logits - logits)^2 / sigma^2``.

    ``logits = D(x)``, ``perturbed_logits = D(x + sigma * eps)`` with ``eps ~ N(0, I)``: to first
    order ``D(x + sigma eps) - D(x) = sigma eps . grad D``, whose square has the expectation
    ``sigma^2 ||grad D||^2``, so this estimates StyleGAN2's R1 ``(gamma/2) E_b ||grad_x D||^2``
    and ``gamma`` keeps its meaning.  No double backward.  The gradient flows into both inputs.

    Both inputs are ``[B, ...]`` of the same shape (any float dtype; they are promoted to a common
    one).  Float32 result (float64 for float64 inputs).  One ``fusedgan::rel_gan_loss`` call.
    """
    if (type(sigma) is float and type(gamma) is float and type(logits) is torch.Tensor
            and type(perturbed_logits) is torch.Tensor):  # the common call: cheapest checks first
        out = _approx_r1_plain(logits, perturbed_logits, sigma, gamma, backend)
        if out is not None:
            return out
    _float_tensor(logits, "logits", "D's output at the samples")
    _float_tensor(perturbed_logits, "perturbed_logits", "D's output at the perturbed samples")
    P.check_same_device([logits, perturbed_logits], ["logits", "perturbed_logits"])
    if logits.dim() < 1:
        raise ValueError(f"logits: expected a batch-first tensor [B, ...], got shape {tuple(logits.shape)}")
    if perturbed_logits.shape != logits.shape:
        raise ValueError(f"perturbed_logits: shape {tuple(perturbed_logits.shape)} differs from logits' "
                         f"shape {tuple(logits.shape)} (the same samples, perturbed)")
    sigma = _real(sigma, "sigma", positive=True)
    gamma = _real(gamma, "gamma", nonneg=True)
    batch = logits.shape[0]
    dtype = P.common_dtype([logits, perturbed_logits])
    if batch == 0:  # the mean over no samples: NaN, as torch's mean (graph kept)
        acc = acc_dtype(dtype)
        return (perturbed_logits.to(acc).sum() - logits.to(acc).sum()) * math.nan
    denom = batch * sigma * sigma
    coef = gamma / denom if denom > 0 else math.inf  # times 0.5 * d^2 per element, summed
    if not math.isfinite(coef):
        raise ValueError(f"sigma: {sigma} is too small (gamma / sigma^2 overflows)")
    return _approx_r1_call(logits.to(dtype), perturbed_logits.to(dtype), coef, backend)


def _approx_r1_call(logits: Tensor, perturbed_logits: Tensor, coef: float, backend) -> Tensor:
    """The one rel_gan_loss call of approx_r1_penalty on checked logits of one dtype."""
    args = ([perturbed_logits], [logits], [None], [0], _APPROX_LOGIT, _APPROX_ELEM, [0.0], [coef], _SUM, False)
    return P.run("rel_gan_loss", args, logits.device, backend)[0]


_APPROX_LOGIT, _APPROX_ELEM, _SUM = [int(RelLogit.R_MINUS_F)], [int(Elem.HALF_SQUARE)], int(Reduction.SUM)


def _approx_r1_plain(logits: Tensor, perturbed_logits: Tensor, sigma: float, gamma: float, backend):
    """approx_r1_penalty where nothing needs a closer look (one float dtype, one shape and device,
    a batch, sigma > 0 and gamma >= 0 finite, gamma / sigma^2 finite), else None (the checks then
    name what is wrong)."""
    dtype = logits.dtype
    shape = logits.shape
    if (dtype is not perturbed_logits.dtype or dtype not in P.FLOAT_DTYPES or len(shape) == 0 or shape[0] == 0
            or perturbed_logits.shape != shape or perturbed_logits.device != logits.device
            or not (0.0 < sigma < math.inf and 0.0 <= gamma < math.inf)):
        return None
    denom = shape[0] * sigma * sigma
    if not denom > 0 or not math.isfinite(gamma / denom):
        return None
    coef = gamma / denom
    return _approx_r1_call(logits, perturbed_logits, coef, backend)


def _perturbed(D: Callable, x: Tensor, sigma: float, generator: Optional[torch.Generator]) -> Tensor:
    if generator is None:
        eps = torch.randn_like(x)
    else:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
        eps = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    return _first(D(x + sigma * eps))


def approx_r1(D: Callable, real: Tensor, *, sigma: float = 0.01, gamma: float = 10.0,
              logits: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
              backend: Optional[str] = None) -> Tensor:
    """Approximate R1 at ``real``: ``approx_r1_penalty(D(real), D(real + sigma * randn), ...)``.

    ``logits=``: D's output at ``real`` from the D step itself (keep its graph), so only one extra
    forward runs.  ``generator`` draws the noise (on its own device, then moved to ``real``'s).
    ``real`` is detached inside.  If D returns a tuple or list, its first element is used.
    """
    _float_tensor(real, "real", "samples")
    sigma = _real(sigma, "sigma", positive=True)
    real = real.detach()
    if logits is None:
        logits = _first(D(real))
    elif not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits: expected a torch.Tensor (D's output at the samples) or None, "
                        f"got {type(logits).__name__}")
    perturbed = _perturbed(D, real, sigma, generator)
    return approx_r1_penalty(logits, perturbed, sigma=sigma, gamma=gamma, backend=backend)


def approx_r2(D: Callable, fake: Tensor, *, sigma: float = 0.01, gamma: float = 10.0,
              logits: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
              backend: Optional[str] = None) -> Tensor:
    """Approximate R2: ``approx_r1`` at the (detached) fake samples."""
    _float_tensor(fake, "fake", "samples")
    return approx_r1(D, fake, sigma=sigma, gamma=gamma, logits=logits, generator=generator, backend=backend)


# ---------------------------------------------------------------------------------------------
# Gamma schedules.


def cosine_decay(step: int, *, total_steps: int, start: float, end: float, warmup_steps: int = 0) -> float:
    """A cosine schedule from ``start`` to ``end`` (R3GAN decays gamma, e.g. 150 to 15).

    Linear from ``end`` to ``start`` over ``warmup_steps``; then
    ``end + (start - end) * (1 + cos(pi * p)) / 2`` with ``p = (step - warmup_steps) /
    (total_steps - warmup_steps)``; ``end`` from ``total_steps`` on.  A plain float.
    """
    step = _int(step, "step")
    total_steps = _int(total_steps, "total_steps")
    warmup_steps = _int(warmup_steps, "warmup_steps")
    start = _real(start, "start")
    end = _real(end, "end")
    if step < 0:
        raise ValueError(f"step: expected a step >= 0, got {step}")
    if total_steps < 0:
        raise ValueError(f"total_steps: expected a number of steps >= 0, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps: expected 0 <= warmup_steps <= total_steps ({total_steps}), "
                         f"got {warmup_steps}")
    if step < warmup_steps:
        return end + (start - end) * step / warmup_steps
    if step >= total_steps:
        return end
    p = (step - warmup_steps) / (total_steps - warmup_steps)
    return end + (start - end) * (1.0 + math.cos(math.pi * p)) / 2.0


# ---------------------------------------------------------------------------------------------
# LeCam regularization.


class LeCamRegularizer(nn.Module):
    """LeCam regularization (Tseng et al., CVPR 2021): ``reg(real_logits, fake_logits)`` returns

    ``E relu(r - ema_fake)^2 + E relu(ema_real - f)^2``

    with the moving averages of D's mean real and fake logits **from before this batch**, then
    (in training mode) updates them: ``ema = decay * ema + (1 - decay) * mean(batch)``.  The
    averages are float32 buffers ``ema_real`` and ``ema_fake`` (start at 0, saved in
    ``state_dict``, moved by ``.to()``); the update is on the device, no host sync.  In eval mode
    the averages are read and not updated.  Float32 result (float64 for float64 logits); any
    float logits (promoted to a common dtype); the gradient flows into both, not into the averages.

    One fused pass: a single ``fusedgan::gan_loss`` call (``backend=`` chooses its backend) runs
    both terms (element functions ``SQ_RELU_ABOVE`` on r with the label ``ema_fake`` read from
    device memory, ``SQ_RELU_BELOW`` on f with ``ema_real``) and, in training mode, the sums of
    the logits (``loss_terms_stats``' ``SUM_X`` column) from the same reads; the means and the two
    ``lerp_`` updates are tiny device ops.  The averages reach the kernel as labels do
    (``plan.aux_tensor``): in the maths dtype (float32, float64 for float64 logits), so with
    float16/bfloat16 logits the float32 thresholds are read unrounded.

    Under DistributedDataParallel each rank updates its own buffers from its own batch, so the
    ranks' averages differ slightly (and the module is usually not inside the DDP wrapper, which
    would broadcast rank 0's buffers).  For identical averages all-reduce them after each update:
    ``dist.all_reduce(reg.ema_real); reg.ema_real /= world`` (and ``ema_fake``).
    """

    ema_real: Tensor
    ema_fake: Tensor

    def __init__(self, decay: float = 0.99):
        super().__init__()
        self.decay = _decay(decay)
        self.register_buffer("ema_real", torch.zeros((), dtype=torch.float32))
        self.register_buffer("ema_fake", torch.zeros((), dtype=torch.float32))

    def extra_repr(self) -> str:
        return f"decay={self.decay}"

    def forward(self, real_logits: Tensor, fake_logits: Tensor, backend: Optional[str] = None) -> Tensor:
        r, f = self._check(real_logits, fake_logits)
        stats = self.training
        out = P.run("gan_loss", self._args(r, f, stats), r.device, backend)
        if stats:  # the batch means from the same pass: each term's sum of its logits
            sums = out[2][:, int(StatCol.SUM_X)]
            w = 1.0 - self.decay
            with torch.no_grad():
                self.ema_real.lerp_((sums[0] / r.numel()).to(self.ema_real.dtype), w)
                self.ema_fake.lerp_((sums[1] / f.numel()).to(self.ema_fake.dtype), w)
        return out[0]

    def _check(self, real_logits: Tensor, fake_logits: Tensor):
        """The logits in their common dtype, after the checks (errors name the argument)."""
        _float_tensor(real_logits, "real_logits", "D's logits at real samples")
        _float_tensor(fake_logits, "fake_logits", "D's logits at fake samples")
        P.check_same_device([real_logits, fake_logits], ["real_logits", "fake_logits"])
        if self.ema_real.device != real_logits.device:
            raise ValueError(f"real_logits: is on {real_logits.device} but the regularizer's buffers are on "
                             f"{self.ema_real.device} (move it with .to())")
        for x, n in ((real_logits, "real_logits"), (fake_logits, "fake_logits")):
            if x.numel() == 0:
                raise ValueError(f"{n}: is empty (its mean would make the moving average NaN)")
        dtype = P.common_dtype([real_logits, fake_logits])
        return real_logits.to(dtype), fake_logits.to(dtype)

    def _args(self, r: Tensor, f: Tensor, stats: bool) -> tuple:
        """``gan_loss``'s arguments: ``SQ_RELU_ABOVE`` on r with threshold ema_fake and
        ``SQ_RELU_BELOW`` on f with threshold ema_real, both means; ``stats`` adds the sums."""
        # Copies of the averages from before this batch: the operator keeps its label tensors
        # for backward, and the update below changes the buffers in place.
        emas = torch.stack([self.ema_fake.detach(), self.ema_real.detach()])
        labels = [P.aux_tensor(emas[0], "ema_fake", r, "real_logits"),
                  P.aux_tensor(emas[1], "ema_real", f, "fake_logits")]
        return ([r, f], labels, [None, None], _LECAM_ELEMS, [0.0, 0.0], [1.0, 1.0], int(Reduction.MEAN), stats)


_LECAM_ELEMS = [int(Elem.SQ_RELU_ABOVE), int(Elem.SQ_RELU_BELOW)]


# ---------------------------------------------------------------------------------------------
# Path-length regularization.


def path_length_noise(images: Tensor, *, generator: Optional[torch.Generator] = None) -> Tensor:
    """``randn_like(images) / sqrt(H * W)`` (StyleGAN2): the noise ``y`` of the path-length term,
    whose ``(images * y).sum()`` is differentiated with respect to ``ws``.  ``images``:
    ``[B, C, H, W]`` (any batch-first tensor with at least 3 dims; H, W the last two)."""
    _float_tensor(images, "images", "the generator's output")
    if images.dim() < 3:
        raise ValueError(f"images: expected [B, C, H, W] (at least 3 dims), got shape {tuple(images.shape)}")
    hw = images.shape[-1] * images.shape[-2]
    if generator is None:
        noise = torch.randn_like(images)
    else:
        noise = torch.randn(images.shape, generator=generator, device=generator.device,
                            dtype=images.dtype).to(images.device)
    return noise / math.sqrt(hw) if hw else noise


class PathLengthRegularizer(nn.Module):
    """StyleGAN2's path-length regularization.  ``pl(grad_ws)`` with ``grad_ws`` the gradient of
    ``(images * path_length_noise(images)).sum()`` with respect to ``ws`` (``create_graph=True``),
    ``[B, num_ws, w_dim]`` or ``[B, w_dim]``:

    - ``length_b = sqrt(mean_ws sum_wdim g^2)``
    - ``m = pl_mean + decay * (mean_b length_b - pl_mean)``
    - returns ``E_b (length_b - m)^2``

    The gradient flows through ``m``'s batch mean too, as in StyleGAN2-ADA's ``training/loss.py``;
    the float32 buffer ``pl_mean`` (starts at 0, in ``state_dict``) gets ``m`` detached, in
    training mode only.  Multiply by the weight (StyleGAN2: 2) and the lazy interval yourself.
    The per-sample sums of squares run as one ``fusedgan::gan_penalty`` pass (``backend=``
    chooses its backend); ``sqrt`` is 0 with a zero gradient at a zero length (StyleGAN2's plain
    ``sqrt`` gives NaN there).  Under DDP each rank holds its own ``pl_mean`` unless you
    all-reduce it.
    """

    pl_mean: Tensor

    def __init__(self, decay: float = 0.01):
        super().__init__()
        self.decay = _decay(decay)
        self.register_buffer("pl_mean", torch.zeros((), dtype=torch.float32))

    def extra_repr(self) -> str:
        return f"decay={self.decay}"

    def lengths(self, grad_ws: Tensor, backend: Optional[str] = None) -> Tensor:
        """The per-sample path lengths ``[B]`` (float32; float64 for float64 ``grad_ws``)."""
        from .penalties import gradient_penalty

        _float_tensor(grad_ws, "grad_ws", "the gradient with respect to ws")
        if grad_ws.dim() not in (2, 3):
            raise ValueError(f"grad_ws: expected [B, num_ws, w_dim] or [B, w_dim], got shape "
                             f"{tuple(grad_ws.shape)}")
        if grad_ws.shape[0] == 0:
            raise ValueError("grad_ws: the batch is empty (the mean length would make pl_mean NaN)")
        num_ws = grad_ws.shape[1] if grad_ws.dim() == 3 else 1
        sumsq = gradient_penalty(grad_ws, center=0.0, norm="sample", reduction="none", backend=backend)
        return reference.safe_sqrt(sumsq / max(num_ws, 1))

    def forward(self, grad_ws: Tensor, backend: Optional[str] = None) -> Tensor:
        lengths = self.lengths(grad_ws, backend)
        if self.pl_mean.device != lengths.device:
            raise ValueError(f"grad_ws: is on {grad_ws.device} but the regularizer's buffer is on "
                             f"{self.pl_mean.device} (move it with .to())")
        prev = self.pl_mean.detach().to(lengths.dtype, copy=True)
        m = prev + self.decay * (lengths.mean() - prev)
        if self.training:
            with torch.no_grad():
                self.pl_mean.copy_(m.detach())
        return (lengths - m).square().mean()


# ---------------------------------------------------------------------------------------------
# Adaptive GAN weight (VQGAN).


def adaptive_gan_weight(rec_loss: Tensor, g_loss: Tensor, last_layer_weight: Tensor, *, eps: float = 1e-4,
                        max_weight: float = 1e4) -> Tensor:
    """VQGAN's adaptive weight of the GAN loss (Esser et al. 2021, taming-transformers):
    ``clamp(||d rec_loss / d W|| / (||d g_loss / d W|| + eps), 0, max_weight)``, detached.

    ``W`` is the last layer's weight of the decoder (both losses must depend on it).  The graphs
    are kept (``retain_graph=True``) for the losses' own backward.  A 0-dim float32 tensor
    (float64 for a float64 ``W``), no host sync.
    """
    for x, n in ((rec_loss, "rec_loss"), (g_loss, "g_loss")):
        _float_tensor(x, n, "a loss")
        if x.numel() != 1:
            raise ValueError(f"{n}: expected a scalar loss, got shape {tuple(x.shape)}")
        if not x.requires_grad:
            raise ValueError(f"{n}: does not require grad (no graph to last_layer_weight)")
    _float_tensor(last_layer_weight, "last_layer_weight", "the decoder's last layer weight")
    if not last_layer_weight.requires_grad:
        raise ValueError("last_layer_weight: does not require grad")
    eps = _real(eps, "eps", positive=True)
    max_weight = _real(max_weight, "max_weight", nonneg=True)
    grads = []
    for x, n in ((rec_loss, "rec_loss"), (g_loss, "g_loss")):
        (g,) = torch.autograd.grad(x.reshape(()), last_layer_weight, retain_graph=True, allow_unused=True)
        if g is None:
            raise ValueError(f"{n}: does not depend on last_layer_weight")
        grads.append(g.detach().to(acc_dtype(g.dtype)))
    ratio = torch.linalg.vector_norm(grads[0]) / (torch.linalg.vector_norm(grads[1]) + eps)
    return ratio.clamp(0.0, max_weight).detach()
