"""Triton kernels, one op per module (kernel, launcher, torch.library registration).

They run on CUDA tensors, and on CPU tensors under TRITON_INTERPRET=1 (slowly; used by CI).
"""
