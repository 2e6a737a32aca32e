"""What one kernel launch costs, as the launcher plans it: the shape of the launch and the work
it does against the work the problem needs. Importable without Triton or a GPU.

Every GPU launcher (Triton and CUDA) describes its launches with these records, computed by the
same function that chooses its grid, so the size matrix (tests/test_size_matrix.py) can print and
assert the launch resources and the work ratio at the sizes users run without a GPU.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    """One launch of one kernel.

    kernel: the kernel's name (as in its source). blocks: the number of blocks / programs in the
    grid. threads_per_block: CUDA threads (Triton: num_warps * 32). work_done: the unit
    operations (multiply-adds, taps or candidate decays; the kernel's docstring says which) the
    launch performs, counting every evaluated lane, masked or not. work_needed: the same unit
    operations a minimal algorithm needs for this problem. note: what the unit is.
    parallel_limit: the most blocks the problem can keep busy by the kernel's design (Soft-NMS:
    one per video), where that is fewer than a GPU has SMs; None: no such limit.
    """

    kernel: str
    blocks: int
    threads_per_block: int
    work_done: float
    work_needed: float
    note: str = ""
    parallel_limit: int | None = None

    @property
    def work_ratio(self) -> float:
        """work_done / work_needed (1.0 for an empty problem)."""
        return self.work_done / self.work_needed if self.work_needed else 1.0

    @property
    def threads(self) -> int:
        return self.blocks * self.threads_per_block
