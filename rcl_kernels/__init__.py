"""rcl_kernels: custom kernels for RCL-style temporal action detection.

Importing the package is cheap: it imports neither torch nor the compiled extension, so the
numpy-only parts (rcl_kernels.evaluation, `rcl-kernels eval` and `diagnose`) start in a blink.
The first use of a public name (rcl_kernels.segment_interp, rcl_kernels.info(), ...) imports
rcl_kernels.ops, which loads the compiled operators and registers the Triton ones; code that calls
torch.ops.rcl_kernels.* directly (or loads an exported program) does `import rcl_kernels.ops`.
Neither initialises CUDA. rcl_kernels.info() reports what was built.
"""

import importlib
import importlib.util
from typing import TYPE_CHECKING

from rcl_kernels._freed_memory import keep_freed_memory  # ctypes only: cheap
from rcl_kernels._version import __version__

# Public name -> the module that defines it (PEP 562: loaded on first access).
_PUBLIC = {
    "AnchorScorer": "rcl_kernels.nn.score_anchors",
    "BoundaryMatching": "rcl_kernels.nn.boundary_matching",
    "info": "rcl_kernels._info",
    "roi_align_1d": "rcl_kernels.ops.roi_align_1d",
    "score_anchors": "rcl_kernels.ops.score_anchors",
    "segment_interp": "rcl_kernels.ops.segment_interp",
    "SoftNMSResult": "rcl_kernels.ops.soft_nms",
    "soft_nms": "rcl_kernels.ops.soft_nms",
}

if TYPE_CHECKING:  # what static tools see; at run time __getattr__ below loads them
    from rcl_kernels._info import info
    from rcl_kernels.nn.boundary_matching import BoundaryMatching
    from rcl_kernels.nn.score_anchors import AnchorScorer
    from rcl_kernels.ops.roi_align_1d import roi_align_1d
    from rcl_kernels.ops.score_anchors import score_anchors
    from rcl_kernels.ops.segment_interp import segment_interp
    from rcl_kernels.ops.soft_nms import SoftNMSResult, soft_nms

__all__ = ["__version__", "AnchorScorer", "BoundaryMatching", "info", "keep_freed_memory", "roi_align_1d", "score_anchors", "segment_interp", "SoftNMSResult", "soft_nms"]


def __getattr__(name):
    if name in _PUBLIC:
        # every operator is registered by the first use of any public name, as an eager import did
        importlib.import_module(f"{__name__}.ops")
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    # subpackages and modules (rcl_kernels.evaluation, rcl_kernels.models, ...) load on first use
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_PUBLIC])
