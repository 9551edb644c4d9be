"""Training processes: ``--nproc N`` launches N workers; under ``torchrun`` each worker is given.

Back-end: NCCL when the worker has a CUDA device (one GPU per local rank), gloo on the CPU.
Workers that ``--nproc`` starts rendezvous on the loopback interface (127.0.0.1, a free port):
nothing listens beyond this machine. Under ``torchrun`` the usual ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` apply.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

TIMEOUT = datetime.timedelta(minutes=30)


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: str = "cpu"
    backend: str = ""

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def under_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _device(local_rank: int) -> str:
    from burnscope.common.gpu import torch_cuda_usable

    if torch_cuda_usable():
        import torch

        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return "cpu"


def init(rank: int, world: int, local_rank: int, local_world: int, init_method: str | None = None) -> Context:
    """Join the process group (when ``world > 1``) and pin this worker's device and threads."""
    import torch

    from burnscope.engines.base import cpu_cores

    device = _device(local_rank)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    torch.set_num_threads(max(1, cpu_cores() // max(1, local_world)))
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend, init_method=init_method or "env://", rank=rank, world_size=world, timeout=TIMEOUT
        )
    return Context(rank, world, local_rank, local_world, device, backend if world > 1 else "")


def init_from_env() -> Context:
    """The context of a worker started by ``torchrun``."""
    return init(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]),
        int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])),
    )


def _entry(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    ctx = init(rank, world, rank, world, init_method=f"tcp://127.0.0.1:{port}")
    try:
        fn(ctx, *args)
    finally:
        shutdown()


def launch(nproc: int, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(ctx, *args)`` in ``nproc`` spawned workers on this machine (loopback rendezvous).
    A worker's exception is raised here as ``RuntimeError`` with its message."""
    import torch.multiprocessing as mp

    previous = os.environ.get("GLOO_SOCKET_IFNAME")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # the workers' gloo on the loopback interface only
    try:
        mp.start_processes(_entry, args=(nproc, free_port(), fn, args), nprocs=nproc, join=True, start_method="spawn")
    except mp.ProcessRaisedException as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise RuntimeError(f"a training worker failed: {lines[-1] if lines else exc}") from None
    finally:
        if previous is None:
            os.environ.pop("GLOO_SOCKET_IFNAME", None)


def shutdown() -> None:
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        import torch

        torch.distributed.barrier()


def gather_objects(ctx: Context, obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (one element when not distributed)."""
    if not ctx.distributed:
        return [obj]
    import torch

    out: list[Any] = [None] * ctx.world
    torch.distributed.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: Context, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    import torch

    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
