"""The CUDA sources compiled to PTX for sm_90 without a GPU, with the build's own nvcc flags, and
what ptxas -v says about each kernel instantiation.

The flags are csrc/cuda/nvcc_flags.txt (the one list setup.py and CMakeLists.txt read), after the
ones torch.utils.cpp_extension adds to every CUDA extension and the -O3 -lineinfo of a release
build. Each source compiles once per content (every csrc file it may include, the flags and the
nvcc version make the key) into a cache directory: $RCL_PTX_CACHE, else ~/.cache/rcl_kernels/ptx.
A source takes about 20 s and 1.2 GB (ATen's headers); the sources compile two at a time.

Used by tests/test_cuda_ptx.py (no flush-to-zero in any kernel) and the size matrix
(tests/size_matrix.py: registers, spills and shared memory per instantiation).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import pathlib
import re
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
SOURCES = tuple(sorted((CSRC / "cuda").glob("*.cu")))
FLAGS_FILE = CSRC / "cuda" / "nvcc_flags.txt"
ARCH = 90
# The flags torch.utils.cpp_extension gives every CUDA extension (COMMON_NVCC_FLAGS, which
# setup.py's CUDAExtension adds), the C++ standard of torch >= 2.13 and a release build's.
TORCH_FLAGS = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
               "-D__CUDA_NO_HALF2_OPERATORS__", "-std=c++20", "-O3", "-lineinfo", "-DRCL_WITH_CUDA=1"]  # fmt: skip


def nvcc() -> str | None:
    """The toolkit's nvcc: $CUDA_HOME's, else CUDA 13.0's, else the one on PATH."""
    candidates = [pathlib.Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc"] if os.environ.get("CUDA_HOME") else []
    candidates.append(pathlib.Path("/usr/local/cuda-13.0/bin/nvcc"))
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return shutil.which("nvcc")


def build_flags() -> list[str]:
    """csrc/cuda/nvcc_flags.txt: one flag per line, # comments."""
    lines = FLAGS_FILE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _command(source: pathlib.Path, output: pathlib.Path, flags: list[str]) -> list[str]:
    import torch
    from torch.utils.cpp_extension import include_paths

    includes = [arg for p in include_paths() for arg in ("-isystem", p)]
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    return [nvcc(), "-ptx", f"-arch=sm_{ARCH}", *TORCH_FLAGS, *flags, abi, f"-I{CSRC}", *includes, str(source),
            "-o", str(output)]  # fmt: skip


def _key(source: pathlib.Path, flags: list[str]) -> str:
    digest = hashlib.sha256()
    version = subprocess.run([nvcc(), "--version"], capture_output=True, text=True).stdout
    digest.update("\0".join([version, *TORCH_FLAGS, *flags, str(ARCH)]).encode())
    digest.update(source.read_bytes())
    for header in sorted(CSRC.rglob("*.h")) + sorted(CSRC.rglob("*.cuh")):
        digest.update(header.name.encode() + header.read_bytes())
    return digest.hexdigest()[:20]


def cache_dir() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("RCL_PTX_CACHE") or pathlib.Path.home() / ".cache" / "rcl_kernels" / "ptx")
    path.mkdir(parents=True, exist_ok=True)
    return path


def compile_ptx(source: pathlib.Path, flags: list[str] | None = None) -> str:
    """The PTX of one source (cached; see the module docstring)."""
    flags = build_flags() if flags is None else flags
    ptx = cache_dir() / f"{source.stem}-{_key(source, flags)}.ptx"
    if not ptx.exists():
        partial = ptx.with_suffix(f".{os.getpid()}.part")
        result = subprocess.run(_command(source, partial, flags), capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"nvcc -ptx {source.name} failed:\n{result.stderr[-4000:]}")
        partial.replace(ptx)
    return ptx.read_text()


def compile_all(flags: list[str] | None = None) -> dict[str, str]:
    """{source stem: PTX} for every csrc/cuda/*.cu, two compiles at a time."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        texts = pool.map(lambda s: compile_ptx(s, flags), SOURCES)
        return {source.stem: text for source, text in zip(SOURCES, texts)}


_ENTRY = re.compile(r"^(?:\.visible\s+|\.weak\s+)?\.entry\s+(\S+?)\s*\(", re.M)


def kernels(ptx: str) -> dict[str, str]:
    """{mangled kernel name: its PTX body} of one module."""
    starts = [(m.group(1), m.start()) for m in _ENTRY.finditer(ptx)]
    return {name: ptx[start: starts[i + 1][1] if i + 1 < len(starts) else len(ptx)]
            for i, (name, start) in enumerate(starts)}  # fmt: skip


_FTZ = re.compile(r"^\s*(?:@!?%p\d+\s+)?([a-z0-9]+(?:\.[a-z0-9]+)*\.ftz(?:\.[a-z0-9]+)*)", re.M)


def ftz_instructions(body: str) -> list[str]:
    """The instructions of a kernel that flush subnormals (a .ftz modifier), one per use."""
    return _FTZ.findall(body)


@dataclasses.dataclass(frozen=True)
class PtxasUsage:
    registers: int
    spill_store_bytes: int
    spill_load_bytes: int
    stack_frame_bytes: int
    shared_bytes: int  # static shared memory


_FUNCTION = re.compile(r"Compiling entry function '(\S+)' for 'sm_\d+'")
_REGISTERS = re.compile(r"Used (\d+) registers")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_SHARED = re.compile(r"(\d+) bytes smem")


def ptxas_usage(ptx: str) -> dict[str, PtxasUsage]:
    """{mangled kernel name: its resources} from ptxas -v for sm_90 (cached like the PTX)."""
    digest = hashlib.sha256(ptx.encode()).hexdigest()[:20]
    log_path = cache_dir() / f"ptxas-{digest}.log"
    if not log_path.exists():
        ptx_path = cache_dir() / f"ptxas-{digest}.{os.getpid()}.ptx"
        ptx_path.write_text(ptx)
        ptxas = pathlib.Path(nvcc()).with_name("ptxas")
        result = subprocess.run([str(ptxas), "-v", f"-arch=sm_{ARCH}", str(ptx_path), "-o", os.devnull],
                                capture_output=True, text=True)  # fmt: skip
        ptx_path.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"ptxas failed:\n{result.stderr[-4000:]}")
        log_path.write_text(result.stderr + result.stdout)
    usage: dict[str, PtxasUsage] = {}
    name, fields = None, {}
    for line in log_path.read_text().splitlines():
        if m := _FUNCTION.search(line):
            name, fields = m.group(1), {}
        elif name and (m := _FRAME.search(line)):
            fields["frame"] = tuple(map(int, m.groups()))
        elif name and (m := _REGISTERS.search(line)):
            shared = _SHARED.search(line)
            stack, stores, loads = fields.get("frame", (0, 0, 0))
            usage[name] = PtxasUsage(int(m.group(1)), stores, loads, stack, int(shared.group(1)) if shared else 0)
            name = None
    return usage


def demangle(names) -> dict[str, str]:
    """{mangled: readable} through c++filt (the names unchanged where it is missing)."""
    names = list(names)
    tool = shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}
