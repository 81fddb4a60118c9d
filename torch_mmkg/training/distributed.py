r"""Data-parallel training on :mod:`torch.distributed`: the pieces
:class:`~torch_mmkg.training.Trainer` uses when it runs under :obj:`torchrun`.

.. code-block:: bash

    torchrun --standalone --nproc_per_node=2 -m torch_mmkg train --config ... --out runs/x

Every rank draws the same global batch from the shared seed and trains on its own contiguous
shard of it (sizes differing by at most one); the loss of a shard is weighted by its share of
the batch, and the gradients are averaged across ranks before clipping and before every
optimiser step (one flattened all-reduce per step, by a pre-step hook on each optimiser), so
that the update equals the one process's update on the global batch up to the order of
floating-point sums, for every loss that is a mean over the batch. Validation and test rank
each rank's share of the queries and gather the ranks in the order one process would produce.
Only rank 0 writes the run directory. The backend is NCCL on GPUs and gloo on CPUs.

The gradients are averaged explicitly rather than by the
:class:`~torch.nn.parallel.DistributedDataParallel` wrapper because a training step reaches
the model through a regime (:meth:`~torch_mmkg.nn.KGEModel.score_batch`, not
:meth:`forward`) and through several optimisers (CoMAT's critic and generator, the auxiliary
CLUB step), each of which must see averaged gradients; DDP averages only gradients produced
under its own :meth:`forward`.
"""
import os
from typing import Any, Callable, List, Optional, Sequence, Tuple, TypeVar

import torch
from torch import Tensor

__all__ = ['world_size', 'rank', 'is_main', 'init_from_env', 'shutdown', 'main_first',
           'shard_bounds',
           'shard_batch',
           'average_gradients', 'sync_gradients_before_step', 'all_reduce_sum',
           'gather_ranking', 'broadcast_module']


def _dist():
    import torch.distributed as dist
    return dist if dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    r"""The number of processes of the initialised process group (1 without one)."""
    dist = _dist()
    return dist.get_world_size() if dist is not None else 1


def rank() -> int:
    r"""This process's rank: the process group's, else torchrun's :obj:`RANK` (after the group
    is destroyed), else 0."""
    dist = _dist()
    return dist.get_rank() if dist is not None else int(os.environ.get('RANK', '0'))


def is_main() -> bool:
    r"""Whether this process writes files and logs (rank 0)."""
    return rank() == 0


