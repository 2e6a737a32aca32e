"""`rcl-kernels train` (and python/train.py): train RCL, then detect and evaluate on the test split.

Writes OUTPUT_DIR/last.pt (checkpoint), OUTPUT_DIR/results.json (ActivityNet-format detections in
seconds) and OUTPUT_DIR/metrics.json (mAP per tIoU, per length bin, timings, the configs).
"""

from __future__ import annotations

import argparse
import os
import sys

from rcl_kernels._freed_memory import keep_freed_memory
from rcl_kernels.models.config import ConfigError
from rcl_kernels.models.data_setup import load_split
from rcl_kernels.models.flags import add_config_arguments, configs_from_args
from rcl_kernels.models.inference import evaluate
from rcl_kernels.models.postprocess import write_results_json
from rcl_kernels.models.reporting import metrics_table, write_json
from rcl_kernels.models.training import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-eval", action="store_true", help="train only")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        model_cfg, run_cfg = configs_from_args(args)
        result = train(model_cfg, run_cfg)
        if result.checkpoint is None or args.no_eval:  # not rank 0, or asked not to
            return 0
        print(f"trained {result.steps} steps in {result.seconds:.1f} s; checkpoint {result.checkpoint}")
        test = load_split(run_cfg, "test", feature_dim=result.model.config.feature_dim)
        evaluation = evaluate(result.model, run_cfg, test, next(result.model.parameters()).device)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"rcl-kernels train: error: {exc}", file=sys.stderr)
        return 2
    write_results_json(os.path.join(run_cfg.output_dir, "results.json"), evaluation.results)
    metrics = dict(evaluation.metrics, train_steps=result.steps, train_seconds=result.seconds,
                   final_loss=sum(result.losses[-10:]) / max(1, len(result.losses[-10:])),
                   final_terms=result.final_terms,
                   model_config=result.model.config.to_dict(), run_config=run_cfg.to_dict())
    write_json(os.path.join(run_cfg.output_dir, "metrics.json"), metrics)
    print(metrics_table(metrics))
    print(f"inference {metrics['inference_seconds']:.1f} s for {metrics['videos']} videos; "
          f"written to {run_cfg.output_dir}")
    return 0


def main(argv=None) -> int:
    keep_freed_memory()  # as the rcl-kernels command line does (rcl_kernels/_freed_memory.py)
    parser = argparse.ArgumentParser(prog="train.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))
