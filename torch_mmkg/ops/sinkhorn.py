r"""Entropic optimal transport by Sinkhorn iterations in the log domain."""
import math
from typing import Optional

import torch
from torch import Tensor

__all__ = ['sinkhorn']


def sinkhorn(cost: Tensor, a: Optional[Tensor] = None, b: Optional[Tensor] = None,
             epsilon: float = 0.1, max_iter: int = 1000, tol: float = 1e-9,
             check_every: int = 10) -> Tensor:
    r"""The entropic optimal transport plans between the distributions :obj:`a` (over the
    rows) and :obj:`b` (over the columns) for the cost matrices :obj:`cost`,

    .. math::
        \mathbf{P} = \operatorname*{arg\,min}_{\mathbf{P} \mathbf{1} = \mathbf{a},\
        \mathbf{P}^{\top} \mathbf{1} = \mathbf{b}} \langle \mathbf{P}, \mathbf{C} \rangle -
        \epsilon H(\mathbf{P}), \qquad
        \mathbf{P} = \mathrm{diag}(\mathbf{u})\, \mathbf{K}\, \mathrm{diag}(\mathbf{v}),
        \quad \mathbf{K} = e^{-\mathbf{C}/\epsilon},

    by Sinkhorn's alternating scalings :math:`\mathbf{u} \leftarrow \mathbf{a} / \mathbf{K}
    \mathbf{v}`, :math:`\mathbf{v} \leftarrow \mathbf{b} / \mathbf{K}^{\top} \mathbf{u}`,
    computed on the potentials :math:`\log \mathbf{u}, \log \mathbf{v}` with
    :func:`torch.logsumexp`, so that a small :math:`\epsilon` (a kernel :math:`e^{-C /
    \epsilon}` that underflows in floating point) still converges. The column scaling
    starts uniform, :math:`\mathbf{v} = \mathbf{1}/m`; each iteration scales the rows, then
    the columns (the columns' marginals are then exact), and every :obj:`check_every`
    iterations the iteration stops once the squared error of the row marginals,
    :math:`\|\mathbf{P}\mathbf{1} - \mathbf{a}\|_2^2`, is at most :obj:`tol` for every
    matrix of the batch (the stopping rule of POT's and OTKGE's ``sinkhorn_knopp``).

    Args:
        cost (torch.Tensor): Costs :math:`[*, n, m]` (a batch of matrices).
        a (torch.Tensor, optional): Row marginals :math:`[*, n]` or :math:`[n]`, positive,
            summing to one. (default: uniform)
        b (torch.Tensor, optional): Column marginals :math:`[*, m]` or :math:`[m]`.
            (default: uniform)
        epsilon (float, optional): The entropic regularisation :math:`\epsilon > 0`.
            (default: :obj:`0.1`)
        max_iter (int, optional): At most this many iterations. (default: :obj:`1000`)
        tol (float, optional): The stopping tolerance (:obj:`0` runs :obj:`max_iter`).
            (default: :obj:`1e-9`)
        check_every (int, optional): Check the tolerance every so many iterations.
            (default: :obj:`10`)

    Returns:
        The plans :math:`[*, n, m]`, in the dtype of :obj:`cost`.
    """
    if cost.dim() < 2:
        raise ValueError(f"sinkhorn: cost must be [*, n, m], got {tuple(cost.shape)}")
    if not (isinstance(epsilon, (int, float)) and epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"sinkhorn: epsilon must be a positive finite number, got {epsilon!r}")
    if int(max_iter) < 1 or int(check_every) < 1:
        raise ValueError(f"sinkhorn: max_iter and check_every must be positive, got "
                         f"{max_iter!r} and {check_every!r}")
    n, m = cost.shape[-2:]
    log_k = -cost / epsilon
    log_a = (torch.full((n, ), -math.log(n), dtype=cost.dtype, device=cost.device)
             if a is None else _log_marginal(a, 'a', n, cost))
    log_b = (torch.full((m, ), -math.log(m), dtype=cost.dtype, device=cost.device)
             if b is None else _log_marginal(b, 'b', m, cost))
    log_v = log_b.new_full(cost.shape[:-2] + (m, ), -math.log(m))
    log_u = log_a.expand(cost.shape[:-1]).clone()
    for it in range(1, int(max_iter) + 1):
        log_u = log_a - torch.logsumexp(log_k + log_v.unsqueeze(-2), dim=-1)
        log_v = log_b - torch.logsumexp(log_k + log_u.unsqueeze(-1), dim=-2)
        if tol > 0 and it % check_every == 0:
            rows = torch.logsumexp(log_k + log_u.unsqueeze(-1) + log_v.unsqueeze(-2), dim=-1)
            err = (rows.exp() - log_a.exp()).pow(2).sum(dim=-1)
            if bool((err <= tol).all()):
                break
    return torch.exp(log_u.unsqueeze(-1) + log_k + log_v.unsqueeze(-2))


def _log_marginal(x: Tensor, name: str, size: int, cost: Tensor) -> Tensor:
    if x.size(-1) != size or bool((x <= 0).any()):
        raise ValueError(f"sinkhorn: {name} must be positive with last dimension {size}, got "
                         f"{tuple(x.shape)}")
    return x.to(cost.dtype).log()
