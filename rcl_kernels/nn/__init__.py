"""nn.Module wrappers over the ops, one module per file (rcl_kernels.AnchorScorer, ...)."""

from rcl_kernels.nn.boundary_matching import BoundaryMatching

__all__ = ["BoundaryMatching"]
