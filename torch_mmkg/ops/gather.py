r"""Gather-and-score kernels for the :math:`[B, K]` candidate scoring of RotatE negatives.

Negative-sampling training scores each query against its own :math:`K` candidates. Read
naively, the candidates are first gathered into a :math:`[B, K, 2d]` copy (or
:math:`[B, K, S, 2d]` for stacked representations), whose backward pass scatters a gradient
of the same size. When compiled, the kernels here read the candidates straight from the
embedding table and have hand-written backward passes that write the candidates' gradient
once, for one :func:`~torch.Tensor.index_add_` into the table's gradient.
"""
from typing import Callable, Tuple

import torch
from torch import Tensor

from .compile import AUTO_COMPILE_TRAIN_ELEMENTS, _want_compile, fused
from .pairwise import TINY

__all__ = ['gather_modulus_sum', 'weighted_gather_modulus_sum']


def _fused(name: str, eager: Callable) -> Callable:
    return fused(name, eager)


def _candidate_modulus_sum(q_re: Tensor, q_im: Tensor, c: Tensor) -> Tensor:
    # sum_j |q_bj - c_bkj| for per-query candidates c [B, K, 2d] (real, then imaginary parts)
    d = q_re.size(-1)
    return torch.sqrt(((q_re[:, None] - c[..., :d])**2 +
                       (q_im[:, None] - c[..., d:])**2).clamp_min(TINY)).sum(-1)


def _candidate_modulus_grad(g: Tensor, q_re: Tensor, q_im: Tensor, c: Tensor) -> Tensor:
    # d/dc |q - c| = -(q - c) / |q - c| (0 where q = c); returned as +g (q - c) / |q - c|.
    d = q_re.size(-1)
    dr, di = q_re[:, None] - c[..., :d], q_im[:, None] - c[..., d:]
    m = torch.sqrt(dr * dr + di * di)
    w = torch.where(m > 0, g[..., None] / m, torch.zeros_like(m))
    return torch.cat([w * dr, w * di], dim=-1)


def _gather_modulus_sum(q_re: Tensor, q_im: Tensor, table: Tensor, index: Tensor) -> Tensor:
    return _candidate_modulus_sum(q_re, q_im, table[index])


def _gather_modulus_sum_grad(g: Tensor, q_re: Tensor, q_im: Tensor, table: Tensor,
                             index: Tensor) -> Tensor:
    return _candidate_modulus_grad(g, q_re, q_im, table[index])


class _GatherModulusSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q_re, q_im, table, index):
        ctx.save_for_backward(q_re, q_im, table, index)
        return _fused('gather_fwd', _gather_modulus_sum)(q_re, q_im, table, index)

    @staticmethod
    def backward(ctx, g):
        q_re, q_im, table, index = ctx.saved_tensors
        grad_c = _fused('gather_bwd', _gather_modulus_sum_grad)(g.contiguous(), q_re, q_im,
                                                                table, index)
        grad_q = grad_c.sum(dim=1)
        d = q_re.size(-1)
        grad_table = torch.zeros_like(table).index_add_(
            0, index.reshape(-1), grad_c.reshape(-1, table.size(-1)), alpha=-1.0)
        return grad_q[:, :d], grad_q[:, d:], grad_table, None


def gather_modulus_sum(q_re: Tensor, q_im: Tensor, table: Tensor, index: Tensor) -> Tensor:
    r"""Sums of complex moduli between each query and its own candidates,

    .. math::
        \mathbf{D}_{b k} = \sum_{j=1}^{d} |q_{b j} - e_{\mathrm{index}[b, k],\, j}|,

    reading the candidates straight from :obj:`table` (real parts, then imaginary parts):
    when compiled, the forward pass never materialises the :math:`[B, K, 2d]` candidates and
    the backward pass writes them once, for one :func:`~torch.Tensor.index_add_` into the
    table's gradient. Differentiable in :obj:`q_re`, :obj:`q_im` and :obj:`table`.

    Args:
        q_re (Tensor): The queries' real parts.
        q_im (Tensor): The queries' imaginary parts.
        table (Tensor): The entity table, real parts then imaginary parts.
        index (Tensor): The candidates of each query (rows of :obj:`table`).

    Shapes:
        - **input:** :obj:`q_re`, :obj:`q_im` :math:`[B, d]`, :obj:`table` :math:`[N, 2d]`,
          :obj:`index` :math:`[B, K]`
        - **output:** :math:`[B, K]`
    """
    if _want_compile(q_re, index.numel() * q_re.size(-1), AUTO_COMPILE_TRAIN_ELEMENTS):
        return _GatherModulusSum.apply(q_re, q_im, table, index)
    return _gather_modulus_sum(q_re, q_im, table, index)


