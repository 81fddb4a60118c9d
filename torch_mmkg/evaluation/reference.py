r"""Reference rows of every results table: rank the candidates of a query by how often they
are an answer in the training triples, globally or for the query's relation. A model that does
not beat them has learnt less than the answer frequencies."""
from typing import Optional

import torch
from torch import Tensor

from torch_mmkg.data.indices import IndexSpec, check_indices

__all__ = ['AnswerFrequency']


class AnswerFrequency(torch.nn.Module):
    r"""Scores a candidate by its answer frequency in the training triples: for a tail query
    :math:`(h, r, ?)`,

    .. math::
        s(e) = |\{(h', r, e) \in \mathcal{T}\}| \quad \text{(per relation)}, \qquad
        s(e) = |\{(h', r', e) \in \mathcal{T}\}| \quad \text{(global)},

    and likewise with heads for a head query :math:`(?, r, t)`. It has no parameters and
    ignores the query entity: the many ties it produces are what the realistic rank (the mean
    of the optimistic and pessimistic ranks) is for. It scores through the
    :class:`~torch_mmkg.evaluation.RankingEvaluator` like any model.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations :math:`R`.
        head_index (torch.Tensor): The training heads :math:`[T]`.
        rel_type (torch.Tensor): The training relations :math:`[T]`.
        tail_index (torch.Tensor): The training tails :math:`[T]`.
        per_relation (bool, optional): Count answers of the query's relation (else of every
            relation). (default: :obj:`True`)
    """
    def __init__(self, num_nodes: int, num_relations: int, head_index: Tensor,
                 rel_type: Tensor, tail_index: Tensor, per_relation: bool = True):
        super().__init__()
        N, R = int(num_nodes), int(num_relations)
        h, r, t = check_indices('AnswerFrequency', IndexSpec('head_index', head_index, N),
                                IndexSpec('rel_type', rel_type, R, 'relation'),
                                IndexSpec('tail_index', tail_index, N))
        self.num_nodes, self.num_relations = N, R
        self.per_relation = bool(per_relation)
        rows = R if per_relation else 1
        key = r if per_relation else torch.zeros_like(r)
        tails = torch.zeros(rows * N).index_add_(0, key * N + t, torch.ones(t.numel()))
        heads = torch.zeros(rows * N).index_add_(0, key * N + h, torch.ones(h.numel()))
        self.register_buffer('tail_counts', tails.view(rows, N))
        self.register_buffer('head_counts', heads.view(rows, N))

    @classmethod
    def from_data(cls, data, per_relation: bool = True) -> 'AnswerFrequency':
        r"""The baseline of a :mod:`torch_mmkg` graph's training split."""
        from torch_mmkg.data.mmkg import ENTITY, get_triples
        return cls(data[ENTITY].num_nodes, data.num_relations, *get_triples(data, 'train'),
                   per_relation=per_relation)

    def prepare_scoring(self) -> None:
        return None

    def _rows(self, counts: Tensor, rel_type: Tensor) -> Tensor:
        if self.per_relation:
            return counts.index_select(0, rel_type.long())
        return counts.expand(rel_type.numel(), -1)

    def score_tails(self, head_index: Tensor, rel_type: Tensor,
                    cache: Optional[object] = None) -> Tensor:
        r"""The :obj:`[B, N]` scores of every entity as the tail of :math:`(h_b, r_b, ?)`."""
        return self._rows(self.tail_counts, rel_type)

    def score_heads(self, rel_type: Tensor, tail_index: Tensor,
                    cache: Optional[object] = None) -> Tensor:
        r"""The :obj:`[B, N]` scores of every entity as the head of :math:`(?, r_b, t_b)`."""
        return self._rows(self.head_counts, rel_type)

    def extra_repr(self) -> str:
        return (f'{self.num_nodes}, num_relations={self.num_relations}, '
                f'per_relation={self.per_relation}')
