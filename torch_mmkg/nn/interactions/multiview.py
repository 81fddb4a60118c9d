from typing import Optional, Sequence, Tuple

from torch import Tensor

from .base import Interaction

#: TBKGC's five terms over the views (structure, multi-modal): the two unimodal terms
#: :math:`(s, s), (m, m)`, then the cross-modal :math:`(s, m), (m, s), (s + m, s + m)`.
TBKGC_TERMS = (((1, 0), (1, 0), 'unimodal'), ((0, 1), (0, 1), 'unimodal'),
               ((1, 0), (0, 1), 'crossmodal'), ((0, 1), (1, 0), 'crossmodal'),
               ((1, 1), (1, 1), 'crossmodal'))


def _view(x: Tensor, coeffs: Tuple[float, ...]) -> Tensor:
    r""":math:`\sum_v c_v\, x_{\ldots, v, :}`, a plain slice or sum for 0/1 coefficients (no
    multiplication, so that one view is the view itself)."""
    out = None
    for v, c in enumerate(coeffs):
        if c == 0:
            continue
        term = x[..., v, :] if c == 1 else c * x[..., v, :]
        out = term if out is None else out + term
    if out is None:
        raise ValueError(f"view coefficients {coeffs} select nothing")
    return out


class MultiViewInteraction(Interaction):
    r"""A sum of scores of a base interaction over combinations of an entity's views: for
    heads and tails given as stacks of :math:`V` views :math:`[*, V, D]` (e.g. the structural
    and multi-modal embeddings from :class:`~torch_mmkg.nn.fusion.StructureAndFused`),

    .. math::
        f(\mathbf{H}, \mathbf{r}, \mathbf{T}) = \sum_{k} f_{\mathrm{base}}\Big(
        \sum_v a_{kv} \mathbf{H}_v,\ \mathbf{r},\ \sum_v b_{kv} \mathbf{T}_v\Big),

    the multi-term energies of TBKGC, VBKGC, IKRL, MMKRL and QEB. TBKGC (the default terms)
    adds five TransE scores, :math:`(s, s), (m, m), (s, m), (m, s), (s + m, s + m)`.

    Each term belongs to a group (e.g. :obj:`"unimodal"`, :obj:`"crossmodal"`), so that a
    caller scores a subset (:obj:`terms`): *twins* negative sampling scores the unimodal terms
    on the corrupted entity and the cross-modal terms on the corrupted entity with the
    replaced entity's structural view (:attr:`supports_twins`).

    One-vs-all scoring sums the base interaction's :meth:`score_tails` over the terms, each a
    pairwise kernel on :math:`[N, D]` tables.

    Args:
        base (Interaction): The single-view interaction, e.g.
            :class:`~torch_mmkg.nn.interactions.TransEInteraction`.
        terms (Sequence, optional): :obj:`(head coefficients, tail coefficients, group)` per
            term. (default: TBKGC's five terms)
        num_views (int, optional): :math:`V`. (default: the coefficients' length)

    Shapes:
        - **input:** :obj:`h` :math:`[*, V, D]`, :obj:`r` :math:`[*, D_r]`, :obj:`t`
          :math:`[*, V, D]`
        - **output:** :math:`[*]`
    """
    def __init__(self, base: Interaction, terms: Sequence = TBKGC_TERMS,
                 num_views: Optional[int] = None):
        super().__init__()
        terms = tuple((tuple(a), tuple(b), str(g)) for a, b, g in terms)
        if not terms:
            raise ValueError("a multi-view interaction needs at least one term")
        V = num_views or len(terms[0][0])
        bad = [t for t in terms if len(t[0]) != V or len(t[1]) != V]
        if bad:
            raise ValueError(f"every term needs {V} head and {V} tail coefficients, got {bad}")
        self.base, self.terms, self.num_views = base, terms, V
        self.entity_width = base.entity_width
        self.relation_width = base.relation_width
        self.complex_entities = base.complex_entities

    @property
    def groups(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(g for _, _, g in self.terms))

    @property
    def supports_twins(self) -> bool:
        r"""Whether twins negatives apply: the terms have unimodal and cross-modal groups
        and the first view is the structural one."""
        return {'unimodal', 'crossmodal'} <= set(self.groups)

    def reset_parameters(self):
        if hasattr(self.base, 'reset_parameters'):
            self.base.reset_parameters()

    def _selected(self, terms: Optional[str], term: Optional[int] = None):
        if term is not None:
            return (self.terms[term], )
        if terms is None:
            return self.terms
        chosen = tuple(t for t in self.terms if t[2] == terms)
        if not chosen:
            raise ValueError(f"no term of group {terms!r} (groups: {list(self.groups)})")
        return chosen

    def _sum(self, fn, terms: Optional[str], term: Optional[int] = None) -> Tensor:
        out = None
        for a, b, _ in self._selected(terms, term):
            s = fn(a, b)
            out = s if out is None else out + s
        return out

    def forward(self, h: Tensor, r: Tensor, t: Tensor, terms: Optional[str] = None,
                term: Optional[int] = None) -> Tensor:
        r"""The sum over all terms, the terms of group :obj:`terms`, or term number
        :obj:`term` alone."""
        return self._sum(lambda a, b: self.base(_view(h, a), r, _view(t, b)), terms, term)

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        return self._sum(lambda a, b: self.base.score_tails(_view(h, a), r, _view(t_all, b)),
                         None)

    def score_heads(self, h_all: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return self._sum(lambda a, b: self.base.score_heads(_view(h_all, a), r, _view(t, b)),
                         None)

    def extra_repr(self) -> str:
        return f'num_views={self.num_views}, terms={len(self.terms)}'