def _weighted_gather(stack: Tensor, w: Tensor, index: Tensor) -> Tensor:
    c = w[..., 0, None] * stack[:, 0][index]
    for s in range(1, stack.size(1)):
        c = c + w[..., s, None] * stack[:, s][index]
    return c


def _weighted_gather_modulus_sum(q_re: Tensor, q_im: Tensor, stack: Tensor, w: Tensor,
                                 index: Tensor) -> Tensor:
    return _candidate_modulus_sum(q_re, q_im, _weighted_gather(stack, w, index))


def _weighted_gather_grad(g: Tensor, q_re: Tensor, q_im: Tensor, stack: Tensor, w: Tensor,
                          index: Tensor) -> Tuple[Tensor, Tensor]:
    # the candidates' gradient (as in _candidate_modulus_grad) and the weights' gradient
    # -<grad_c, stack[index, s]> per slot
    grad_c = _candidate_modulus_grad(g, q_re, q_im, _weighted_gather(stack, w, index))
    grad_w = torch.stack([-(grad_c * stack[:, s][index]).sum(-1)
                          for s in range(stack.size(1))], dim=-1)
    return grad_c, grad_w


class _WeightedGatherModulusSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q_re, q_im, stack, w, index):
        ctx.save_for_backward(q_re, q_im, stack, w, index)
        return _fused('wgather_fwd', _weighted_gather_modulus_sum)(q_re, q_im, stack, w, index)

    @staticmethod
    def backward(ctx, g):
        q_re, q_im, stack, w, index = ctx.saved_tensors
        grad_c, grad_w = _fused('wgather_bwd', _weighted_gather_grad)(
            g.contiguous(), q_re, q_im, stack, w, index)
        grad_q = grad_c.sum(dim=1)
        d = q_re.size(-1)
        grad_stack = None
        if ctx.needs_input_grad[2]:
            grad_stack = torch.zeros_like(stack)
            flat, gc = index.reshape(-1), grad_c.reshape(-1, stack.size(-1))
            for s in range(stack.size(1)):  # one index_add_ per slot, no [B, K, S, 2d]
                grad_stack[:, s].index_add_(0, flat, gc * w[..., s].reshape(-1, 1),
                                            alpha=-1.0)
        return grad_q[:, :d], grad_q[:, d:], grad_stack, grad_w, None


def weighted_gather_modulus_sum(q_re: Tensor, q_im: Tensor, stack: Tensor, w: Tensor,
                                index: Tensor) -> Tensor:
    r"""Sums of complex moduli between each query and its own candidates, each candidate a
    weighted sum of its stacked representations (a fusion whose weights depend on the query,
    such as NATIVE's relation-guided one),

    .. math::
        \mathbf{D}_{b k} = \sum_{j=1}^{d} \Big|q_{b j} - \sum_{s} w_{b k s}\,
        \mathbf{S}_{\mathrm{index}[b, k],\, s,\, j}\Big|.

    When compiled, neither pass materialises the :math:`[B, K, S, 2d]` gathered stacks; the
    backward pass writes the candidates' gradient once and adds it into the stack's gradient
    with one :func:`~torch.Tensor.index_add_` per slot. Differentiable in :obj:`q_re`,
    :obj:`q_im`, :obj:`stack` and :obj:`w`.

    Args:
        q_re (Tensor): The queries' real parts.
        q_im (Tensor): The queries' imaginary parts.
        stack (Tensor): The stacked representations of every entity, real parts then
            imaginary parts.
        w (Tensor): The weight of each slot of each candidate.
        index (Tensor): The candidates of each query (rows of :obj:`stack`).

    Shapes:
        - **input:** :obj:`q_re`, :obj:`q_im` :math:`[B, d]`, :obj:`stack`
          :math:`[N, S, 2d]`, :obj:`w` :math:`[B, K, S]`, :obj:`index` :math:`[B, K]`
        - **output:** :math:`[B, K]`
    """
    work = index.numel() * stack.size(1) * q_re.size(-1)
    if _want_compile(q_re, work, AUTO_COMPILE_TRAIN_ELEMENTS):
        return _WeightedGatherModulusSum.apply(q_re, q_im, stack, w, index)
    return _weighted_gather_modulus_sum(q_re, q_im, stack, w, index)
