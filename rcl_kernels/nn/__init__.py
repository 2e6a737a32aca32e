"""nn.Module forms of the ops, one module per file named after its op (AnchorScorer is
score_anchors as a module, in nn/score_anchors.py; BoundaryMatching is BMN's boundary-matching
layer, computed by segment_interp and score_anchors)."""

from rcl_kernels.nn.boundary_matching import BoundaryMatching
from rcl_kernels.nn.score_anchors import AnchorScorer, score_with_scorers

__all__ = ["AnchorScorer", "BoundaryMatching", "score_with_scorers"]
