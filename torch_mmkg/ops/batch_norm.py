r"""Batch normalisation over the global batch of every rank of a :mod:`torch.distributed`
process group, on any device and backend (gloo included)."""
from typing import Optional

import torch
from torch import Tensor

__all__ = ['global_batch_norm']


class _AllReduceSum(torch.autograd.Function):
    r"""The sum over the ranks, differentiable: the gradient of every rank's input is the sum
    of the ranks' output gradients (each rank's loss depends on every rank's input)."""
    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        import torch.distributed as dist
        ctx.group = group
        x = x.clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor):
        import torch.distributed as dist
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def _world(group) -> int:
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def _by_running_stats(x: Tensor, bn) -> Tensor:
    return torch.nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight,
                                          bn.bias, training=False, eps=bn.eps)


def global_batch_norm(x: Tensor, bn: torch.nn.modules.batchnorm._BatchNorm,
                      group: Optional[object] = None) -> Tensor:
    r"""Applies :obj:`bn` to the rows :obj:`x` (:obj:`[n, C]`) as a
    :class:`~torch.nn.BatchNorm1d` over the concatenation of every rank's rows would: in
    training mode under an initialised process group of more than one rank, the batch mean
    and variance are those of all ranks' rows (two differentiable all-reduces: the sums and
    count, then the squared deviations from the global mean), and the running statistics are
    updated with them (the unbiased variance over the global count); otherwise it is
    :obj:`bn(x)`. A batch of a single row (over all ranks) has no batch statistics: it is
    normalised by the running statistics, as at evaluation, and they are left unchanged.

    .. math::
        \mu = \frac{1}{N} \sum_{r} \sum_{i} x_{r,i}, \quad
        \sigma^2 = \frac{1}{N} \sum_{r} \sum_{i} (x_{r,i} - \mu)^2, \quad
        y = \gamma \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta

    Unlike :class:`torch.nn.SyncBatchNorm` (CUDA only) it runs on CPU with gloo, so that
    2 CPU processes reproduce one process's training exactly up to the order of sums. Every
    rank must call it the same number of times (it is a collective); a rank may hold no rows.

    Args:
        x (torch.Tensor): The rows :obj:`[n, C]`.
        bn (torch.nn.modules.batchnorm._BatchNorm): The batch norm whose affine parameters,
            running statistics and momentum are used.
        group (optional): The process group. (default: :obj:`None`, the world)

    Shapes:
        - **input:** :obj:`[n, C]`
        - **output:** :obj:`[n, C]`
    """
    if not bn.training:
        return bn(x)
    if _world(group) <= 1:
        return bn(x) if x.size(0) != 1 else _by_running_stats(x, bn)
    import torch.distributed as dist
    group = group if group is not None else dist.group.WORLD
    channels = x.size(-1)
    count = torch.full((1, ), float(x.size(0)), dtype=x.dtype, device=x.device)
    sums = _AllReduceSum.apply(torch.cat([x.sum(0), count]), group)
    total = int(round(float(sums[-1].detach())))
    if total <= 1:
        return _by_running_stats(x, bn)
    mean = sums[:channels] / total
    var = _AllReduceSum.apply(((x - mean)**2).sum(0), group) / total
    if bn.track_running_stats and bn.running_mean is not None:
        bn.num_batches_tracked.add_(1)
        factor = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None
                  else bn.momentum)
        with torch.no_grad():
            bn.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
            bn.running_var.mul_(1 - factor).add_(var.detach() * total / (total - 1),
                                                 alpha=factor)
    y = (x - mean) * torch.rsqrt(var + bn.eps)
    if bn.affine:
        y = y * bn.weight + bn.bias
    return y
