"""Several processes started by an existing launcher (`accelerate launch --multi_gpu`, `torchrun`):
which one this is, and the few collective steps the scripts need.

The launchers set RANK, WORLD_SIZE and LOCAL_RANK; without them a run is one process and
nothing here does anything.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from dataclasses import dataclass
from typing import Any

from sfteval.cli import UserError

# A process that finishes its share early waits at the next collective step for the slowest
# one (the last IFEval shard, a long evaluation); the 30-minute default would end the run.
GROUP_TIMEOUT = dt.timedelta(hours=6)


@dataclass(frozen=True)
class Launch:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world_size > 1


def env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise UserError(f"environment variable {name}={text!r} is not a whole number (set by the launcher)") from None


def launch() -> Launch:
    world_size = env_int("WORLD_SIZE", 1)
    rank = env_int("RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserError(f"RANK={rank} and WORLD_SIZE={world_size} from the launcher do not fit together")
    return Launch(rank=rank, world_size=world_size, local_rank=env_int("LOCAL_RANK", rank))


def init_process_group() -> Launch:
    """Join the launcher's process group (NCCL on GPUs, gloo on a CPU) when there are several
    processes; transformers' Trainer then uses this group."""
    info = launch()
    if not info.several:
        return info
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(info.local_rank)
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, timeout=GROUP_TIMEOUT)
    return info


def barrier() -> None:
    dist = group()
    if dist is not None:
        dist.barrier()


def gather(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (just `[obj]` for one process)."""
    dist = group()
    if dist is None:
        return [obj]
    objects: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(objects, obj)
    return objects


def group() -> Any:
    """torch.distributed when a process group is running, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def load_onto_indexed_cpu() -> None:
    """Let torch.load take `map_location="cpu:0"`. transformers 5.17 resumes the optimizer of a
    run of several processes with `map_location=args.device`, which on a CPU is `cpu:0`, a place
    torch.load cannot restore to; CPU tensors are the same on any "cpu:<n>"."""
    import torch.serialization

    def tag_nothing(obj: Any) -> None:
        return None

    def restore_on_cpu(obj: Any, location: str) -> Any:
        return obj if location.startswith("cpu:") else None

    torch.serialization.register_package(11, tag_nothing, restore_on_cpu)
