"""CPU backends written in PyTorch, where a reformulation, not a compiled kernel, is what makes an
op fast (the C++ CPU kernels are in csrc/cpu/)."""
