"""The order in which DETAD's own code walks equal scores, for diagnose(ties="detad").

DETAD (HumamAlwassel/DETAD src/) ranks predictions with numpy's and pandas' default sorts, and
neither is stable: among equal scores the order is whatever numpy's quicksort leaves, which
depends on the numpy version and the CPU (numpy >= 2 sorts float64 with x86-simd-sort kernels on
AVX2 / AVX-512 machines, older numpy with an introsort), not on the input alone. So no portable
rule reproduces DETAD's numbers on tie-heavy input; diagnose's default (ties="input": ties in
input order) is the same on every machine. Four sorts of DETAD decide the order of ties:

- matching and AP_N (compute_average_precision_detection, and the gains in diagnose()): a class's
  predictions, in the order DETAD holds them, by np.argsort(score)[::-1], the sort's own tie order
  reversed;
- the false-positive analysis's limited set (_limit_prediction): DataFrame.nlargest(10 x npos) per
  class. With at least as many to keep as there are, pandas sorts (Series.sort_values(ascending=
  False): its nargsort reverses, argsorts with the default kind and reverses again); otherwise it
  selects with a stable sort (ties in held order). The limited set is then matched on its own, in
  its own argsort order, which can differ from the full ranking's;
- the profile's groups (split_predictions_by_score_ranges): sort_values(by="score",
  ascending=False) over the whole limited frame (classes concatenated in DETAD's label order,
  the order classes first appear in the ground truth), then each class's rows in that order;
- the sensitivity analysis's per-class AP (compute_average_mAP_N_for_characteristic):
  sort_values(by="score", ascending=False) of the class's predictions, while their matches come
  from the argsort order above.

The functions here make the same numpy calls on the same float64 arrays, so in the environment
DETAD runs in they give its order. What they model of pandas is pandas 1.x-2.2's code (nargsort
with kind="quicksort"); equal tIoUs in matching still go by annotation order (DETAD: argsort
reversed), which needs two instances of one class and video at exactly the same tIoU.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

TIE_ORDERS = ("input", "detad")


def argsort_reversed(rows: np.ndarray, score: np.ndarray) -> np.ndarray:
    """`rows` by descending score as np.argsort(score)[::-1] orders them."""
    return rows[np.argsort(score[rows])[::-1]]


def pandas_descending(rows: np.ndarray, score: np.ndarray) -> np.ndarray:
    """`rows` by descending score as pandas' sort_values(ascending=False) orders them."""
    backwards = rows[::-1]
    return backwards[np.argsort(score[backwards])][::-1]


def pandas_nlargest(rows: np.ndarray, score: np.ndarray, n: int) -> np.ndarray:
    """The n rows of largest score, in the order DataFrame.nlargest(n, "score") returns them."""
    if n >= len(rows):
        return pandas_descending(rows, score)
    negated = -score[rows]
    kth = np.partition(negated, n - 1)[n - 1]
    candidates = np.flatnonzero(negated <= kth)
    return rows[candidates[np.argsort(negated[candidates], kind="stable")][:n]]


def per_class(label: np.ndarray, held: np.ndarray, classes: np.ndarray,
              order: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """order(rows of class c, in held order) for each c of `classes` in turn, concatenated."""
    by_class = held[np.argsort(label[held], kind="stable")]
    sorted_label = label[by_class]
    lo = np.searchsorted(sorted_label, classes, side="left")
    hi = np.searchsorted(sorted_label, classes, side="right")
    parts = [order(by_class[a:b]) for a, b in zip(lo, hi)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def detad_ranking(score: np.ndarray, label: np.ndarray, held: np.ndarray, num_classes: int) -> np.ndarray:
    """Class-sorted ranking of the `held` predictions (in the order DETAD holds them), as DETAD
    matches them and computes AP_N."""
    return per_class(label, held, np.arange(num_classes), lambda rows: argsort_reversed(rows, score))


def detad_limited(score: np.ndarray, label: np.ndarray, npos: np.ndarray, factor: int) -> np.ndarray:
    """The limited set, each class's rows in the order DETAD's nlargest leaves them (classes with
    ground truth, in class order; their relative order does not matter to the per-class sorts)."""
    classes = np.flatnonzero(npos > 0)
    return per_class(label, np.arange(len(score)), classes,
                     lambda rows: pandas_nlargest(rows, score, int(npos[label[rows[0]]] * factor)) if len(rows) else rows)


def detad_profile_positions(score: np.ndarray, label: np.ndarray, limited: np.ndarray,
                            class_order: np.ndarray) -> np.ndarray:
    """(P,) position of each limited prediction within its class in the profile's order (others:
    undefined): the limited frame (classes in DETAD's label order `class_order`), sorted
    descending by pandas over all its rows."""
    rank_of_class = np.zeros(int(max(label.max(initial=-1), class_order.max(initial=-1))) + 1, dtype=np.int64)
    rank_of_class[class_order] = np.arange(len(class_order))
    frame = limited[np.argsort(rank_of_class[label[limited]], kind="stable")]
    walked = pandas_descending(frame, score)
    walked_label = label[walked]
    by_class = np.argsort(walked_label, kind="stable")
    starts = np.searchsorted(walked_label[by_class], walked_label[by_class])
    position = np.zeros(len(score), dtype=np.int64)
    position[walked[by_class]] = np.arange(len(walked)) - starts
    return position
