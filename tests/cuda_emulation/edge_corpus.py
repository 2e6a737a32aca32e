"""Inputs that reach the edges of the kernels: odd and tiny sizes, sizes at the block, warp,
grid-stride, tile, slab and shared-memory-capacity boundaries, T = 1, empty inputs, NaN, +-inf
and 1e30 coordinates, NaN and inf scores and features, lengths padding, many labels.

The emulated CUDA kernels run over it in tests/test_soft_nms_cuda_emulated.py and
tests/test_segment_interp_kernels.py, and the emulated kernels and the CPU kernels run over it
again under AddressSanitizer + UndefinedBehaviorSanitizer (sanitized_corpus.py). Every case is
built from a fixed seed, so a failure reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .kernels import H100_OPTIN_BYTES, PADDING_CODES, STATIC_BYTES

INF, NAN = float("inf"), float("nan")
PADDINGS = tuple(PADDING_CODES)


# --------------------------------------------------------------------------------------------
# Soft-NMS


@dataclass
class SoftNmsCase:
    name: str
    segments: torch.Tensor  # (V, P, 2) float32
    scores: torch.Tensor  # (V, P) float32
    labels: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    kw: dict = field(default_factory=dict)  # method, sigma, iou_threshold, min_score, top_k, width_gate
    multiprocessors: int = 132  # the SM count the launch plan sees (V >= 8 x it: 8 candidates per thread)

    def op_args(self) -> tuple:
        """The arguments of torch.ops.rcl_kernels.soft_nms."""
        kw = {"method": "gaussian", "sigma": 0.5, "iou_threshold": 0.0, "min_score": 0.001, "top_k": 100,
              "width_gate": None, **self.kw}  # fmt: skip
        gate = kw["width_gate"]
        return (self.segments, self.scores, self.labels, self.lengths, kw["method"], float(kw["sigma"]),
                float(kw["iou_threshold"]), float(kw["min_score"]), kw["top_k"], gate is not None,
                *(map(float, gate) if gate is not None else (0.0, 0.0)))  # fmt: skip


def proposals(V: int, P: int, seed: int, *, scale: float = 1.0):
    """Proposal-like (V, P, 2) segments and (V, P) scores in [0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.rand(V, P, generator=gen) * scale
    length = torch.rand(V, P, generator=gen) ** 2 * 0.5 * scale
    return torch.stack([start, start + length], dim=-1), torch.rand(V, P, generator=gen)


def soft_nms_cases() -> list[SoftNmsCase]:
    cases = []
    add = cases.append
    for method in ("gaussian", "linear", "hard"):
        for classes in (None, 3):
            seg, sc = proposals(5, 47, 1)
            labels = torch.randint(0, classes, (5, 47), generator=torch.Generator().manual_seed(2)) if classes else None
            add(SoftNmsCase(f"random-{method}-labels{classes}", seg, sc, labels, kw={"method": method, "top_k": 20}))
            add(SoftNmsCase(f"cutoffs-{method}-labels{classes}", seg, sc, labels,
                            kw={"method": method, "top_k": 12, "iou_threshold": 0.3, "sigma": 0.3,
                                "min_score": 0.05}))  # fmt: skip
    # Ties: few distinct scores, repeated and identical segments, zero lengths.
    seg, sc = proposals(4, 41, 3)
    sc = (sc * 4).floor() / 4 + 0.125
    seg[:, 1::4], sc[:, 1::4] = seg[:, 0:40:4], sc[:, 0:40:4]
    seg[:, 2::5, 1] = seg[:, 2::5, 0]
    for method in ("gaussian", "linear", "hard"):
        add(SoftNmsCase(f"ties-{method}", seg, sc, kw={"method": method, "iou_threshold": 0.2, "top_k": 30,
                                                       "min_score": 0.0}))  # fmt: skip
    # Lengths padding (negative, zero, beyond P) with NaN garbage in the padding.
    seg, sc = proposals(6, 33, 4)
    seg[2, 10:], sc[2, 10:] = NAN, 10.0
    lengths = torch.tensor([0, 1, 10, 33, 50, -3])
    labels = torch.randint(0, 4, (6, 33), generator=torch.Generator().manual_seed(5))
    add(SoftNmsCase("lengths", seg, sc, lengths=lengths, kw={"top_k": 15}))
    add(SoftNmsCase("lengths-labels", seg, sc, labels, lengths, kw={"top_k": 15, "method": "linear"}))
    # NaN, +-inf, subnormal scores; NaN, +-inf, 1e30, overflowing coordinates.
    seg, sc = proposals(3, 29, 6)
    sc[0, ::3], sc[1, 5], sc[1, 6], sc[2, 4] = NAN, INF, -INF, 1e-40
    seg[0, 1::4, 0], seg[1, 2::5, 1] = NAN, INF
    seg[2, 3::6] = torch.tensor([-INF, INF])
    seg[2, 7], seg[2, 8] = torch.tensor([1e30, 3e38]), torch.tensor([-3e38, 3e38])
    for method in ("gaussian", "linear", "hard"):
        add(SoftNmsCase(f"nan-inf-{method}", seg, sc, kw={"method": method, "top_k": 29, "min_score": -1.0,
                                                          "iou_threshold": 0.1}))  # fmt: skip
    add(SoftNmsCase("nan-inf-labels", seg, sc, torch.arange(29).repeat(3, 1) % 2, kw={"top_k": 29, "min_score": -1.0}))
    # Subnormal overlaps and weights, tiny sigma.
    seg = torch.tensor([[[-5.0, 1e-30], [0.0, 1e10], [0.0, 1e-20], [0.0, 1e-10], [-1.0, 1e-19]]])
    sc = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]])
    for sigma in (0.5, 1e-38):
        add(SoftNmsCase(f"subnormal-sigma{sigma}", seg, sc, kw={"top_k": 5, "sigma": sigma, "min_score": 0.0}))
    seg, sc = proposals(3, 30, 7)
    add(SoftNmsCase("negative-scores", seg, sc * 6 - 3, kw={"top_k": 30, "min_score": -2.5}))
    for gate in ((0.3, 0.4), (-0.2, 0.5)):
        add(SoftNmsCase(f"width-gate{gate}", seg, sc, kw={"top_k": 25, "sigma": 0.4, "width_gate": gate}))
    # Many labels, and label values at the ends of int64.
    seg, sc = proposals(3, 200, 8)
    many = torch.randint(0, 150, (3, 200), generator=torch.Generator().manual_seed(9))
    add(SoftNmsCase("many-labels", seg, sc, many, kw={"top_k": 120}))
    extreme = torch.tensor([-(2**63), 2**63 - 1, 0, -1]).repeat(3, 50)
    add(SoftNmsCase("extreme-labels", seg, sc, extreme, kw={"top_k": 60, "method": "linear"}))
    # Sizes: empty, one candidate, top_k beyond P, warp and block edges, 8 per thread.
    add(SoftNmsCase("no-videos", torch.zeros(0, 10, 2), torch.zeros(0, 10), kw={"top_k": 4}))
    add(SoftNmsCase("no-candidates", torch.zeros(3, 0, 2), torch.zeros(3, 0), torch.zeros(3, 0, dtype=torch.int64),
                    kw={"top_k": 4}))  # fmt: skip
    seg, sc = proposals(2, 1, 10)
    add(SoftNmsCase("one-candidate", seg, sc, kw={"top_k": 1}))
    seg, sc = proposals(2, 9, 11)
    add(SoftNmsCase("top_k-beyond-P", seg, sc, kw={"top_k": 25, "min_score": 0.0}))
    for P in (31, 32, 33, 64, 65, 2047, 2048, 2049):
        seg, sc = proposals(2, P, 100 + P)
        add(SoftNmsCase(f"P{P}", seg, sc, kw={"top_k": 40, "iou_threshold": 0.2}))
    seg, sc = proposals(16, 300, 12)
    labels = torch.randint(0, 5, (16, 300), generator=torch.Generator().manual_seed(13))
    add(SoftNmsCase("8-per-thread", seg, sc, labels, multiprocessors=1, kw={"top_k": 50}))
    # P around the 48 KiB default shared-memory limit (issue 16: 4074..4096 without labels,
    # 2445..2457 with) and around the opt-in capacity, beyond which the global-memory path runs.
    for P, labelled in ((4074, False), (4096, False), (2445, True), (2457, True)):
        add(large_case(P, labelled, top_k=20))
    last_shared = (H100_OPTIN_BYTES - STATIC_BYTES) // 12
    last_shared_labelled = (H100_OPTIN_BYTES - STATIC_BYTES) // 20
    for P, labelled in ((last_shared, False), (last_shared + 1, False), (last_shared_labelled + 1, True)):
        add(large_case(P, labelled, top_k=6))
    return cases


