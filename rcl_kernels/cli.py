"""The `rcl-kernels` command line: one subcommand per module.

SUBCOMMANDS maps each subcommand to the module that implements it and a one-line help. Such a
module defines
    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int        (the exit status)
Adding a subcommand (e.g. `train`, `detect`) is writing that module and adding one line here.
Only the chosen subcommand's module is imported, so `rcl-kernels eval` never loads training code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from rcl_kernels._freed_memory import keep_freed_memory

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "eval": ("rcl_kernels.evaluation.command",
             "mAP of detections (ActivityNet or THUMOS14 protocol) or AR@AN of proposals, as a table"),
    "diagnose": ("rcl_kernels.evaluation.diagnose_command",
                 "DETAD's error analyses: false-positive profile, sensitivity, false negatives"),
    "train": ("rcl_kernels.models.train_command", "train the RCL detector, then detect and evaluate on the test split"),
    "detect": ("rcl_kernels.models.detect_command", "detections of a trained RCL checkpoint, as ActivityNet-format json"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the `selected` subcommand gets its arguments (its module is imported)."""
    parser = argparse.ArgumentParser(prog="rcl-kernels", description="rcl_kernels command line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            importlib.import_module(module).add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Before any tensor exists: the commands allocate large tensors per batch, and glibc's
    # default would fault each one in afresh (rcl_kernels/_freed_memory.py).
    keep_freed_memory()
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(selected if selected in SUBCOMMANDS else None).parse_args(argv)
    return importlib.import_module(SUBCOMMANDS[args.command][0]).run(args)


if __name__ == "__main__":
    sys.exit(main())
