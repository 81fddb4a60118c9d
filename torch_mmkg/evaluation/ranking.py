from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_mmkg.ops import rank_counts

RANK_TYPES = ('realistic', 'optimistic', 'pessimistic')


def filtered_ranks(scores: Tensor, target: Tensor, filter_query: Optional[Tensor] = None,
                   filter_entity: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    r"""Optimistic and pessimistic 1-based ranks of the target entities among the candidates.

    For query :math:`b` with target :math:`y_b` and filtered set :math:`F_b` (other known
    answers; the target itself may be listed and is kept),

    .. math::
        \mathrm{rank}^{\mathrm{opt}}_b = 1 + |\{e \notin F_b \cup \{y_b\} : s_{be} >
        s_{b y_b}\}|, \qquad
        \mathrm{rank}^{\mathrm{pess}}_b = 1 + |\{e \notin F_b \cup \{y_b\} : s_{be} \ge
        s_{b y_b}\}|,

    and the realistic rank (the expected rank under random tie-breaking) is their mean.
    Filtered pairs are given as parallel index tensors (:obj:`filter_query[k]`,
    :obj:`filter_entity[k]`; repeats are ignored), so the filter costs its own size, never a
    dense batch × all-triples comparison: the counts over all entities come from one pass over
    the score matrix (:func:`~torch_mmkg.ops.rank_counts`) and the filtered entities'
    contributions are subtracted. NaN scores raise a :class:`ValueError`.

    Shapes:
        - **input:** :obj:`scores` :math:`[B, N]`, :obj:`target` :math:`[B]`
        - **output:** two :math:`[B]` long tensors
    """
    if scores.dim() != 2 or target.shape != scores.shape[:1]:
        raise ValueError(f"expected scores [B, N] and target [B], got {tuple(scores.shape)} "
                         f"and {tuple(target.shape)}")
    B = scores.size(0)
    true = scores[torch.arange(B, device=scores.device), target]
    # One pass over all entities counts the better and the tied-or-better ones ...
    greater, greater_equal, nans = rank_counts(scores, true)
    if bool((nans > 0).any()):
        b = int((nans > 0).nonzero()[0, 0])
        raise ValueError(f"the model returned NaN scores (first in query {b} of the batch)")
    greater_equal = greater_equal - 1  # the target itself
    # ... and the filtered entities (other than the target) are taken out again, at the cost
    # of the filter's size.
    if filter_query is not None and filter_query.numel():
        N = scores.size(1)
        key = torch.unique(filter_query.long() * N + filter_entity.long())  # drop repeats
        fq, fe = key.div(N, rounding_mode='floor'), key % N
        keep = fe != target[fq]
        fq, fe = fq[keep], fe[keep]
        fs, ft = scores[fq, fe], true[fq]
        greater = greater - torch.bincount(fq, weights=(fs > ft).double(),
                                           minlength=B).long()
        greater_equal = greater_equal - torch.bincount(fq, weights=(fs >= ft).double(),
                                                       minlength=B).long()
    return 1 + greater, 1 + greater_equal


def realistic(optimistic: Tensor, pessimistic: Tensor) -> Tensor:
    r"""The realistic rank :math:`(\mathrm{rank}^{\mathrm{opt}} +
    \mathrm{rank}^{\mathrm{pess}}) / 2`."""
    return 0.5 * (optimistic.double() + pessimistic.double())


def rank_metrics(ranks: Tensor, ks: Sequence[int] = (1, 3, 10)) -> Dict[str, float]:
    r"""Mean rank (1-based), mean reciprocal rank and Hits@k of 1-based ranks.

    .. math::
        \mathrm{MR} = \frac{1}{Q}\sum_q \mathrm{rank}_q, \qquad
        \mathrm{MRR} = \frac{1}{Q}\sum_q \frac{1}{\mathrm{rank}_q}, \qquad
        \mathrm{Hits@}k = \frac{1}{Q}\sum_q [\mathrm{rank}_q \le k].
    """
    ranks = ranks.double()
    out = {'count': int(ranks.numel())}
    if ranks.numel() == 0:
        out.update({'mr': float('nan'), 'mrr': float('nan')})
        out.update({f'hits@{k}': float('nan') for k in ks})
        return out
    out['mr'] = float(ranks.mean())
    out['mrr'] = float((1.0 / ranks).mean())
    for k in ks:
        out[f'hits@{k}'] = float((ranks <= k).double().mean())
    return out
