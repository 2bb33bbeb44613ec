"""Forward + backward time of the SegContrast mask losses against torch's and torchvision's.

Each loss runs on the same float32 logits of Mask R-CNN mask shapes (ROIs, 28, 28) with binary
targets; the variants are timed round-robin (interleaved, in a new random order every repeat) so
that the machine's state affects them alike, and each figure is the median of the repeats. Ratios
are to torch's plain ``binary_cross_entropy_with_logits`` measured in the same run. The figures are
information only: the losses are plain PyTorch, and what a user feels is the training step
(``bench/bench_train_step.py``).

    python bench/bench_losses.py                  # print the tables
    python bench/bench_losses.py --write-docs     # also write them into docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from segcontrast.modeling.losses import (
    auto_pos_weight,
    focal_loss_with_logits,
    pos_weighted_bce_with_logits,
)
from torchvision.ops import sigmoid_focal_loss

DOCS = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
BASELINE = "torch BCE (plain)"


# --- shared with bench_train_step.py ----------------------------------------------------------


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, else ``platform``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_header(device: str) -> list[str]:
    """Markdown lines: the exact command, the machine, the library versions and the date."""
    import torchvision

    argv = [f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]
    gpu = (
        f"; GPU {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}"
        if device == "cuda"
        else ""
    )
    return [
        f"Command: `python {shlex.join(argv)}`  ",
        f"Machine: {os.cpu_count()} CPUs ({cpu_name()}), {platform.system()}{gpu}  ",
        f"Versions: Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}  ",
        f"Date: {datetime.date.today().isoformat()}",
    ]


def time_interleaved(
    variants: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int,
    sync: Callable[[], None],
    samples: dict[str, list[float]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each variant, called round-robin in a new random order each time.

    A fixed (or merely rotated) order would have each variant always run after the same other one,
    and pay for what that one leaves behind (freed memory the allocator hands back to the system,
    evicted caches): a shuffled order spreads that over all variants. The order is seeded.

    Args:
        variants: name -> a zero-argument callable; its return value is ignored.
        repeats: timed calls per variant.
        warmup: untimed calls per variant first (caches, allocator, lazy initialisation).
        sync: waits for the device (a no-op on CPU).
        samples: if given, receives name -> the seconds of each repeat (the i-th of every
            variant come from the same round, for ratios paired by round).
        clock: seconds now; wall time by default (``time.process_time``: this process's CPU
            time, which other processes on a shared machine hardly disturb).

    Returns:
        name -> median seconds.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    order = random.Random(0)
    times: dict[str, list[float]] = {name: [] for name in names}
    if samples is not None:
        samples.update(times)
    for _ in range(repeats):
        for name in order.sample(names, len(names)):
            sync()
            start = clock()
            variants[name]()
            sync()
            times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def write_docs(marker: str, body: str) -> None:
    """Replace the text between ``<!-- bench:MARKER:start/end -->`` in docs/BENCHMARKS.md."""
    start, end = f"<!-- bench:{marker}:start -->", f"<!-- bench:{marker}:end -->"
    text = DOCS.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{DOCS} has no {start} ... {end} section")
    head, rest = text.split(start, 1)
    DOCS.write_text(head + start + "\n" + body.strip() + "\n" + end + rest.split(end, 1)[1])
    print(f"wrote the {marker} section of {DOCS}")


# --- the losses -------------------------------------------------------------------------------


def loss_variants(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, Callable]:
    """Each variant by name: ``f(x)``, a scalar loss of ``x`` against ``targets``."""
    fixed = torch.tensor(4.0, device=logits.device)

    def per_roi(x):  # PosWeightedBCEMaskHead's "instance" scope
        weight = auto_pos_weight(targets, 20.0, dim=(1, 2))
        return pos_weighted_bce_with_logits(x, targets, weight)

    return {
        BASELINE: lambda x: F.binary_cross_entropy_with_logits(x, targets),
        "torch BCE, pos_weight=4": lambda x: F.binary_cross_entropy_with_logits(
            x, targets, pos_weight=fixed
        ),
        "ours pos-weighted BCE, auto": lambda x: pos_weighted_bce_with_logits(x, targets),
        "ours pos-weighted BCE, fixed 4": lambda x: pos_weighted_bce_with_logits(x, targets, 4.0),
        "ours pos-weighted BCE, auto per ROI": per_roi,
        "ours focal (alpha 0.25, gamma 2)": lambda x: focal_loss_with_logits(x, targets),
        "ours focal (alpha 0.25, gamma 1.5)": lambda x: focal_loss_with_logits(
            x, targets, gamma=1.5
        ),
        "torchvision sigmoid_focal_loss": lambda x: sigmoid_focal_loss(
            x, targets, reduction="mean"
        ),
    }


def bench_shape(shape, device, repeats, warmup, autocast) -> dict[str, float]:
    """Median seconds per variant."""
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(shape, generator=gen) * 2).to(device)
    # Blobs of foreground, ~30% of the pixels, as in mask targets.
    targets = (torch.rand(shape, generator=gen) < 0.3).float().to(device)
    if autocast:
        logits = logits.to(torch.bfloat16 if device == "cpu" else torch.float16)
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    context = torch.autocast(device, dtype=dtype) if autocast else nullcontext()

    def step(fn):
        x = logits.detach().requires_grad_()
        with context:
            loss = fn(x)
        loss.backward()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    variants = {name: (lambda f=fn: step(f)) for name, fn in loss_variants(logits, targets).items()}
    return time_interleaved(variants, repeats, warmup, sync, clock=clock(device))


def clock(device: str) -> Callable[[], float]:
    """The clock to time with: CPU time for one CPU thread, else wall time.

    Other processes on a shared machine hardly disturb the CPU time of one thread; that of several
    threads would add up their work, not measure their latency.
    """
    if device == "cpu" and torch.get_num_threads() == 1:
        return time.process_time
    return time.perf_counter


def table(results: dict[tuple, dict[str, float]]) -> list[str]:
    columns = list(results)
    head = "| loss | " + " | ".join(f"{c[0]} {c[1]} ms (ratio)" for c in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for name in next(iter(results.values())):
        cells = []
        for column in columns:
            ms = results[column][name] * 1e3
            cells.append(f"{ms:.2f} ({results[column][name] / results[column][BASELINE]:.2f}x)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="512,28,28 2048,28,28", help="space-separated shapes")
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--threads",
        default=f"1,{torch.get_num_threads()}",
        help="comma-separated torch thread counts to run with (CPU)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--autocast", action="store_true", help="also under bf16 (CPU) / fp16 autocast"
    )
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    shapes = [tuple(int(n) for n in s.split(",")) for s in args.shapes.split()]
    thread_counts = (
        sorted({int(t) for t in args.threads.split(",")}) if args.device == "cpu" else [0]
    )
    body = [
        "Forward + backward of the mean loss over float32 logits (ROIs, 28, 28) with binary "
        f"targets (30% foreground); median of {args.repeats} interleaved repeats, in CPU time with "
        "one thread (wall time with more); the ratio is "
        f"the time over that of {BASELINE} in the same run (lower is faster). Information "
        "only: the performance goal is the training step's (next section).",
        "",
    ]
    results = {}
    for threads in thread_counts:
        if threads:
            torch.set_num_threads(threads)
        where = f"{threads} thread{'s' * (threads > 1)}" if threads else args.device
        where += ", CPU" if clock(args.device) is time.process_time else ", wall"
        for autocast in [False, True] if args.autocast else [False]:
            for shape in shapes:
                label = ("autocast " if autocast else "") + str(shape)
                results[(label, where)] = bench_shape(
                    shape, args.device, args.repeats, args.warmup, autocast
                )
    body += run_header(args.device) + [""] + table(results)
    text = "\n".join(body)
    print(text)
    if args.write_docs:
        write_docs("losses", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
