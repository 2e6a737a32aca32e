"""Build rcl_kernels._C: C++ CPU kernels always, CUDA kernels when asked for or possible.

Environment knobs (printed at the start of every build):
  FORCE_CUDA=1            compile the CUDA sources even without a visible GPU (CI does this)
  TORCH_CUDA_ARCH_LIST    e.g. "9.0" or "8.0;9.0a"; setting it also turns CUDA on.
                          Default with a visible GPU: that GPU's arch; otherwise "9.0".
                          Each arch gets real SASS (sm_XX), the newest also PTX ("+PTX").
  CUDA_HOME               the toolkit (use /usr/local/cuda-13.0 where a nvcc wrapper misleads torch)
  MAX_JOBS                parallel compile jobs for ninja
  DEBUG=1                 -O0 -g (and -G -lineinfo for CUDA) instead of -O3
  RCL_NO_EXTENSION=1      install the pure-Python package only (reference + Triton backends)
"""

import glob
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def nvcc_flags() -> list:
    """The nvcc flags of every CUDA kernel (csrc/cuda/nvcc_flags.txt, shared with CMakeLists.txt
    and tests/cuda_ptx.py): no fast math, no flush-to-zero."""
    with open(os.path.join(ROOT, "csrc", "cuda", "nvcc_flags.txt")) as fh:
        return [line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#")]


def _build_extensions():
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    debug = _flag("DEBUG")
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    gpu_visible = torch.cuda.is_available()
    with_cuda = (_flag("FORCE_CUDA") or bool(arch_list) or gpu_visible) and CUDA_HOME is not None
    if with_cuda and not arch_list and not gpu_visible:
        arch_list = "9.0"
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list
    if with_cuda and arch_list and "+PTX" not in arch_list:
        # Real code for every listed arch; PTX of the newest one as well, for forward compatibility.
        arch_list = arch_list.replace(",", ";").rstrip(";") + "+PTX"
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list

    print(
        "rcl_kernels build configuration:\n"
        f"  torch {torch.__version__} (CUDA {torch.version.cuda}), python {sys.version.split()[0]}\n"
        f"  CUDA extension: {with_cuda} (FORCE_CUDA={os.environ.get('FORCE_CUDA', '0')}, "
        f"GPU visible={gpu_visible}, CUDA_HOME={CUDA_HOME})\n"
        f"  TORCH_CUDA_ARCH_LIST={arch_list or '(unset: arch of the visible GPU)'}\n"
        f"  MAX_JOBS={os.environ.get('MAX_JOBS', '(ninja default)')}, DEBUG={int(debug)}",
        flush=True,
    )
    if (_flag("FORCE_CUDA") or arch_list) and CUDA_HOME is None:
        raise RuntimeError("FORCE_CUDA / TORCH_CUDA_ARCH_LIST set but no CUDA toolkit found: set CUDA_HOME")

    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    opt = ["-O0", "-g"] if debug else ["-O3"]
    # The C++ standard is left to torch.utils.cpp_extension: torch >= 2.13 headers need C++20.
    # -ffp-contract=off: SoI positions must be rounded like the reference's (no fused multiply-add),
    # also in builds that add -march flags; the AVX-512 kernels use explicit FMA intrinsics.
    cxx_flags = opt + ["-fopenmp", "-ffp-contract=off", "-DRCL_PYTHON_MODULE"]
    extra = {"cxx": cxx_flags}
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp"))
        opt_nvcc = ["-O0", "-G", "-lineinfo"] if debug else ["-O3", "-lineinfo"]
        extra["nvcc"] = opt_nvcc + nvcc_flags()
        ext_cls = CUDAExtension
    else:
        ext_cls = CppExtension

    _write_build_config(with_cuda=with_cuda, arch_list=arch_list, debug=debug)
    ext = ext_cls(
        name="rcl_kernels._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"] + (["-g"] if debug else []),
        define_macros=[("RCL_WITH_CUDA", "1")] if with_cuda else [],
        py_limited_api=False,
    )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


def _write_build_config(*, with_cuda: bool, arch_list: str, debug: bool) -> None:
    import torch

    path = os.path.join(ROOT, "rcl_kernels", "_build_config.py")
    with open(path, "w") as fh:
        fh.write(
            "# Written by setup.py at build time; not tracked.\n"
            f"WITH_CUDA = {with_cuda!r}\n"
            f"CUDA_ARCH_LIST = {arch_list!r}\n"
            f"DEBUG = {debug!r}\n"
            f"BUILT_WITH_TORCH = {torch.__version__!r}\n"
            f"BUILT_WITH_CUDA = {torch.version.cuda if with_cuda else None!r}\n"
        )


if _flag("RCL_NO_EXTENSION"):
    ext_modules, cmdclass = [], {}
else:
    ext_modules, cmdclass = _build_extensions()

setup(ext_modules=ext_modules, cmdclass=cmdclass)
