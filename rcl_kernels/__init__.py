"""rcl_kernels: custom kernels for RCL-style temporal action detection.

Importing the package loads the compiled operators (if built) and registers the Triton ones;
it never initialises CUDA. rcl_kernels.info() reports what was built.
"""

__version__ = "0.1.0"

from rcl_kernels._info import info  # noqa: E402
from rcl_kernels.ops.segment_interp import segment_interp  # noqa: E402
from rcl_kernels.ops.soft_nms import SoftNMSResult, soft_nms  # noqa: E402
from rcl_kernels.ops.anchor_scoring import score_anchors  # noqa: E402
from rcl_kernels.ops.roi_align_1d import roi_align_1d  # noqa: E402
from rcl_kernels.nn.anchor_scorer import AnchorScorer  # noqa: E402

__all__ = ["__version__", "AnchorScorer", "info", "roi_align_1d", "score_anchors", "segment_interp", "SoftNMSResult", "soft_nms"]


def __getattr__(name):
    # Pure-Python subpackages load on first use (rcl_kernels.evaluation, rcl_kernels.data,
    # rcl_kernels.models), so `import rcl_kernels` does not pay for them.
    if name in ("data", "evaluation", "models"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