def init_from_env(device: str = 'auto') -> bool:
    r"""Initialises the default process group from :obj:`torchrun`'s environment
    (:obj:`WORLD_SIZE` > 1), with NCCL when the run trains on CUDA and gloo otherwise; returns
    whether training is distributed. Does nothing if a group exists or the run has one
    process."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get('WORLD_SIZE', '1')) <= 1:
        return False
    if not dist.is_available():  # pragma: no cover - builds without distributed
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = torch.cuda.is_available() and not str(device).startswith('cpu')
    if cuda:
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', '0')))
    dist.init_process_group('nccl' if cuda else 'gloo')
    return dist.get_world_size() > 1


def shutdown():
    r"""Waits for every rank and destroys the default process group (a process that exits
    with gloo's threads still running aborts)."""
    dist = _dist()
    if dist is None:
        return
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


T = TypeVar('T')


def main_first(fn: Callable[[], T], what: str = 'the step') -> T:
    r"""Calls :obj:`fn` on rank 0, then on the other ranks: what rank 0 writes (a dataset's
    processed cache, the encoded entity texts) is complete before another rank reads it, and is
    written once. Without a process group it just calls :obj:`fn`.

    If :obj:`fn` raises on rank 0, rank 0 re-raises it and the other ranks raise a
    :class:`RuntimeError` naming :obj:`what` and rank 0's error, instead of waiting on it.

    Args:
        fn (Callable): What to call, with no arguments.
        what (str, optional): What :obj:`fn` does, for the other ranks' error. (default:
            :obj:`"the step"`)
    """
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return fn()
    error: List[Optional[str]] = [None]
    out, raised = None, None
    if dist.get_rank() == 0:
        try:
            out = fn()
        except BaseException as e:  # every rank must reach the broadcast
            raised = e
            error[0] = f'{type(e).__name__}: {e}'
    dist.broadcast_object_list(error, 0)
    if raised is not None:
        raise raised
    if dist.get_rank() == 0:
        return out
    if error[0] is not None:
        raise RuntimeError(f"rank {dist.get_rank()}: rank 0 failed in {what} "
                           f"({error[0]}); see its message")
    return fn()


def shard_bounds(n: int, r: int, w: int) -> Tuple[int, int]:
    r"""The contiguous shard :obj:`[start, end)` of :obj:`n` items that rank :obj:`r` of
    :obj:`w` takes: sizes differ by at most one, the first :obj:`n mod w` ranks one larger (as
    :func:`numpy.array_split`)."""
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


def _slice(x: Any, start: int, end: int, size: int) -> Any:
    if isinstance(x, Tensor):
        return x[start:end] if x.dim() and x.size(0) == size else x
    if isinstance(x, tuple):  # a batch or a NamedTuple inside it (the negatives)
        items = [_slice(v, start, end, size) for v in x]
        return type(x)(*items) if hasattr(x, '_fields') else tuple(items)
    return x


def shard_batch(batch: Sequence[Any], r: int, w: int) -> Tuple[Any, int, int]:
    r"""This rank's shard of a batch: every tensor whose first dimension is the batch size is
    sliced, also inside the named tuples of the batch (its negatives), anything else kept;
    the batch keeps its type. Returns the shard, its size and the batch size."""
    size = int(batch[0].size(0))
    start, end = shard_bounds(size, r, w)
    return _slice(batch, start, end, size), end - start, size


def _grads(params: Sequence[Tensor]) -> List[Tensor]:
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


def average_gradients(params: Sequence[Tensor]):
    r"""Replaces the gradient of every parameter by its mean over the ranks (a missing
    gradient counts as zeros, so that every rank joins the same collective), with one
    all-reduce per device and dtype."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return
    params = [p for p in params if p.requires_grad]
    w = dist.get_world_size()
    groups = {}
    for p in params:
        groups.setdefault((p.device, p.dtype), []).append(p)
    for group in groups.values():
        grads = _grads(group)
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(w)
        offset = 0
        for p in group:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n


def sync_gradients_before_step(optimizer: torch.optim.Optimizer, state: dict):
    r"""Registers a pre-step hook on :obj:`optimizer` that averages its parameters' gradients
    over the ranks, unless :obj:`state['synced']` says they already are (the trainer averages
    before clipping); the flag is cleared after each step."""
    def hook(opt, args, kwargs):
        if not state.get('synced'):
            average_gradients([p for g in opt.param_groups for p in g['params']])
        state['synced'] = False
    return optimizer.register_step_pre_hook(hook)


def all_reduce_sum(value: float, device: torch.device) -> float:
    r"""The sum of :obj:`value` over the ranks (in float64)."""
    dist = _dist()
    if dist is None:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def broadcast_module(module: torch.nn.Module):
    r"""Copies rank 0's parameters and persistent buffers to every rank."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + [b for n, b in module.named_buffers()]:
            dist.broadcast(t.data, 0)


def gather_ranking(local, num_sides: int):
    r"""The :class:`~torch_mmkg.evaluation.RankingResult` of all queries from each rank's
    result on its contiguous shard, in the order one process evaluating every query would
    give (per side, the queries in input order)."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return local
    import dataclasses
    fields = ('head', 'rel', 'tail', 'side', 'optimistic', 'pessimistic')
    payload = {f: getattr(local, f).cpu() for f in fields}
    parts: List[Optional[dict]] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, payload)
    merged = {}
    for f in fields:
        blocks = [torch.tensor_split(p[f], num_sides) for p in parts]  # per rank, per side
        merged[f] = torch.cat([b[s] for s in range(num_sides) for b in blocks])
    seconds = all_reduce_max(local.seconds)
    return dataclasses.replace(local, seconds=seconds, **merged)


def all_reduce_max(value: float) -> float:
    r"""The largest :obj:`value` over the ranks."""
    dist = _dist()
    if dist is None:
        return value
    out: List[Optional[float]] = [None] * dist.get_world_size()
    dist.all_gather_object(out, float(value))
    return max(out)
