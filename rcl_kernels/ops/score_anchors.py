"""score_anchors: SoI features plus coordinates through a two-layer MLP, the public functional.

Backends:
  reference  the literal composition Linear2(act(Linear1(cat(flatten(SoI), phi)))) in PyTorch
             (rcl_kernels/reference/score_anchors.py): the baseline; writes the (B, K, C, N) tensor.
  cpu        the same function computed by linearity (rcl_kernels/cpu/score_anchors.py):
             project the features through W1 once per video, then interpolate the projections;
             about C / (2 S) times less arithmetic, no (B, K, C, N) tensor. Inference runs the C++
             kernel score_anchors_hidden, autograd goes through PyTorch (F.embedding_bag), and
             without the compiled extension both go through PyTorch, so it is available whenever
             the device is the CPU.
  triton     the fused kernels (rcl_kernels/triton/score_anchors.py), forward and backward: the same
             factorisation on the GPU, with the interpolation weights built in registers and fed
             to tl.dot against the projected features, visiting only the time steps each tile of
             segments reads; registered through torch.library (fake kernels, autograd).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rcl_kernels._backends import OpBackends
from rcl_kernels._vocabulary import ACTIVATIONS, COORD_FEATURES, shape_of
from rcl_kernels.cpu.score_anchors import kernel_available, score_anchors_cpu, score_heads_cpu
from rcl_kernels.ops.segment_interp import check_segment_interp_args
from rcl_kernels.reference.score_anchors import score_anchors_reference
from rcl_kernels.triton import score_anchors as triton_score_anchors


@dataclass(frozen=True)
class _ScoringBackends(OpBackends):
    """OpBackends whose "cpu" backend runs on every CPU: its C++ kernel is used where the
    extension provides it, PyTorch otherwise, so the dispatcher is not asked."""

    def available(self, device_type: str) -> list[str]:
        found = super().available(device_type)
        if device_type == "cpu" and "cpu" not in found:
            found.insert(1, "cpu")
        return found


SCORE_ANCHORS_BACKENDS = _ScoringBackends(
    op_name="score_anchors",
    backends=("reference", "cpu", "triton"),
    auto_order={"cpu": ("cpu", "reference"), "cuda": ("triton", "reference")},
    triton_available=lambda: triton_score_anchors.AVAILABLE,
    dtypes={"triton": triton_score_anchors.DTYPES},  # no float64 tl.dot
)


def check_score_anchors_args(features, segments, w1, b1, w2, b2, num_samples, samples_per_point, context,
                             padding, coord_features, activation, num_steps) -> int:
    """Raise an error naming the offending argument; return num_samples (inferred from w1 when
    None). Never looks at tensor values (no host synchronisation)."""
    if coord_features not in COORD_FEATURES:
        raise ValueError(f"score_anchors: coord_features must be one of {tuple(COORD_FEATURES)}, "
                         f"got {coord_features!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"score_anchors: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if not isinstance(features, torch.Tensor) or features.dim() != 3:
        raise ValueError(f"score_anchors: features must be a tensor of shape (B, C, T), got {shape_of(features)}")
    if not isinstance(w1, torch.Tensor) or w1.dim() != 2:
        raise ValueError(f"score_anchors: w1 must be a tensor of shape (hidden, C * num_samples + E), "
                         f"got {shape_of(w1)}")
    C = features.shape[1]
    E = COORD_FEATURES[coord_features]
    if num_samples is None:
        # Infer N from w1's width; C == 0 leaves it undetermined.
        if C == 0 or (w1.shape[1] - E) % C != 0 or w1.shape[1] <= E:
            raise ValueError(f"score_anchors: w1 has {w1.shape[1]} columns, which is not C * num_samples + E "
                             f"for C = {C}, E = {E} ({coord_features!r}); pass num_samples explicitly")
        num_samples = (w1.shape[1] - E) // C
    try:
        check_segment_interp_args(features, segments, num_samples, samples_per_point, context, padding)
    except (ValueError, TypeError) as exc:  # same rules as the SoI op; name this op in the message
        raise type(exc)(str(exc).replace("segment_interp:", "score_anchors:", 1)) from None
    if isinstance(num_samples, int) and w1.shape[1] != C * num_samples + E:
        raise ValueError(f"score_anchors: w1 must have C * num_samples + E = {C} * {num_samples} + {E} = "
                         f"{C * num_samples + E} columns, got shape {tuple(w1.shape)}")
    H = w1.shape[0]
    if not isinstance(w2, torch.Tensor) or w2.dim() != 2 or w2.shape[1] != H:
        raise ValueError(f"score_anchors: w2 must be a tensor of shape (out_channels, {H}), got {shape_of(w2)}")
    for name, bias, size in (("b1", b1, H), ("b2", b2, w2.shape[0])):
        if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (size,)):
            raise ValueError(f"score_anchors: {name} must be None or a tensor of shape ({size},), got {shape_of(bias)}")
    for name, t in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)):
        if t is None:
            continue
        if t.dtype != features.dtype:
            raise TypeError(f"score_anchors: {name} must have the features' dtype {features.dtype}, got {t.dtype}")
        if t.device != features.device:
            raise ValueError(f"score_anchors: {name} is on {t.device} but features is on {features.device}")
    if num_steps is not None and (isinstance(num_steps, bool) or not isinstance(num_steps, (int, float))
                                  or not math.isfinite(num_steps) or num_steps <= 0):
        raise ValueError(f"score_anchors: num_steps must be None or a finite number > 0, got {num_steps!r}")
    return num_samples


_AUTOCAST_CASTS = (torch.float32, torch.float16, torch.bfloat16)


def score_anchors(
    features: torch.Tensor,
    segments: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor | None,
    w2: torch.Tensor,
    b2: torch.Tensor | None,
    *,
    num_samples: int | None = None,
    samples_per_point: int = 1,
    context: float = 0.0,
    padding: str = "zeros",
    coord_features: str = "ses",
    activation: str = "relu",
    num_steps: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Score continuous segments: Linear2(act(Linear1(cat(flatten(SoI(F; x)), phi(x))))).

    Args:
        features: (B, C, T) float16 / bfloat16 / float32 / float64 (float64: reference and cpu
            backends only), any strides.
        segments: (B, K, 2) float32 or float64 (start, end) in feature steps.
        w1: (hidden, C * N + E) in the features' dtype. Column c * N + n multiplies channel c at
            sample point n (segment_interp's (C, N) block flattened row-major); the last E
            columns multiply the coordinate features.
        b1: (hidden,) or None.  w2: (out_channels, hidden).  b2: (out_channels,) or None.
        num_samples: N; inferred from w1's width when None.
        samples_per_point, context, padding: the SoI sampling rules (rcl_kernels.segment_interp).
        coord_features: phi(x), with T = num_steps (default: the feature length):
            "ses" = (start / T, end / T, (end - start) / T), E = 3;
            "se" = (start / T, end / T), E = 2;  "none": E = 0.
        activation: "relu" or "gelu" (exact erf form).
        backend: "auto", "reference", "cpu" or "triton" (see rcl_kernels.info()).

    Returns (B, K, out_channels) in the features' dtype. Differentiable in features, segments
    and all weights. A segment with a NaN coordinate scores NaN (other segments are unaffected);
    nothing is read out of bounds. K = 0 or B = 0 gives an empty result.

    Under torch.autocast the op follows nn.Linear's rule: features and weights are cast to the
    autocast dtype (so float32 master weights may be passed with any features), segments stay as
    they are, and every backend computes in that dtype with autocast off inside (otherwise some
    backends' internal matmuls would change dtype half-way). The result has the autocast dtype.
    """
    device_type = features.device.type if isinstance(features, torch.Tensor) else "cpu"
    if torch.is_autocast_enabled(device_type):
        low = torch.get_autocast_dtype(device_type)
        # float64 is left alone, as autocast leaves it
        features, w1, b1, w2, b2 = (t.to(low) if isinstance(t, torch.Tensor) and t.dtype in _AUTOCAST_CASTS else t
                                    for t in (features, w1, b1, w2, b2))
        with torch.autocast(device_type, enabled=False):
            return score_anchors(features, segments, w1, b1, w2, b2, num_samples=num_samples,
                                 samples_per_point=samples_per_point, context=context, padding=padding,
                                 coord_features=coord_features, activation=activation, num_steps=num_steps,
                                 backend=backend)
    num_samples = check_score_anchors_args(features, segments, w1, b1, w2, b2, num_samples, samples_per_point,
                                           context, padding, coord_features, activation, num_steps)
    H = w1.shape[0]
    unlaunchable = () if triton_score_anchors.launchable(features.shape[2], num_samples, H) else ("triton",)
    chosen = SCORE_ANCHORS_BACKENDS.resolve(backend, features.device, features.dtype, unlaunchable)
    steps = float(num_steps) if num_steps is not None else float(max(features.shape[2], 1))
    args = (features, segments, w1, b1, w2, b2, num_samples, samples_per_point, float(context), padding,
            coord_features, activation, steps)
    if chosen == "triton":
        return triton_score_anchors.score_anchors_triton(*args)
    if chosen == "cpu":
        return score_anchors_cpu(*args)
    return score_anchors_reference(*args)


