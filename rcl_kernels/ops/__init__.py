"""Public ops: validation, backend choice and torch.library registration (fake + autograd).

Importing this package registers every operator (torch.ops.rcl_kernels.*): the compiled ones with
their fake and autograd rules, and the Triton ones.
"""

from rcl_kernels.ops import roi_align_1d, score_anchors, segment_interp, soft_nms  # noqa: F401
