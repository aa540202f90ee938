"""Where a training process runs: single CPU process, or one rank of a ``torchrun`` job.

``torchrun --nproc_per_node=N`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_*``; this
module reads them (no launcher of our own), joins the process group (NCCL on CUDA, gloo on CPU) and
hands the stages one :class:`Runtime` that answers "which device", "am I rank 0" and "how do I
average a number across ranks". Mixed precision (bf16, else fp16 with a gradient scaler) is used on
CUDA only; CPU training stays float32.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from engine.errors import UserError

__all__ = ["Runtime", "init_runtime", "runtime_session"]


@dataclass(frozen=True)
class Runtime:
    """One process's place in the job.

    Attributes:
        rank: global rank, 0 for a single process.
        world_size: number of processes (1 without torchrun).
        device: the torch device this rank computes on.
        amp_dtype: autocast dtype on CUDA (``torch.bfloat16`` / ``torch.float16``), ``None`` = float32.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    amp_dtype: torch.dtype | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and artefacts; the others only compute."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """``DistributedDataParallel`` around ``model`` when distributed, else ``model`` itself."""
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for forward passes (a no-op in float32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaler: active only for fp16 (bf16 and float32 need none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Average of ``values`` (any shape, float) over ranks; identity for a single process."""
        if not self.distributed:
            return values
        out = values.detach().to(self.device, torch.float64).clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return (out / self.world_size).to(values.dtype).cpu()

    def any_of(self, flags: list[bool]) -> list[bool]:
        """Each flag OR-ed over ranks, so every rank takes the same decision at the same step."""
        if not self.distributed:
            return list(flags)
        t = torch.tensor([1.0 if f else 0.0 for f in flags], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v > 0) for v in t.tolist()]

    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()


def init_runtime(device: str = "auto", amp: str = "auto") -> Runtime:
    """Read the torchrun environment, join the process group and pick device and precision.

    Args:
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda"``.
        amp: ``"auto"`` (bf16 if the GPU supports it, else fp16; float32 on CPU), ``"bf16"``,
            ``"fp16"`` or ``"off"``.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, got {device!r}")
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise UserError(f"amp must be auto, bf16, fp16 or off, got {amp!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    amp_dtype = None
    if use_cuda and amp != "off":
        if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
            amp_dtype = torch.bfloat16
        else:
            amp_dtype = torch.float16
    return Runtime(rank=rank, world_size=world, device=dev, amp_dtype=amp_dtype)


@contextlib.contextmanager
def runtime_session(device: str = "auto", amp: str = "auto") -> Iterator[Runtime]:
    """:func:`init_runtime`, and leave the process group on the way out."""
    rt = init_runtime(device, amp)
    try:
        yield rt
    finally:
        if rt.distributed and dist.is_initialized():
            dist.destroy_process_group()
