"""Deprecated alias of rcl_kernels.reference.score_anchors (removed in rcl_kernels 0.3.0)."""

from rcl_kernels._deprecation import moved_module

__getattr__ = moved_module(__name__, "rcl_kernels.reference.score_anchors", {"anchor_scoring_reference": "score_anchors_reference"})
