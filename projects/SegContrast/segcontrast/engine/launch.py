"""Start one process per device (GPU, or CPU slot), like ``detectron2.engine.launch``.

Detectron2 v0.6's launcher asserts CUDA and always uses NCCL. This one uses NCCL when CUDA
devices are present and gloo otherwise, so ``--num-gpus 2`` on a CPU-only machine runs two CPU
processes. It sets up Detectron2's local process group exactly as the original does, so
``detectron2.utils.comm`` works unchanged in the workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.utils import comm

from ..device import use_cuda
from ..utils.interrupts import interrupts_ignored
from ..utils.known_warnings import ignore_known_warnings

__all__ = ["DEFAULT_TIMEOUT", "launch", "use_cuda"]

DEFAULT_TIMEOUT = timedelta(minutes=30)
logger = logging.getLogger(__name__)


def _find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = None,
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes on this machine.

    Args:
        main_func: the function each process runs.
        num_gpus_per_machine: processes on this machine (GPUs, or CPU processes without CUDA).
        num_machines: machines taking part.
        machine_rank: this machine's rank.
        dist_url: ``tcp://host:port`` of the rank-0 machine, or "auto" (one machine only).
        args: arguments for ``main_func``.
        timeout: timeout of collective operations.
    """
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        main_func(*args)
        return
    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; pass tcp://HOST:PORT.")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if use_cuda() and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(
            f"--num-gpus {num_gpus_per_machine} asks for more GPUs than this machine has "
            f"({torch.cuda.device_count()})."
        )
    context = mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
        join=False,
        start_method="spawn",
    )
    try:
        while not context.join():
            pass
    except KeyboardInterrupt:
        _stop_workers(context.processes)
        raise


def _stop_workers(processes: Sequence[Any], grace: float = 10.0) -> None:
    """After Ctrl-C in the launching process: end the workers without tracebacks.

    A terminal sends SIGINT to every process, and a worker stopped by it exits quietly (its
    files are written atomically); a worker that did not get it (``kill -INT`` of the launcher
    alone) is sent one; a worker still running after that, e.g. waiting in a collective for a
    peer that has gone, is terminated.
    """
    with interrupts_ignored():
        for ask in (None, signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in processes if p.is_alive()]
            if not alive:
                return
            for process in alive:
                if ask is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, ask)
            deadline = time.monotonic() + grace
            for process in alive:
                process.join(max(0.0, deadline - time.monotonic()))


def _distributed_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: Sequence[Any],
    timeout: timedelta,
) -> None:
    ignore_known_warnings()  # a spawned process starts with the default filters
    cuda = use_cuda()
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    try:
        dist.init_process_group(
            backend="NCCL" if cuda else "GLOO",
            init_method=dist_url,
            world_size=world_size,
            rank=global_rank,
            timeout=timeout,
        )
    except Exception:
        logger.error("Process group URL: %s", dist_url)
        raise
    num_machines = world_size // num_gpus_per_machine
    for i in range(num_machines):
        ranks_on_i = list(range(i * num_gpus_per_machine, (i + 1) * num_gpus_per_machine))
        group = dist.new_group(ranks_on_i)
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    if cuda:
        torch.cuda.set_device(local_rank)
    comm.synchronize()
    try:
        main_func(*args)
    except KeyboardInterrupt:
        # Ctrl-C: leave at once. Tearing the group down would wait for peers that may be gone
        # or stopped in a collective; the process's end closes its connections anyway.
        return
    dist.destroy_process_group()
