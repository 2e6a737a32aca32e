"""nn.Module forms of the ops, one module per file named after its op (AnchorScorer is
score_anchors as a module, in nn/score_anchors.py)."""

from rcl_kernels.nn.score_anchors import AnchorScorer

__all__ = ["AnchorScorer"]
