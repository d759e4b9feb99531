"""Data-parallel training on several processes: ``torchrun`` + DistributedDataParallel.

    torchrun --nproc-per-node 4 -m training finetune --from model.onnx --manifest export/manifest.csv --out run
    torchrun --nproc-per-node 4 -m training train --manifest manifest.csv --out run

torchrun starts one process per GPU (or per CPU slot) and describes the group in the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``). :func:`session` joins it: NCCL
with one GPU per process where CUDA is available, else gloo on the CPU. Without torchrun (no
``WORLD_SIZE`` or 1) every function here is a no-op and training runs as before.

What the training loop does with it (the hooks in :mod:`training.train` and :mod:`training.finetune`):

- each epoch's batch plan (same-width batches) is made on rank 0 and broadcast (:func:`common_plan`),
  then split between the processes with a :class:`~torch.utils.data.DistributedSampler` over the
  batches (:func:`shard`), which pads so that every process takes the same number of steps;
- the model is wrapped in DDP (:func:`wrap`), which averages the gradients of the processes at
  each step; each process's loss keeps its per-sample weights (1 - the label's uncertainty);
- only rank 0 writes: the log, metrics, checkpoints (``last.pt``, ``best.pt``) and the exported
  ``.onnx`` (:func:`is_main`); rank 0 fills the image cache before the others read it
  (:func:`main_first`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

if TYPE_CHECKING:
    from training.data import Batch

__all__ = [  # fmt: skip
    "active",
    "rank",
    "world_size",
    "is_main",
    "session",
    "main_first",
    "common_plan",
    "shard",
    "wrap",
    "place",
    "for_eval",
]


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """True in the process that writes (rank 0, or the only process)."""
    return rank() == 0


def _device() -> torch.device:
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextmanager
def session() -> Iterator[bool]:
    """Join the process group torchrun describes, for the duration of a command; yields whether
    training is distributed. A no-op without torchrun or inside a group already joined."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield active()
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    try:
        yield True
    finally:
        dist.barrier()
        dist.destroy_process_group()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. fills the image cache), the others after it."""
    if active() and not is_main():
        dist.barrier()
    yield
    if active() and is_main():
        dist.barrier()


def common_plan(plan: list[list[int]]) -> list[list[int]]:
    """Rank 0's batch plan on every process (each process's random generator drifts with the
    augmentations it draws, so plans made apart would overlap)."""
    if not active():
        return plan
    box: list[Any] = [plan]
    dist.broadcast_object_list(box, src=0)
    return [list(map(int, b)) for b in box[0]]


def shard(plan: list[list[int]]) -> list[list[int]]:
    """This process's share of an epoch's batches (every process gets the same number)."""
    if not active():
        return plan
    # A sampler over the batches (any sized sequence serves as its dataset).
    batches: Any = plan
    sampler: DistributedSampler[int] = DistributedSampler(
        batches, num_replicas=world_size(), rank=rank(), shuffle=False, drop_last=False
    )
    return [plan[i] for i in sampler]


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model as the training step calls it: DDP-wrapped (on this process's GPU with NCCL) in a
    group, else the model itself. Checkpoints and export keep using the unwrapped model."""
    if not active():
        return model
    device = _device()
    model.to(device)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def place(batch: Batch) -> Batch:
    """The batch on this process's device (unchanged on the CPU)."""
    device = _device()
    if device.type == "cpu":
        return batch
    from dataclasses import replace

    targets = {k: replace(t, index=t.index.to(device), weight=t.weight.to(device)) for k, t in batch.targets.items()}
    lesion = batch.lesion
    if lesion is not None:
        lesion = replace(lesion, target=lesion.target.to(device), weight=lesion.weight.to(device))
    return replace(batch, image=batch.image.to(device), targets=targets, lesion=lesion)


def for_eval(model: torch.nn.Module) -> Any:
    """The model to evaluate and save between epochs: itself on the CPU, a CPU copy when it trains
    on a GPU (the evaluation and checkpoint code works on CPU tensors)."""
    if _device().type == "cpu":
        return model
    import copy

    return copy.deepcopy(model).cpu()
