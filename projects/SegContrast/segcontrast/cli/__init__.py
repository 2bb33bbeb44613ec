"""The ``segcontrast`` command: one entry point, a subcommand per tool.

``segcontrast evaluate`` and ``segcontrast validate`` need only the evaluator's dependencies;
``train``, ``predict`` and ``tune-threshold`` need the training extra (torch, torchvision and
Detectron2). Each subcommand's module is imported only when it runs, so ``--help`` answers at
once; a training subcommand without the extra says so in one line.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["COMMANDS", "Command", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand: the module whose ``main(argv)`` runs it, what it does, what it needs."""

    module: str
    summary: str
    needs_training: bool = False


COMMANDS = {
    "evaluate": Command("segcontrast.cli.evaluate",
                        "score a COCO results file (any framework's) as semantic and instance "
                        "segmentation, and explain the gap"),
    "validate": Command("segcontrast.cli.validate",
                        "check a COCO instances file and its images; print every problem"),
    "train": Command("segcontrast.engine.train_cli",
                     "train or evaluate Mask R-CNN with SegContrast's heads (Detectron2)", True),
    "predict": Command("segcontrast.engine.predict_cli",
                       "predict with trained weights on image files (Detectron2)", True),
    "tune-threshold": Command("segcontrast.engine.tune_cli",
                              "score one model's masks at many mask thresholds (Detectron2)",
                              True),
}
TRAINING_PACKAGES = ("torch", "torchvision", "detectron2")
INSTALL_TRAINING = ("pip install 'segcontrast[train]' (torch, torchvision, fvcore, ...), then "
                    "python tools/install_detectron2.py (Detectron2 is not on the package "
                    "registry); see the README, 'Install'")


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: segcontrast COMMAND [options]  (segcontrast COMMAND --help for its options)",
             "", "SegContrast: semantic vs instance segmentation scores of the same "
             "predictions, and why they differ.", "", "commands:"]
    for name, command in COMMANDS.items():
        lines.append(f"  {name:<{width}}  {command.summary}")
    lines += ["", "Without the training extra, evaluate and validate work; the others say what "
              "to install."]
    return "\n".join(lines)


def missing_training_packages() -> list[str]:
    """The training extra's packages that cannot be imported here (nothing is imported)."""
    return [name for name in TRAINING_PACKAGES if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``segcontrast COMMAND ...``.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The subcommand's exit code; 2 for an unknown command or a missing training extra.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        from .. import __version__

        print(f"segcontrast {__version__}")
        return 0
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        print(f"error: unknown command {name!r}; the commands are {', '.join(COMMANDS)} "
              "(segcontrast --help)", file=sys.stderr)
        return 2
    if command.needs_training:
        missing = missing_training_packages()
        if missing:
            print(f"error: segcontrast {name} needs the training extra, and "
                  f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
                  f"{INSTALL_TRAINING}", file=sys.stderr)
            return 2
    try:
        module = importlib.import_module(command.module)
    except KeyboardInterrupt:  # Ctrl-C while torch and Detectron2 load (seconds)
        print("interrupted before any work; nothing was written", file=sys.stderr)
        return 130
    return int(module.main(rest, prog=f"segcontrast {name}") or 0)
