"""Data parallelism with torch.distributed, inert in a plain `python train.py` run (docs/scaling.md).

Under `torchrun --nproc_per_node N train.py ...` every rank takes its contiguous slice of the
same global batch; DistributedDataParallel averages the gradients of the trainable parameters
(frozen ones get none, so nothing is sent for them). Rank 0 evaluates and writes, and broadcasts
its dev metrics so that every rank takes the same early-stopping decision. NCCL on GPUs, gloo on CPU.
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel


@dataclass
class Context:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier()

    def broadcast(self, obj):
        """rank 0's `obj` on every rank."""
        if self.world_size == 1:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list | None:
        """Every rank's `obj` in rank order, on rank 0 (None on the others)."""
        if self.world_size == 1:
            return [obj]
        box = [None] * self.world_size if self.is_main else None
        torch_dist.gather_object(obj, box, dst=0)
        return box

    def shard(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This rank's slice of a global batch (contiguous rows)."""
        if self.world_size == 1:
            return batch
        return {k: v.tensor_split(self.world_size)[self.rank] for k, v in batch.items()}

    def check_batches(self, n: int, batch_size: int) -> None:
        """Refuse batch sizes that would leave a rank an empty slice (its mean loss would be NaN)."""
        smallest = n % batch_size or batch_size  # the last batch of an epoch is the smallest
        if self.world_size > 1 and smallest < self.world_size:
            raise ValueError(f"a batch of {smallest} examples cannot be split over {self.world_size} processes "
                             f"(the last batch of an epoch holds K mod batch size = {n} mod {batch_size}): choose "
                             f"--batch-size so that every batch has at least {self.world_size} examples, "
                             f"or run fewer processes")

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around `model`. static_graph: every step uses the same parameters, so DDP can learn once
        which trainable ones get no gradient (the pooler under mean pooling) instead of failing."""
        if self.world_size == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, static_graph=True)


_context: Context | None = None


def context() -> Context:
    """The process group, started once from torchrun's environment variables (or a single process)."""
    global _context
    if _context is None:
        world_size = int(os.environ.get("WORLD_SIZE", 1))
        if world_size == 1:
            _context = Context()
        else:
            local_rank = int(os.environ["LOCAL_RANK"])
            use_cuda = torch.cuda.is_available()
            torch_dist.init_process_group("nccl" if use_cuda else "gloo")
            device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
            if use_cuda:
                torch.cuda.set_device(device)
            _context = Context(torch_dist.get_rank(), world_size, device)
    return _context


def shutdown() -> None:
    """End the process group, if one was started: a clean exit under torchrun (NCCL warns otherwise).

    The barrier first: rank 0 still writes results while the others are done, and a rank that
    tears its group down while another still holds connections to it can abort (gloo: SIGABRT,
    "terminate called without an active exception", seen once in CI)."""
    global _context
    if torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
    _context = None
