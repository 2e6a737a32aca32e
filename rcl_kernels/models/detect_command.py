"""`rcl-kernels detect` (and python/detect.py): detections of a trained checkpoint, as ActivityNet-format
JSON in seconds, evaluated against the split's ground truth unless --no-eval.

The run options (dataset, windows, Soft-NMS, ...) default to those stored in the checkpoint; flags
and --config override them. The model options come from the checkpoint (--backend may change the kernels).
"""

from __future__ import annotations

import argparse
import os
import sys

from rcl_kernels._freed_memory import keep_freed_memory
from rcl_kernels.models.checkpoints import load_checkpoint, model_from_checkpoint
from rcl_kernels.models.config import BACKENDS, ConfigError
from rcl_kernels.models.data_setup import feature_dim_of, load_split
from rcl_kernels.models.distributed import resolve_device
from rcl_kernels.models.flags import add_config_arguments, configs_from_args
from rcl_kernels.models.inference import detect, evaluate
from rcl_kernels.models.postprocess import write_results_json
from rcl_kernels.models.reporting import metrics_table, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="FILE", help="a checkpoint written by train")
    parser.add_argument("--output", metavar="FILE", help="results json (default OUTPUT_DIR/detections.json)")
    parser.add_argument("--kernels", choices=BACKENDS, default=None,
                        help="override the checkpoint's backend: fast or reference kernels")
    parser.add_argument("--no-eval", action="store_true", help="write detections only")
    add_config_arguments(parser, model=False, model_keys=("feature_dim",))


def run(args: argparse.Namespace) -> int:
    try:
        state = load_checkpoint(args.checkpoint)
        stored = {k: (v, f"{args.checkpoint} (stored run config)") for k, v in state.get("run_config", {}).items()
                  if k != "resume"}
        # the synthetic data's dimension defaults to the model's (--feature-dim may change it)
        stored["feature_dim"] = (state["model_config"]["feature_dim"], f"{args.checkpoint} (stored model config)")
        data_cfg, run_cfg = configs_from_args(args, base=stored)
        device = resolve_device(run_cfg.device)
        model, _ = model_from_checkpoint(args.checkpoint, device, backend=args.kernels)
        data = load_split(run_cfg, "test", feature_dim=data_cfg.feature_dim)
        if feature_dim_of(data) != model.config.feature_dim:
            raise ConfigError(f"--checkpoint {args.checkpoint}: the model takes {model.config.feature_dim}-dim "
                              f"features but the data has {feature_dim_of(data)} (check --feature-dim / --feature-dir)")
        if tuple(state["classes"]) != tuple(data.videos.classes):
            raise ConfigError(f"--checkpoint {args.checkpoint}: trained on {len(state['classes'])} classes that "
                              f"differ from the data's {len(data.videos.classes)}")
        output = args.output or os.path.join(run_cfg.output_dir, "detections.json")
        if args.no_eval:
            results, seconds = detect(model, run_cfg, data, device)
            write_results_json(output, results)
            count = sum(map(len, results.values()))
            print(f"{count} detections of {len(results)} videos in {seconds:.1f} s -> {output}")
            return 0
        evaluation = evaluate(model, run_cfg, data, device)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"rcl-kernels detect: error: {exc}", file=sys.stderr)
        return 2
    write_results_json(output, evaluation.results)
    write_json(os.path.splitext(output)[0] + "_metrics.json", evaluation.metrics)
    print(metrics_table(evaluation.metrics))
    print(f"inference {evaluation.metrics['inference_seconds']:.1f} s for {evaluation.metrics['videos']} videos "
          f"-> {output}")
    return 0


def main(argv=None) -> int:
    keep_freed_memory()  # as the rcl-kernels command line does (rcl_kernels/_freed_memory.py)
    parser = argparse.ArgumentParser(prog="detect.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))
