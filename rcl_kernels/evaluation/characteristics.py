"""Instance characteristics and their bins, with the definitions of DETAD (Alwassel et al., "Diagnosing
Error in Temporal Action Detectors", ECCV 2018; HumamAlwassel/DETAD, src/*.py and data/*.json).

A bin is (lo, hi] with its lowest edge included: DETAD bins every characteristic with
pandas.cut(values, bins=edges, labels=labels, include_lowest=True); a value outside every bin
(or NaN) belongs to none. This is the package's one definition of a bin (Bins), used by the
diagnosis and by rcl_kernels.models.length_bins.

Characteristics of a ground-truth instance (the fields of DETAD's extra-characteristics files):
  length         end - start, seconds
  coverage       length / duration of its video
  num-instances  instances of any class in its video (DETAD's thumos14_test_extra_characteristics.json
                 gives 12 to each of the 6 CliffDiving + 6 Diving instances of video_test_0000173)
  context-size, context-distance, agreement
                 annotations DETAD collected for ActivityNet (src/ reads them from the file, never
                 computes them): available only from an extra-characteristics file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from rcl_kernels.data.annotations import AnnotationError, GroundTruth, read_json


@dataclass(frozen=True)
class Bins:
    """Bins (edges[i], edges[i + 1]] labelled labels[i], the first one closed on the left."""

    edges: tuple[float, ...]
    labels: tuple[str, ...]

    def __post_init__(self):
        # Equal edges make an empty bin (quantile edges of few values), which is allowed.
        if len(self.edges) != len(self.labels) + 1 or np.any(np.diff(self.edges) < 0):
            raise ValueError(f"Bins: need non-decreasing edges, one more than labels; got {self.edges}, {self.labels}")

    @classmethod
    def from_edges(cls, edges) -> Bins:
        """Bins labelled "(lo, hi]" (the first "[lo, hi]")."""
        e = [float(x) for x in edges]
        labels = [f"{'[' if i == 0 else '('}{e[i]:.3g}, {e[i + 1]:.3g}]" for i in range(len(e) - 1)]
        return cls(tuple(e), tuple(labels))

    def __len__(self) -> int:
        return len(self.labels)

    def assign(self, values) -> np.ndarray:
        """(N,) int64 bin index of each value, -1 outside every bin (NaN included)."""
        values = np.asarray(values, dtype=np.float64)
        edges = np.asarray(self.edges, dtype=np.float64)
        index = np.searchsorted(edges, values, side="left") - 1
        index[values == edges[0]] = 0  # include_lowest
        index[(index >= len(self.labels)) | np.isnan(values)] = -1
        return index.astype(np.int64)


_SIZE = ("XS", "S", "M", "L", "XL")
# DETAD's bins (src/sensitivity_analysis.py, false_positive_analysis.py, false_negative_analysis.py main()).
DETAD_BINS: dict[str, dict[str, Bins]] = {
    "activitynet": {
        "context-size": Bins(tuple(float(x) for x in range(-1, 7)), ("0", "1", "2", "3", "4", "5", "6")),
        "context-distance": Bins((-1.0, 0.0, 1.0, 2.0, 3.0), ("Inf", "N", "M", "F")),
        "agreement": Bins(tuple(np.linspace(0, 1.0, 6).tolist()), ("XW", "W", "M", "H", "XH")),
        "coverage": Bins(tuple(np.linspace(0, 1.0, 6).tolist()), _SIZE),
        "length": Bins((0.0, 30.0, 60.0, 120.0, 180.0, np.inf), _SIZE),
        "num-instances": Bins((-1.0, 1.0, 4.0, 8.0, np.inf), _SIZE[:4]),
    },
    "thumos14": {
        "coverage": Bins((0.0, 0.02, 0.04, 0.06, 0.08, 1.0), _SIZE),
        "length": Bins((0.0, 3.0, 6.0, 12.0, 18.0, np.inf), _SIZE),
        "num-instances": Bins((-1.0, 1.0, 40.0, 80.0, np.inf), _SIZE[:4]),
    },
}
COMPUTED_CHARACTERISTICS = ("coverage", "length", "num-instances")
EXTRA_CHARACTERISTICS = ("context-size", "context-distance", "agreement")
# The order DETAD's figures put buckets in (plot_sensitivity_analysis's buckets_order).
DETAD_BUCKET_ORDER = ("0", "1", "2", "3", "4", "5", "6", "XW", "W", "XS", "S", "N", "M", "F", "Inf", "L", "XL",
                      "H", "XH")


def instance_characteristics(gt: GroundTruth, extra: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """{name: (G,) float64} for length, coverage (NaN where the video's duration is unknown) and
    num-instances, then the arrays of `extra` (read_extra_characteristics), which win."""
    length = gt.segments[:, 1] - gt.segments[:, 0]
    durations = gt.durations if gt.durations is not None else np.full(len(gt.video_ids), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        coverage = length / durations[gt.video]
    counts = np.bincount(gt.video, minlength=len(gt.video_ids)).astype(np.float64)
    out = {"length": length, "coverage": coverage, "num-instances": counts[gt.video]}
    for name, values in (extra or {}).items():
        values = np.asarray(values, dtype=np.float64)
        known = ~np.isnan(values)
        out[name] = np.where(known, values, out[name]) if name in out else values
    return out


def read_extra_characteristics(source, gt: GroundTruth) -> dict[str, np.ndarray]:
    """Characteristics from a DETAD extra-characteristics json (`{"database": {video: {"annotations":
    [{"label", "segment", "coverage", "length", ...}]}}}`), aligned with gt's instances by (video,
    label, segment); a field that is null, or an instance the file lacks, gives NaN."""
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "extra characteristics"
    data = read_json(source) if isinstance(source, (str, os.PathLike)) else source
    database = data.get("database") if isinstance(data, Mapping) else None
    if not isinstance(database, Mapping):
        raise AnnotationError(f"{name}: expected an object with a field 'database'")
    table: dict[tuple, list[dict]] = {}
    fields: set[str] = set()
    for video, entry in database.items():
        for i, ann in enumerate(entry.get("annotations", []) if isinstance(entry, Mapping) else []):
            try:
                key = (str(video), ann["label"], float(ann["segment"][0]), float(ann["segment"][1]))
            except (KeyError, TypeError, IndexError, ValueError):
                raise AnnotationError(f"{name}: video {video!r} annotation {i}: needs 'label' and 'segment'") from None
            table.setdefault(key, []).append(ann)
            fields.update(k for k in ann if k in COMPUTED_CHARACTERISTICS + EXTRA_CHARACTERISTICS)
    out = {f: np.full(len(gt.label), np.nan) for f in sorted(fields)}
    taken: dict[tuple, int] = {}
    for g in range(len(gt.label)):
        key = (gt.video_ids[gt.video[g]], gt.classes[gt.label[g]], float(gt.segments[g, 0]), float(gt.segments[g, 1]))
        entries = table.get(key, ())
        j = taken.get(key, 0)
        if j < len(entries):
            taken[key] = j + 1
            for f in fields:
                value = entries[j].get(f)
                if value is not None:
                    out[f][g] = float(value)
    return out