def score_anchors_heads(
    features: torch.Tensor,
    segments: torch.Tensor,
    heads,
    *,
    num_samples: int | None = None,
    samples_per_point: int = 1,
    context: float = 0.0,
    padding: str = "zeros",
    coord_features: str = "ses",
    activation: str = "relu",
    num_steps: float | None = None,
    backend: str = "auto",
) -> list[torch.Tensor]:
    """score_anchors of several MLPs over the same segments and sampling rules: `heads` is a
    sequence of (w1, b1, w2, b2), one output per head, each equal to score_anchors(features,
    segments, w1, b1, w2, b2, ...) with the same keyword arguments (to rounding).

    On the "cpu" backend without autograd (inference) the heads share the work that does not
    depend on their weights: the stacked first layers project the features once, and each
    segment's interpolation taps are computed once for all heads (RCL's scorer and its offset
    regressor: detection of a THUMOS14 window batch pays the taps once instead of twice).
    Elsewhere (autograd, autocast, other backends) the heads are scored one by one.
    """
    heads = [tuple(head) for head in heads]
    if not heads or any(len(head) != 4 for head in heads):
        raise ValueError("score_anchors_heads: heads must be a non-empty sequence of (w1, b1, w2, b2), "
                         f"got {len(heads)} heads of lengths {[len(head) for head in heads]}")
    device_type = features.device.type if isinstance(features, torch.Tensor) else "cpu"
    # Under autocast score_anchors casts the weights before checking them: head by head.
    shared = len(heads) > 1 and not torch.is_autocast_enabled(device_type)
    if shared:
        samples = [check_score_anchors_args(features, segments, *head, num_samples, samples_per_point, context,
                                            padding, coord_features, activation, num_steps) for head in heads]
        if len(set(samples)) != 1:
            raise ValueError(f"score_anchors_heads: every head's w1 must imply the same num_samples, got {samples}")
        grad_needed = torch.is_grad_enabled() and any(
            isinstance(t, torch.Tensor) and t.requires_grad for t in (features, segments, *sum(heads, ())))
        shared = (not grad_needed and kernel_available()
                  and SCORE_ANCHORS_BACKENDS.resolve(backend, features.device, features.dtype, ()) == "cpu")
    if not shared:
        return [score_anchors(features, segments, *head, num_samples=num_samples, samples_per_point=samples_per_point,
                              context=context, padding=padding, coord_features=coord_features,
                              activation=activation, num_steps=num_steps, backend=backend) for head in heads]
    steps = float(num_steps) if num_steps is not None else float(max(features.shape[2], 1))
    return score_heads_cpu(features, segments, heads, samples[0], samples_per_point, float(context), padding,
                           coord_features, activation, steps)
