"""torch.library glue shared by the two SoI operator families (the C++ rcl_kernels::segment_interp
and the Triton rcl_kernels::segment_interp_triton): fake kernels and the autograd formula, which
calls the family's own backward operator."""

from __future__ import annotations

from typing import Callable

import torch


def fake_forward(features, segments, num_samples, samples_per_point, context, padding):
    B, C, _ = features.shape
    return features.new_empty((B, segments.shape[1], C, num_samples))


def fake_backward(grad_output, features, segments, num_samples, samples_per_point, context, padding,
                  need_features_grad, need_segments_grad):
    return (torch.empty_like(features, memory_format=torch.contiguous_format),
            torch.empty_like(segments, memory_format=torch.contiguous_format))


def setup_context(ctx, inputs, output):
    features, segments, num_samples, samples_per_point, context, padding = inputs
    ctx.save_for_backward(features, segments)
    ctx.params = (num_samples, samples_per_point, context, padding)


def backward_formula(backward_op: Callable) -> Callable:
    """The autograd backward of a forward op whose gradients `backward_op` computes in one call."""

    def backward(ctx, grad_output):
        features, segments = ctx.saved_tensors
        need_f, need_s = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_f, grad_s = backward_op(grad_output, features, segments, *ctx.params, need_f, need_s)
        return (grad_f if need_f else None), (grad_s if need_s else None), None, None, None, None

    return backward
