"""torch.library glue shared by the two 1D RoIAlign operator families (the C++
rcl_kernels::roi_align_1d and the Triton rcl_kernels::roi_align_1d_triton).

The fake kernels are this op's own. The autograd formula is SoI's (_segment_interp_registration.py): both
ops take two differentiable tensors followed by four non-tensor parameters, and both backward
operators take (grad_output, the two tensors, the parameters, two need-grad flags).
"""

from __future__ import annotations

import torch

from rcl_kernels._segment_interp_registration import backward_formula, setup_context

__all__ = ["backward_formula", "fake_backward", "fake_forward", "setup_context"]


def fake_forward(input, rois, output_size, spatial_scale, sampling_ratio, aligned):
    return input.new_empty((rois.shape[0], input.shape[1], output_size))


def fake_backward(grad_output, input, rois, output_size, spatial_scale, sampling_ratio, aligned,
                  need_input_grad, need_rois_grad):
    return (torch.empty_like(input, memory_format=torch.contiguous_format),
            torch.empty_like(rois, memory_format=torch.contiguous_format))
