from typing import List

from torch import Tensor

from torch_mmkg.data.statistics import relation_cardinality

#: Relation category names, indexed by the ids :func:`relation_categories` returns.
CATEGORIES: List[str] = ['1-1', '1-N', 'N-1', 'N-N']


def relation_categories(head: Tensor, rel: Tensor, tail: Tensor, num_relations: int,
                        threshold: float = 1.5) -> Tensor:
    r"""Classifies relations as 1-1, 1-N, N-1 or N-N, following the `"Translating Embeddings
    for Modeling Multi-relational Data" <https://proceedings.neurips.cc/paper/2013/file/
    1cecc7a77928ca8133fa24680a88d2f9-Paper.pdf>`_ paper (and OpenKE's :obj:`n-n.py`, whose
    output files ship with the WildKGC benchmarks).

    For relation :math:`r` over the given triples (OpenKE uses train + valid + test), let
    :math:`\mathrm{tph}_r` be the mean number of distinct tails per head and
    :math:`\mathrm{hpt}_r` the mean number of distinct heads per tail. Then :math:`r` is
    *1* on the head side iff :math:`\mathrm{hpt}_r < \tau` and *1* on the tail side iff
    :math:`\mathrm{tph}_r < \tau`:

    .. math::
        \text{1-1}: \mathrm{hpt} < \tau, \mathrm{tph} < \tau;\quad
        \text{1-N}: \mathrm{hpt} < \tau \le \mathrm{tph};\quad
        \text{N-1}: \mathrm{tph} < \tau \le \mathrm{hpt};\quad
        \text{N-N}: \text{otherwise}.

    Args:
        head, rel, tail (torch.Tensor): The triples.
        num_relations (int): Number of relations :math:`R`.
        threshold (float, optional): :math:`\tau`. (default: :obj:`1.5`)

    Returns:
        A :obj:`[R]` long tensor of ids into :data:`CATEGORIES` (relations without triples
        are 1-1).
    """
    _, tph, hpt = relation_cardinality(head, rel, tail, num_relations)
    many_tails = tph >= threshold
    many_heads = hpt >= threshold
    return (many_tails.long() + 2 * many_heads.long()).to(rel.device)