def large_case(P: int, labelled: bool, *, top_k: int) -> SoftNmsCase:
    seg, sc = proposals(1, P, P, scale=50.0)
    labels = torch.randint(0, 7, (1, P), generator=torch.Generator().manual_seed(P)) if labelled else None
    return SoftNmsCase(f"P{P}-labels{labelled}", seg, sc, labels, kw={"top_k": top_k, "iou_threshold": 0.1})


# --------------------------------------------------------------------------------------------
# SoI


@dataclass
class SegmentInterpCase:
    name: str
    B: int
    C: int
    T: int
    K: int
    N: int
    S: int
    context: float = 0.25
    padding: str = "zeros"
    dtype: torch.dtype = torch.float32
    max_grid: int = 1 << 30  # the emulated launch's grid cap (blocks loop over the rest)
    sms: int = 4  # the SM count of the backward's plan
    special_features: bool = False  # NaN, inf and 1e30 features, zero gradients in some channels

    def inputs(self):
        """features (B, C, T), segments (B, K, 2) float64, grad_output (B, K, C, N)."""
        gen = torch.Generator().manual_seed(hash((self.B, self.C, self.T, self.K, self.N, self.S)) % (2**31))
        features = torch.randn(self.B, self.C, self.T, generator=gen, dtype=torch.float64)
        segments = awkward_segments(self.B, self.K, self.T, gen)
        grad = torch.randn(self.B, self.K, self.C, self.N, generator=gen, dtype=torch.float64)
        if self.special_features and self.T > 3 and self.C > 2:
            features[:, 0, 1], features[:, 1, 2], features[:, 2, self.T // 2] = INF, NAN, 1e30
            grad[:, :, :3] = 0.0  # the channels that hold them get zero gradient
        return features.to(self.dtype), segments, grad.to(self.dtype)


def awkward_segments(B: int, K: int, T: int, generator: torch.Generator) -> torch.Tensor:
    """(B, K, 2) float64 segments: random ones inside and outside [0, T-1], and in batch 0 (as
    many as fit) the awkward cases: NaN, inf, huge, zero-length, very short, reversed, integer
    grid anchors (positions exactly on integers, 0 and T-1 included), a window in BMN's (-1, 0)
    truncation band."""
    seg = torch.rand(B, K, 2, generator=generator, dtype=torch.float64) * (T + 4) - 3
    special = torch.tensor(
        [[NAN, 3.0], [INF, 1e30], [-1e30, 2.0], [2.0, 1e30], [2.0, 2.0], [1.5, 1.5005], [T - 1.5, 0.25],
         [0.0, T - 1.0], [1.0, 3.0], [-0.9, -0.1], [T - 1.2, T + 0.7]],
        dtype=torch.float64,
    )[:K]  # fmt: skip
    if B > 0:
        seg[0, : special.shape[0]] = special
    return seg


def segment_interp_cases() -> list[SegmentInterpCase]:
    C = SegmentInterpCase
    cases = []
    for padding in PADDINGS:
        for dtype in (torch.float32, torch.float64):
            for S in (1, 3):
                cases.append(C(f"small-{padding}-{dtype}-S{S}", 2, 5, 9, 12, 7, S, 0.5, padding, dtype, 5, 2))
        cases += [
            C(f"point-tiles-{padding}", 1, 3, 20, 10, 300, 1, padding=padding),  # N above both block sizes
            C(f"N128-{padding}", 1, 2, 17, 11, 128, 1, padding=padding),  # forward block edge
            C(f"N257-{padding}", 1, 2, 17, 11, 257, 1, padding=padding),  # backward block edge + 1
            C(f"pair-overflow-{padding}", 1, 3, 100, 10, 3, 40, padding=padding),
            C(f"no-slab-{padding}", 1, 2, 8200, 10, 5, 3, padding=padding),  # T * 4 B > 32 KiB
            C(f"slab-one-row-{padding}", 1, 2, 8192, 10, 5, 3, padding=padding),  # exactly one row fits
            C(f"grid-stride-{padding}", 2, 70, 120, 40, 4, 2, padding=padding, max_grid=3, sms=64),
            C(f"T1-{padding}", 1, 1, 1, 10, 1, 1, padding=padding),
            C(f"T1-wide-{padding}", 2, 3, 1, 12, 33, 2, padding=padding),
            C(f"special-features-{padding}", 2, 5, 9, 12, 7, 3, 0.5, padding, special_features=True),
        ]
    cases += [
        C("f64-no-slab", 1, 2, 4097, 10, 5, 2, dtype=torch.float64),
        C("f64-slab-one-row", 1, 2, 4096, 10, 5, 2, dtype=torch.float64),
        C("one-segment-many-channels", 1, 130, 6, 1, 3, 1),
        C("odd-everything", 3, 7, 13, 5, 11, 5, 1.0, "border"),
    ]
    return cases


def segment_interp_empty_shapes() -> list[tuple[int, int, int, int]]:
    """(B, C, T, K) with something empty: only the CPU kernels see these (the CUDA launchers
    return before launching)."""
    return [(0, 3, 5, 4), (2, 3, 5, 0), (2, 0, 5, 4), (2, 3, 0, 0)]
