"""rcl_kernels: custom kernels for RCL-style temporal action detection.

Importing the package loads the compiled operators (if built) and registers the Triton ones;
it never initialises CUDA. rcl_kernels.info() reports what was built.
"""

from rcl_kernels._info import info
from rcl_kernels._version import __version__
from rcl_kernels.nn.boundary_matching import BoundaryMatching
from rcl_kernels.nn.score_anchors import AnchorScorer
from rcl_kernels.ops.roi_align_1d import roi_align_1d
from rcl_kernels.ops.score_anchors import score_anchors
from rcl_kernels.ops.segment_interp import segment_interp
from rcl_kernels.ops.soft_nms import SoftNMSResult, soft_nms

__all__ = ["__version__", "AnchorScorer", "BoundaryMatching", "info", "roi_align_1d", "score_anchors", "segment_interp", "SoftNMSResult", "soft_nms"]


def __getattr__(name):
    # Pure-Python subpackages load on first use (rcl_kernels.evaluation, rcl_kernels.data,
    # rcl_kernels.models), so `import rcl_kernels` does not pay for them.
    if name in ("data", "evaluation", "models"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
