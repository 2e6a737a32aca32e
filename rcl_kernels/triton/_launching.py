"""What every Triton launcher of the library needs around a launch: the device guard and the
grid limits. Importable without Triton."""

from __future__ import annotations

import contextlib

import torch

# CUDA's grid limits (CUDA C++ Programming Guide, "Features and Technical Specifications":
# maximum x-dimension of a grid 2**31 - 1, maximum y- or z-dimension 65,535). A launch beyond
# them fails; launchers fold their large dimensions into x.
MAX_GRID_X = 2**31 - 1
MAX_GRID_YZ = 65_535


# Launch options of every kernel whose float results must match the CPU's rounding: no fused
# multiply-add contraction, and no flush-to-zero in libdevice (Triton's default,
# enable_reflect_ftz=True, turns tl.floor into cvt.rmi.ftz.f32.f32: floor(-1e-39) = -0 instead of
# -1, so a subnormal negative position reads and differentiates the interval [0, 1] instead of
# [-1, 0]). tests/test_size_matrix.py counts the .ftz instructions of every compiled kernel.
EXACT_FLOAT_OPTIONS = {"enable_fp_fusion": False, "enable_reflect_ftz": False}


def device_guard(device: torch.device):
    """Triton launches on the current CUDA device, whatever device the pointers belong to: make
    it the tensors' device for the launch. Nothing to do for CPU tensors (the interpreter)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def scalar_tensor(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A float argument as a 1-element tensor: Triton types Python floats as float32, too coarse
    for float64 kernels."""
    return torch.full((1,), value, dtype=dtype, device=device)


def launch_grid(op: str, *dims: int) -> tuple[int, ...]:
    """The grid (x[, y[, z]]), after checking it is inside CUDA's limits; a ValueError naming
    the op and the grid otherwise (sizes that large need more programs than one launch has)."""
    limits = (MAX_GRID_X, MAX_GRID_YZ, MAX_GRID_YZ)
    if len(dims) > 3 or any(d > limit for d, limit in zip(dims, limits)):
        raise ValueError(f"{op}: the problem needs a launch grid of {dims} programs, beyond CUDA's limits "
                         f"(x <= {MAX_GRID_X:,}, y and z <= {MAX_GRID_YZ:,}); split the batch")
    return tuple(dims)
