from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .base import Interaction
from .multiview import MultiViewInteraction, _view

__all__ = ['WeightedMultiViewInteraction']


def _check_reduce(reduce: str) -> str:
    if reduce not in ('sum', 'mean'):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    return reduce


class WeightedMultiViewInteraction(MultiViewInteraction):
    r"""A weighted sum (or mean) of scores of a base interaction over combinations of an
    entity's views *and* of a relation's views: for heads and tails given as stacks of
    :math:`V` views :math:`[*, V, D]` and relations as :math:`U` views concatenated,
    :math:`[*, U D_r]`,

    .. math::
        f(\mathbf{H}, \mathbf{R}, \mathbf{T}) = \sum_{k} w_k\, f_{\mathrm{base}}\Big(
        \sum_v a_{kv} \mathbf{H}_v,\ \sum_u c_{ku} \mathbf{R}_u,\
        \sum_v b_{kv} \mathbf{T}_v\Big),

    with :math:`w_k / \sum_j w_j` in place of :math:`w_k` for :obj:`reduce="mean"`. QEB's ten
    TransE terms over the head and tail types :math:`\{s, m, s + m\}` and the relations
    :math:`\{\mathbf{r}, \mathbf{r}_m\}` (:math:`U = 2`), averaged in the zjukg
    re-implementation, are such a sum; a constant :math:`\gamma` (as in :math:`\gamma - E`)
    is the base interaction's margin under :obj:`reduce="mean"`, since
    :math:`\sum_k w_k (\gamma - E_k) = \gamma - \sum_k w_k E_k` for weights summing to one.

    :obj:`eval_terms` names the terms the interaction scores in evaluation mode
    (:meth:`torch.nn.Module.eval`), all of them in training mode: IKRL's original code trains
    on four energies but ranks with the image–image one only. The term weights of the
    selected terms are kept as they are (not renormalised).

    As in :class:`~torch_mmkg.nn.interactions.MultiViewInteraction` (of which this is a
    subclass), each term belongs to a group (a caller may score one group, e.g. for *twins*
    negatives), and one-vs-all scoring sums the base interaction's pairwise
    :meth:`score_tails` over the terms.

    Args:
        base (Interaction): The single-view interaction, e.g.
            :class:`~torch_mmkg.nn.interactions.TransEInteraction`.
        terms (Sequence): Per term :obj:`(head coefficients, relation coefficients, tail
            coefficients, group)`, or :obj:`(head coefficients, tail coefficients, group)`
            for one relation view.
        weights (Sequence[float], optional): :math:`w_k` per term. (default: all :obj:`1`)
        reduce (str, optional): :obj:`"sum"` or :obj:`"mean"` (the weights divided by their
            sum). (default: :obj:`"sum"`)
        eval_terms (Sequence[int], optional): The indices of the terms scored in evaluation
            mode (:obj:`None`: all). (default: :obj:`None`)

    Shapes:
        - **input:** :obj:`h` :math:`[*, V, D]`, :obj:`r` :math:`[*, U D_r]`, :obj:`t`
          :math:`[*, V, D]`
        - **output:** :math:`[*]`
    """
    def __init__(self, base: Interaction, terms: Sequence,
                 weights: Optional[Sequence[float]] = None, reduce: str = 'sum',
                 eval_terms: Optional[Sequence[int]] = None):
        Interaction.__init__(self)
        parsed = []
        for term in terms:
            term = tuple(term)
            if len(term) == 3:
                term = (term[0], (1, ), term[1], term[2])
            if len(term) != 4:
                raise ValueError(f"a term is (head, relation, tail coefficients, group) or "
                                 f"(head, tail coefficients, group), got {term}")
            a, c, b, g = term
            parsed.append((tuple(a), tuple(c), tuple(b), str(g)))
        if not parsed:
            raise ValueError("a multi-view interaction needs at least one term")
        V, U = len(parsed[0][0]), len(parsed[0][1])
        bad = [t for t in parsed if len(t[0]) != V or len(t[2]) != V or len(t[1]) != U]
        if bad:
            raise ValueError(f"every term needs {V} head, {U} relation and {V} tail "
                             f"coefficients, got {bad}")
        weights = [1.0] * len(parsed) if weights is None else [float(w) for w in weights]
        if len(weights) != len(parsed):
            raise ValueError(f"{len(parsed)} terms need {len(parsed)} weights, got "
                             f"{len(weights)}")
        self.reduce = _check_reduce(reduce)
        if self.reduce == 'mean':
            total = sum(weights)
            if total == 0:
                raise ValueError("reduce='mean' needs weights with a non-zero sum")
            weights = [w / total for w in weights]
        if eval_terms is not None:
            eval_terms = tuple(int(k) for k in eval_terms)
            if not eval_terms or any(not 0 <= k < len(parsed) for k in eval_terms):
                raise ValueError(f"eval_terms must be indices in [0, {len(parsed)}), got "
                                 f"{eval_terms}")
        self.base = base
        self.weighted_terms = tuple(parsed)
        # The (head, tail, group) view of the terms that MultiViewInteraction's callers read.
        self.terms = tuple((a, b, g) for a, _, b, g in parsed)
        self.weights = tuple(weights)
        self.eval_terms = eval_terms
        self.num_views, self.num_relation_views = V, U
        self.entity_width = base.entity_width
        self.complex_entities = base.complex_entities

    def relation_width(self, dim: int) -> int:
        r"""The width :math:`U D_r` of the relation views for embedding size :obj:`dim`."""
        return self.num_relation_views * self.base.relation_width(dim)

    def active_terms(self) -> Tuple[int, ...]:
        r"""The indices of the terms :meth:`forward` sums in the current mode: all of them
        in training mode, :obj:`eval_terms` (where given) in evaluation mode."""
        if not self.training and self.eval_terms is not None:
            return self.eval_terms
        return tuple(range(len(self.weighted_terms)))

    def _indices(self, terms: Optional[str], term: Optional[int]) -> Tuple[int, ...]:
        if term is not None:
            return (int(term), )
        if terms is None:
            return self.active_terms()
        if terms not in self.groups:
            raise ValueError(f"no term of group {terms!r} (groups: {list(self.groups)})")
        # (empty where evaluation mode scores none of the group's terms)
        return tuple(k for k in self.active_terms() if self.weighted_terms[k][3] == terms)

    def _relation_view(self, r: Tensor, coeffs: Tuple[float, ...]) -> Tensor:
        if self.num_relation_views == 1:
            return _view(r.unsqueeze(-2), coeffs)
        return _view(r.unflatten(-1, (self.num_relation_views, -1)), coeffs)

    def _sum(self, fn, terms: Optional[str], term: Optional[int] = None,
             zero: Optional[Tensor] = None) -> Tensor:
        out = zero
        for k in self._indices(terms, term):
            a, c, b, _ = self.weighted_terms[k]
            s = fn(a, c, b)
            w = self.weights[k]
            s = s if w == 1.0 else w * s
            out = s if out is None else out + s
        return out

    def forward(self, h: Tensor, r: Tensor, t: Tensor, terms: Optional[str] = None,
                term: Optional[int] = None) -> Tensor:
        r"""The weighted sum over the active terms (see :meth:`active_terms`), the active
        terms of group :obj:`terms` (zero if evaluation mode scores none of them), or term
        number :obj:`term` alone (weighted)."""
        zero = None
        if terms is not None and not self._indices(terms, term):  # an empty group: 0
            zero = h.new_zeros(torch.broadcast_shapes(h.shape[:-2], r.shape[:-1],
                                                      t.shape[:-2]))
        return self._sum(lambda a, c, b: self.base(_view(h, a), self._relation_view(r, c),
                                                   _view(t, b)), terms, term, zero)

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        return self._sum(lambda a, c, b: self.base.score_tails(
            _view(h, a), self._relation_view(r, c), _view(t_all, b)), None)

    def score_heads(self, h_all: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return self._sum(lambda a, c, b: self.base.score_heads(
            _view(h_all, a), self._relation_view(r, c), _view(t, b)), None)

    def extra_repr(self) -> str:
        out = (f'num_views={self.num_views}, num_relation_views={self.num_relation_views}, '
               f'terms={len(self.weighted_terms)}, reduce={self.reduce!r}')
        if self.eval_terms is not None:
            out += f', eval_terms={self.eval_terms}'
        return out
