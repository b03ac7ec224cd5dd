"""One process or many: ``torch.distributed`` under ``torchrun``, and a gather that carries gradients.

Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) :func:`init_distributed` joins the
process group: NCCL with one GPU per process (``cuda:LOCAL_RANK``), gloo on the CPU. Without
it, the run is a single process and every collective below is the identity.

**Global negatives and the gradient.** Each process embeds its own ``n`` rows; the
contrastive term is computed on the ``N * n`` rows of all processes. :func:`all_gather_with_grad`
gathers them and, in the backward pass, *sums* the gradients that all processes computed for
each process's rows, returning that process's slice. Every process evaluates the same global
contrastive loss ``C``, so process ``r`` receives ``N * dC/dz_r`` for its rows ``z_r``; DDP then
averages the parameter gradients over the ``N`` processes:

    (1/N) * sum_r [ (1 - lam) dCE_r/dtheta + lam * N * dC/dz_r dz_r/dtheta ]
        = (1 - lam) d(mean_r CE_r)/dtheta + lam * dC/dtheta,

which is the gradient of ``(1 - lam) CE + lam C`` over the global batch, as one process with
batch ``N * n`` computes it (the mean of equal-sized local CE means is the global CE mean).
``torch.distributed.all_gather`` alone would return no gradient to the other processes' rows;
returning only the local slice without the sum would scale the contrastive gradient by ``1/N``.
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist

from fewshot._device import resolve_device
from fewshot._validate import check_int

__all__ = [
    "DistContext",
    "init_distributed",
    "shutdown",
    "all_gather_with_grad",
    "all_gather",
    "all_gather_varlen",
    "all_reduce_sum",
    "broadcast_flag",
    "barrier",
    "available_cores",
    "default_num_workers",
]


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def _pick_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    if device is None:
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    dev = resolve_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device: str | torch.device | None = None) -> DistContext:
    """Join the ``torchrun`` process group when there is one; otherwise a single process.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; None picks CUDA when available. With
            several processes, ``"cuda"`` (or None) means ``cuda:LOCAL_RANK``.

    Returns:
        The :class:`DistContext`. When this call created the process group,
        ``owns_group`` is True and :func:`shutdown` destroys it.

    Raises:
        ValueError: a CUDA device without CUDA, or malformed torchrun variables.
    """
    world = _env_int("WORLD_SIZE", 1)
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", rank)
        local_world = _env_int("LOCAL_WORLD_SIZE", world)
        dev = _pick_device(device, local_rank)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistContext(rank, world, local_rank, local_world, dev, owns_group=False)
    if world <= 1:
        return DistContext(device=_pick_device(device, 0))
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    dev = _pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl", device_id=dev)
    else:
        dist.init_process_group(backend="gloo")
    return DistContext(rank, world, local_rank, local_world, dev, owns_group=True)


def available_cores() -> int:
    """The CPU cores this process may run on: ``len(os.sched_getaffinity(0))`` (a container's or
    ``taskset``'s limit), or ``os.cpu_count()`` where the platform has no affinity call."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_num_workers(local_world_size: int = 1) -> int:
    """``DataLoader`` workers per process when none are given: the available cores
    (:func:`available_cores`) divided among the ``local_world_size`` processes of this node,
    less one for the process itself, at least 0. 16 cores, 8 processes: 1 worker each; 2
    cores, 1 process: 1 worker. The same rule on the CPU and on CUDA.

    Raises:
        ValueError: ``local_world_size < 1``.
    """
    return max(0, available_cores() // check_int("local_world_size", local_world_size) - 1)


def shutdown(ctx: DistContext) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: all rows of all processes, in rank order. Backward: the sum over processes of
    the gradient of this process's rows (all-reduce, then this process's slice)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``(n, ...)`` rows of every process → ``(N * n, ...)`` in rank order, differentiable.

    Every process must pass the same shape. The backward pass returns to each process the
    sum of all processes' gradients for its rows (see the module docstring for why that is
    right under DDP). A single process gets ``x`` back.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _AllGatherWithGrad.apply(x)


def all_gather(x: torch.Tensor) -> torch.Tensor:
    """``(n, ...)`` of every process → ``(N * n, ...)`` in rank order, without gradient."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts)


def all_gather_varlen(x: torch.Tensor) -> torch.Tensor:
    """Like :func:`all_gather` for row counts that differ between processes (padded and cut)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    rows = torch.tensor([x.shape[0]], device=x.device, dtype=torch.int64)
    counts = all_gather(rows).tolist()
    top = max(counts)
    padded = x.new_zeros((top, *x.shape[1:]))
    padded[: x.shape[0]] = x
    gathered = all_gather(padded)
    return torch.cat([gathered[r * top : r * top + c] for r, c in enumerate(counts)])


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``x`` over processes (in place, and returned)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], device=device, dtype=torch.int64)
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier() -> None:
    """Wait for every process (no-op for one)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
