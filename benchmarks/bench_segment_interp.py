"""SoI benchmark: every built backend of rcl_kernels.segment_interp against what users do today.

Baselines, measured in the same run:
  bmn_mask_matmul   BMN's boundary-matching layer: features @ a precomputed (T, N*T*T) sample mask
                    (its own (B, C, N, T, T) layout; gradient for the features only)
  gather_lerp_eager the pure-PyTorch reference (rcl_kernels.reference), eager
  gather_lerp_compile the same under torch.compile
  roi_align         torchvision.ops.roi_align on a (B, C, 1, T) map, one box per segment, as OpenTAD does
  grid_sample       F.grid_sample on a (B, C, 1, T) map (output left in its (B, C, K, N) layout)
Bounds, measured in the same run (not SoI: what writing an output of this size costs at least):
  fill_fresh_output torch.empty(out shape).fill_(1): allocate and write a fresh output, as the op
                    must (first-touch page faults included)
  fill_warm_output  fill_(1) into an already-written buffer of that size: the store stream alone

The benchmark runs with freed memory kept (rcl_kernels.keep_freed_memory(), as the package's
commands do), so the op's output reuses resident pages from call to call. Rows named
*_fresh_pages run with every large block a fresh mmap instead (glibc's default behaviour for
blocks above its mmap threshold): what a caller that keeps no freed memory pays.

fresh_process rows: the anet float32 forward and forward+backward in 5 fresh processes each
(1 and 2 threads, freed memory kept as the commands keep it), each process's median over 9 calls beside
its own copy rate, fill_fresh_output time and minor page faults per call; spread = slowest
process / fastest.

Rows report GB/s on the bytes that must move at the least: fwd writes the output and reads the
features; fwd+bwd also reads the output gradient and writes the features gradient. The copy
bandwidth is measured again right before each problem (copy_gbps_same_run), since other work
on a shared machine moves it; benchmarks/run.py reports the fractions of it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ceilings import measure_copy_gbps  # noqa: E402
from common import BenchConfig, measure, row, standalone_main, torchvision_ops, try_measure  # noqa: E402
from cpu_memory import fresh_pages  # noqa: E402

import rcl_kernels  # noqa: E402
from rcl_kernels.ops.segment_interp import SEGMENT_INTERP_BACKENDS  # noqa: E402
from rcl_kernels.reference.segment_interp import segment_interp_reference  # noqa: E402

OP = "segment_interp"


def problems(quick: bool) -> dict:
    """anet: BMN's ActivityNet setting, all start <= end cells of a 100-step grid (jittered to
    continuous coordinates), 3 sub-samples per point, context 0.5. dense: 100,000 continuous
    segments over a 1,000-step video. Quick (CPU) versions shrink channels and batch."""
    if quick:
        return {
            "anet": dict(B=2, C=32, T=100, N=32, S=3, context=0.5, K=5050),
            "dense": dict(B=1, C=32, T=1000, N=32, S=3, context=0.5, K=10_000),
        }
    return {
        "anet": dict(B=16, C=256, T=100, N=32, S=3, context=0.5, K=5050),
        "dense": dict(B=1, C=256, T=1000, N=32, S=3, context=0.5, K=100_000),
    }


def grid_anchors(B: int, T: int, K: int, device, generator: torch.Generator) -> torch.Tensor:
    """All start <= end cells of a T grid (T(T+1)/2 of them) when K equals that count, else K
    random segments; jittered by up to half a step so the coordinates are continuous."""
    if K == T * (T + 1) // 2:
        start, end = torch.triu_indices(T, T)
        seg = torch.stack([start, end], -1).float().expand(B, -1, -1)
    else:
        start = torch.rand(B, K, generator=generator) * (T - 1)
        length = torch.rand(B, K, generator=generator) * (T - 1 - start)
        seg = torch.stack([start, start + length], -1)
    jitter = (torch.rand(seg.shape, generator=generator) - 0.5)
    return (seg + jitter).contiguous().to(device)


def bmn_mask(T: int, N: int, S: int, context: float, device) -> torch.Tensor:
    """BMN's (T, N*T*T) mask over every (duration, start) cell, built by applying the reference
    op to one-hot features (the same numbers as BMN's own numpy loops, built much faster)."""
    start = torch.arange(T).repeat(T)
    duration = torch.arange(T).repeat_interleave(T)
    valid = (start + duration < T).double()
    end = start + duration
    center = (end - start + 1).double()
    seg = torch.stack([start - center * context, end + center * context], -1).unsqueeze(0)
    eye = torch.eye(T, dtype=torch.float64).unsqueeze(0)  # features: channel c is the one-hot of step c
    w = segment_interp_reference(eye, seg, N, S, 0.0, "bmn")[0]  # (T*T cells, T, N)
    w = w * valid.view(-1, 1, 1)
    return w.permute(1, 2, 0).reshape(T, N * T * T).float().to(device)  # (T, N * D * start)


def _fwd_bwd(fn, inputs, grad):
    """fn's forward and backward; the output gradient grad(out) is made once, outside the timed
    work (in training it arrives from the layers above)."""
    made = {}

    def run():
        out = fn(*inputs)
        if "grad" not in made:
            made["grad"] = grad(out)
        # allow_unused: roi_align and the BMN matmul give no gradient for the coordinates.
        return torch.autograd.grad(out, [x for x in inputs if x.requires_grad], made["grad"], allow_unused=True)
    return run


def dtypes_for(cfg: BenchConfig) -> list[torch.dtype]:
    return [torch.float32, torch.bfloat16] if cfg.is_cuda else [torch.float32, torch.float64, torch.bfloat16]


def run(cfg: BenchConfig) -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    for pname, p in problems(cfg.quick).items():
        B, C, T, N, S, ctx, K = (p[k] for k in ("B", "C", "T", "N", "S", "context", "K"))
        segments = grid_anchors(B, T, K, cfg.device, gen)
        for dtype in dtypes_for(cfg):
            dname = str(dtype).replace("torch.", "")
            features = torch.randn(B, C, T, generator=gen).to(cfg.device, dtype)
            out_bytes = B * K * C * N * features.element_size()
            feature_bytes = features.numel() * features.element_size()
            copy_gbps = measure_copy_gbps(cfg)
            moved = {"fwd": out_bytes + feature_bytes, "fwd+bwd": 2 * out_bytes + 2 * feature_bytes}

            def add(impl, fn, inputs, ours, mode_list=("fwd", "fwd+bwd"), grad=None, **extra):
                for mode in mode_list:
                    if mode == "fwd":
                        def call(fn=fn, inputs=inputs):
                            with torch.no_grad():
                                return fn(*inputs)
                    else:
                        leaf = [x.detach().requires_grad_(x.is_floating_point()) for x in inputs]
                        call = _fwd_bwd(fn, leaf, grad or (lambda out: torch.ones_like(out)))
                    try:
                        timing, skip = try_measure(call, cfg)
                    except (RuntimeError, NotImplementedError) as exc:  # e.g. a baseline without this dtype
                        timing, skip = None, f"failed: {str(exc).splitlines()[0][:120]}"
                    r = row(OP, pname, impl, mode, timing, ours=ours, dtype=dname, skipped=skip,
                            copy_gbps_same_run=copy_gbps, **p, **extra)
                    if timing is not None:
                        r["gbps"] = moved[mode] / timing.ms / 1e6
                    rows.append(r)

            for backend in SEGMENT_INTERP_BACKENDS.available(cfg.device.type):
                if backend == "reference" or (backend == "triton" and not cfg.is_cuda):
                    continue  # reference is a baseline below; the Triton interpreter is not a speed path
                op = (lambda f, s, b=backend: rcl_kernels.segment_interp(
                    f, s, N, samples_per_point=S, context=ctx, backend=b))
                add(backend, op, (features, segments), ours=True)
                if not cfg.is_cuda:
                    with fresh_pages():
                        add(f"{backend}_fresh_pages", op, (features, segments), ours=True)

            out_shape = (B, K, C, N)
            warm = torch.empty(out_shape, dtype=dtype, device=cfg.device).fill_(0)
            with fresh_pages():
                add("fill_fresh_output", lambda: torch.empty(out_shape, dtype=dtype, device=cfg.device).fill_(1), (),
                    ours=False, mode_list=("fwd",))
            add("fill_warm_output", lambda: warm.fill_(1), (), ours=False, mode_list=("fwd",))
            del warm

            def reference(f, s):
                return segment_interp_reference(f, s, N, S, ctx, "zeros")

            add("gather_lerp_eager", reference, (features, segments), ours=False)
            if cfg.is_cuda or dtype == torch.float32:
                compiled = torch.compile(reference, dynamic=False)
                add("gather_lerp_compile", compiled, (features, segments), ours=False)
            else:
                rows.append(row(OP, pname, "gather_lerp_compile", "fwd", None, ours=False, dtype=dname,
                                skipped="CPU: compiled for float32 only (compile time)", **p))

            if pname == "anet":
                mask = bmn_mask(T, N, S, ctx, cfg.device).to(dtype)
                add("bmn_mask_matmul", lambda f: torch.matmul(f, mask), (features,), ours=False)
            else:
                rows.append(row(OP, pname, "bmn_mask_matmul", "fwd", None, ours=False, dtype=dname,
                                skipped=f"mask would be T x N*T*T = {T * N * T * T * 4 / 2**30:.0f} GiB in float32",
                                **p))
            add("grid_sample", lambda f, s: _grid_sample(f, s, N, S, ctx), (features, segments), ours=False)
            tv_ops, tv_missing = torchvision_ops()
            if tv_ops is not None:
                add("roi_align", lambda f, s: _roi_align(f, s, N, S, ctx), (features, segments), ours=False)
            else:
                rows.append(row(OP, pname, "roi_align", "fwd", None, ours=False, dtype=dname, skipped=tv_missing,
                                **p))
    if not cfg.is_cuda:
        rows += fresh_process_rows(problems(cfg.quick)["anet"])
    return rows


FRESH_PROCESSES = 5


def fresh_process_rows(p: dict, processes: int = FRESH_PROCESSES) -> list[dict]:
    """The anet float32 SoI in `processes` fresh processes per setting (threads x pages), one row
    per setting: the slowest process's median, the spread slowest / fastest, each process's
    numbers."""
    rows = []
    for threads in (1, 2):
        for pages in ("kept",):  # as the package's commands run; fill_fresh_output shows the fresh-page bound
            runs = [_run_fresh_process(p, threads, pages) for _ in range(processes)]
            runs = [r for r in runs if r is not None]
            for mode in ("fwd", "fwd+bwd"):
                if not runs:
                    rows.append(row(OP, "anet", "cpu_fresh_process", mode, None, ours=True, threads=threads,
                                    pages=pages, skipped="the worker process failed"))
                    continue
                ms = [r[mode]["ms"] for r in runs]
                worst = max(range(len(runs)), key=lambda i: ms[i])
                r = row(OP, "anet", "cpu_fresh_process", mode, None, ours=True, threads=threads, pages=pages,
                        processes=len(runs), spread=max(ms) / min(ms), ms_each=ms,
                        copy_gbps_each=[x["copy_gbps"] for x in runs],
                        fill_fresh_output_ms_each=[x["fill_fresh_output_ms"] for x in runs],
                        faults_per_call_each=[x[mode]["faults_per_call"] for x in runs],
                        copy_gbps_same_run=runs[worst]["copy_gbps"], **p)
                r.update(ms=ms[worst], gbps=runs[worst][mode]["gbps"])
                rows.append(r)
                print(f"  SoI anet fp32 {mode} in {len(runs)} fresh processes, {threads} thread(s), pages {pages}: "
                      f"median ms {', '.join(f'{m:.1f}' for m in ms)}; spread {max(ms) / min(ms):.2f}x; worst "
                      f"{runs[worst][mode]['gbps'] / runs[worst]['copy_gbps']:.0%} of its copy rate; faults per "
                      f"call {', '.join(str(x[mode]['faults_per_call']) for x in runs)}", flush=True)
    return rows


def _run_fresh_process(p: dict, threads: int, pages: str) -> dict | None:
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import bench_segment_interp as b; b.fresh_process_worker({p!r}, {threads}, {pages!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def fresh_process_worker(p: dict, threads: int, pages: str, reps: int = 9) -> None:
    """In a fresh process: copy rate, fill_fresh_output, and the SoI forward and forward+backward
    medians over reps calls with their minor page faults per call; one json line on stdout."""
    torch.set_num_threads(threads)
    if pages == "kept":
        rcl_kernels.keep_freed_memory()
    else:
        rcl_kernels._freed_memory.serve_large_blocks_by_mmap()
    cfg = BenchConfig(device=torch.device("cpu"), warmup=1, reps=reps)
    gen = torch.Generator().manual_seed(0)
    B, C, T, N, S, ctx, K = (p[k] for k in ("B", "C", "T", "N", "S", "context", "K"))
    segments = grid_anchors(B, T, K, cfg.device, gen)
    features = torch.randn(B, C, T, generator=gen)
    out_bytes, feature_bytes = B * K * C * N * 4, features.numel() * 4
    copy_gbps = measure_copy_gbps(cfg)
    with fresh_pages():
        fill = measure(lambda: torch.empty(B, K, C, N).fill_(1), cfg).ms
    if pages == "fresh":
        rcl_kernels._freed_memory.serve_large_blocks_by_mmap()

    def forward():
        with torch.no_grad():
            return rcl_kernels.segment_interp(features, segments, N, samples_per_point=S, context=ctx, padding="bmn")

    leaf = features.clone().requires_grad_(True), segments.clone().requires_grad_(True)
    grad = torch.ones(B, K, C, N)

    def forward_backward():
        out = rcl_kernels.segment_interp(leaf[0], leaf[1], N, samples_per_point=S, context=ctx, padding="bmn")
        return torch.autograd.grad(out, leaf, grad)

    result = {"copy_gbps": copy_gbps, "fill_fresh_output_ms": fill}
    for mode, fn, moved in (("fwd", forward, out_bytes + feature_bytes),
                            ("fwd+bwd", forward_backward, 2 * out_bytes + 2 * feature_bytes)):
        fn()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        ms = measure(fn, cfg, warmup=0).ms
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        result[mode] = {"ms": ms, "gbps": moved / ms / 1e6, "faults_per_call": round(faults / reps)}
    print(json.dumps(result))


def _windows(segments: torch.Tensor, context: float):
    length = segments[..., 1] - segments[..., 0]
    return segments[..., 0] - context * length, segments[..., 1] + context * length


def _grid_sample(features, segments, N, S, context):
    B, C, T = features.shape
    a, b = _windows(segments, context)
    frac = torch.linspace(0, 1, N * S, device=features.device)
    x = a.unsqueeze(-1) + (b - a).unsqueeze(-1) * frac  # (B, K, N*S)
    grid = torch.stack([2 * x / (T - 1) - 1, torch.zeros_like(x)], -1).to(features.dtype)
    out = F.grid_sample(features.unsqueeze(2), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    out = out.view(B, C, -1, N, S).mean(-1) if S > 1 else out  # (B, C, K, N)
    return out


def _roi_align(features, segments, N, S, context):
    roi_align = torchvision_ops()[0].roi_align
    B, C, T = features.shape
    K = segments.shape[1]
    a, b = _windows(segments, context)
    batch = torch.arange(B, device=features.device, dtype=segments.dtype).view(B, 1).expand(B, K)
    # aligned=True puts pixel t's centre at t + 0.5: shift the boxes to match our convention.
    boxes = torch.stack([batch, a + 0.5, torch.zeros_like(a), b + 0.5, torch.ones_like(a)], -1).view(-1, 5)
    out = roi_align(features.unsqueeze(2), boxes.to(features.dtype), output_size=(1, N), spatial_scale=1.0,
                    sampling_ratio=S, aligned=True)
    return out.view(B, K, C, N)


def sweep(cfg: BenchConfig) -> list[dict]:
    """Forward time and memory against the number of segments K (1e3 .. 1e6, fewer on a CPU) and
    the video length T (100 .. 1,000), for our backends, eager and compiled reference, grid_sample."""
    C, N = (32, 16) if cfg.quick else (256, 32)
    Ks = [1_000, 10_000, 100_000] if cfg.quick else [1_000, 10_000, 100_000, 1_000_000]
    Ts = [100, 300, 1000]
    gen = torch.Generator().manual_seed(1)
    rows = []
    impls = {b: (lambda b: lambda f, s: rcl_kernels.segment_interp(f, s, N, backend=b))(b)
             for b in SEGMENT_INTERP_BACKENDS.available(cfg.device.type)
             if b != "reference" and (b != "triton" or cfg.is_cuda)}
    impls["gather_lerp_eager"] = lambda f, s: segment_interp_reference(f, s, N)
    if cfg.is_cuda:
        impls["gather_lerp_compile"] = torch.compile(lambda f, s: segment_interp_reference(f, s, N), dynamic=True)
    impls["grid_sample"] = lambda f, s: _grid_sample(f, s, N, 1, 0.0)
    points = [("K", K, 100) for K in Ks] + [("T", 10_000, T) for T in Ts]
    for var, K, T in points:
        features = torch.randn(1, C, T, generator=gen).to(cfg.device)
        segments = grid_anchors(1, T, K, cfg.device, gen)
        for impl, fn in impls.items():
            def call(fn=fn):
                with torch.no_grad():
                    return fn(features, segments)
            timing, skip = try_measure(call, cfg, reps=3 if cfg.quick else 5, warmup=1)
            rows.append(row(OP, f"sweep_{var}", impl, "fwd", timing, ours=impl not in (
                "gather_lerp_eager", "gather_lerp_compile", "grid_sample"), skipped=skip, sweep=var, K=K, T=T,
                C=C, N=N))
    return rows


if __name__ == "__main__":
    standalone_main("segment_interp", run, problems=problems(False))
