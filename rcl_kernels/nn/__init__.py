"""nn.Module wrappers over the ops, one module per file (rcl_kernels.AnchorScorer, ...)."""
