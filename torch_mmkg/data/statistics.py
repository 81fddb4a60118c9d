from typing import Tuple

import torch
from torch import Tensor


def relation_cardinality(head: Tensor, rel: Tensor, tail: Tensor,
                         num_relations: int) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Per relation :math:`r` over the distinct given triples: the number of triples
    :math:`n_r`, the mean number of distinct tails per head :math:`\mathrm{tph}_r =
    n_r / |\{h\}|` and of distinct heads per tail :math:`\mathrm{hpt}_r = n_r / |\{t\}|`
    (0 for relations without triples). These drive Bernoulli negative sampling and the
    1-1/1-N/N-1/N-N relation categories.

    Returns:
        :obj:`(count, tph, hpt)`, three :obj:`[R]` float64 tensors.
    """
    R = int(num_relations)
    h, r, t = torch.stack([head, rel, tail]).long().unique(dim=1)
    n = torch.bincount(r, minlength=R).double()
    heads = torch.bincount(torch.stack([h, r]).unique(dim=1)[1], minlength=R).double()
    tails = torch.bincount(torch.stack([t, r]).unique(dim=1)[1], minlength=R).double()
    return n, n / heads.clamp_min(1), n / tails.clamp_min(1)
