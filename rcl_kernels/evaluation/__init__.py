"""Temporal action detection metrics that follow the official protocols, vectorised with numpy.

- detection_map(predictions, ground_truth, tiou_thresholds, protocol="activitynet" | "thumos14"):
  ActivityNet's Evaluation/eval_detection.py rules, or the THUMOS14 kit's (TH14evalDet_Updated.m)
  with its Ambiguous regions.
- average_recall(proposals, ground_truth, max_proposals=100): AR@AN and its AUC, as BMN reports.
- diagnose(predictions, ground_truth, dataset="activitynet" | "thumos14"): DETAD's false-positive,
  sensitivity and false-negative analyses (rcl_kernels.evaluation.diagnose; figures in
  rcl_kernels.evaluation.diagnose_figures, which needs matplotlib).

Inputs are ActivityNet-format dicts or json files, BSN / G-TAD annotation files, the THUMOS14
kit's detection files and groundtruth folder (rcl_kernels.evaluation.thumos14_kit), or arrays
(rcl_kernels.evaluation.io). Malformed input raises EvaluationInputError naming the video and field.
"""

from rcl_kernels.evaluation.detection import (
    ACTIVITYNET_TIOU_THRESHOLDS,
    THUMOS14_TIOU_THRESHOLDS,
    DetectionMAP,
    average_recall,
    detection_map,
)
from rcl_kernels.evaluation.characteristics import DETAD_BINS, Bins
from rcl_kernels.evaluation.diagnose import Diagnosis, diagnose
from rcl_kernels.evaluation.io import (
    Detections,
    EvaluationInputError,
    GroundTruth,
    InputReport,
    load_detections,
    load_ground_truth,
    write_results,
)
from rcl_kernels.evaluation.proposals import ProposalRecall
from rcl_kernels.evaluation.tiou import pairwise_tiou

__all__ = [
    "ACTIVITYNET_TIOU_THRESHOLDS",
    "DETAD_BINS",
    "Bins",
    "Diagnosis",
    "InputReport",
    "diagnose",
    "THUMOS14_TIOU_THRESHOLDS",
    "DetectionMAP",
    "Detections",
    "EvaluationInputError",
    "GroundTruth",
    "ProposalRecall",
    "average_recall",
    "detection_map",
    "load_detections",
    "load_ground_truth",
    "pairwise_tiou",
    "write_results",
]
