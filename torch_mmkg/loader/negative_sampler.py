from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.data.indices import IndexSpec, check_indices
from torch_mmkg.data.known_triples import KnownTriples
from torch_mmkg.data.statistics import relation_cardinality


class Negatives(NamedTuple):
    r"""Negatives of a batch of :math:`B` positives: :obj:`index[b, k]` replaces the head of
    positive :math:`b` if :obj:`corrupt_head[b]`, else its tail. Where the side is drawn per
    negative (:obj:`NegativeSampler(side_per="negative")`), :obj:`corrupt_head` is a
    :obj:`[B, K]` mask and :obj:`index[b, k]` replaces the head if :obj:`corrupt_head[b, k]`;
    models score both layouts (:meth:`~torch_mmkg.nn.KGEModel.score_batch`).

    With :obj:`twins` (the twins negative sampling of the `"Knowledge Graph Completion with
    Pre-trained Multimodal Transformer and Twins Negative Sampling"
    <https://arxiv.org/abs/2209.07084>`_ paper) the same entities are drawn, but a model with
    separate structural and multi-modal embeddings uses them differently: its unimodal score
    terms see the whole corrupted entity :math:`(\mathbf{e}'_s, \mathbf{e}'_m)`, its
    cross-modal terms only its multi-modal embedding, the structural one staying the
    replaced entity's own, :math:`(\mathbf{e}_s, \mathbf{e}'_m)`. Models that have no such
    split reject twins negatives (see :attr:`KGEModel.supports_twins
    <torch_mmkg.nn.KGEModel.supports_twins>`)."""
    index: Tensor  # [B, K] entity ids
    corrupt_head: Tensor  # [B] bool, or [B, K] bool (a side per negative)
    twins: bool = False

    @property
    def per_negative(self) -> bool:
        r"""Whether the side is given per negative (:obj:`corrupt_head` :math:`[B, K]`)."""
        return self.corrupt_head.dim() == 2

    def side_mask(self) -> Tensor:
        r"""The :obj:`[B, K]` head-corruption mask of every negative (a view)."""
        if self.per_negative:
            return self.corrupt_head
        return self.corrupt_head[:, None].expand_as(self.index)

    def triples(self, head: Tensor, rel: Tensor, tail: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The negative triples :obj:`(head, rel, tail)`, each :math:`[B, K]`, of the
        positives :obj:`head`, :obj:`rel`, :obj:`tail` :math:`[B]`."""
        ch = self.side_mask()
        return (torch.where(ch, self.index, head[:, None]), rel[:, None].expand_as(self.index),
                torch.where(ch, tail[:, None], self.index))


#: How a :class:`NegativeSampler` draws the corrupted side: once per positive or once per
#: negative.
SIDE_PER = ('positive', 'negative')


def relation_head_probability(head: Tensor, rel: Tensor, tail: Tensor,
                              num_relations: int) -> Tensor:
    r"""The Bernoulli head-corruption probability of each relation from the `"Knowledge Graph
    Embedding by Translating on Hyperplanes" <https://ojs.aaai.org/index.php/AAAI/article/
    view/8870>`_ paper,

    .. math::
        p_r = \frac{\mathrm{tph}_r}{\mathrm{tph}_r + \mathrm{hpt}_r},

    with :math:`\mathrm{tph}_r` the mean number of tails per head and :math:`\mathrm{hpt}_r`
    the mean number of heads per tail of relation :math:`r` over the given (training)
    triples. One-to-many relations thus corrupt the head more often, which makes false
    negatives rarer. Relations without triples get :math:`p_r = 1/2`."""
    n, tph, hpt = relation_cardinality(head, rel, tail, num_relations)
    p = (tph / (tph + hpt).clamp_min(1e-12)).float()
    return torch.where(n > 0, p, torch.full_like(p, 0.5))


class NegativeSampler:
    r"""Draws :math:`K` corrupted triples per positive, on the device of the positives.

    For each positive :math:`(h, r, t)` one side is chosen, the head with probability
    :math:`1/2` (:obj:`strategy="uniform"`) or :math:`p_r` (:obj:`strategy="bernoulli"`, see
    :func:`relation_head_probability`), and :math:`K` entities replace it. With
    :obj:`side_per="negative"` the side is drawn independently for every one of the :math:`K`
    negatives, with the same probability, as the OpenKE sampler of the NATIVE, AdaMF-MAT and
    LBMKGC code bases does; one positive's negatives then mix head and tail corruptions
    (:obj:`corrupt_head` of shape :math:`[B, K]`).

    Without :obj:`known`, the replacements are uniform over the :math:`N - 1` entities other
    than the positive's own, so the positive is never drawn as its own negative. With
    :obj:`known` (typically the training triples), they are uniform over the entities
    :math:`e` with :math:`(h, r, e)` (resp. :math:`(e, r, t)`) *not* known, drawn exactly
    without rejection: a uniform :math:`u \in [0, N - c)` (:math:`c` known answers) is mapped
    to the :math:`u`-th entity outside the sorted known set, by one :func:`torch.searchsorted`
    over the keys of :class:`~torch_mmkg.data.KnownTriples` shifted by their rank within their
    query. A query whose every entity is a known answer has no true negative; it falls back
    to the unfiltered draw.

    Args:
        num_entities (int): Number of entities :math:`N`.
        num_negatives (int, optional): :math:`K`. (default: :obj:`1`)
        strategy (str, optional): :obj:`"uniform"` or :obj:`"bernoulli"`.
            (default: :obj:`"uniform"`)
        known (KnownTriples, optional): Triples never returned as negatives.
            (default: :obj:`None`)
        head_probability (torch.Tensor, optional): Per-relation :math:`p_r` for
            :obj:`"bernoulli"`; computed from :obj:`known` when omitted.
        generator (torch.Generator, optional): Source of randomness (on the device of the
            positives), for reproducible draws. (default: :obj:`None`)
        twins (bool, optional): Mark the negatives as twins negatives (see
            :class:`Negatives`); the draw itself is unchanged. (default: :obj:`False`)
        side_per (str, optional): Draw the corrupted side once per positive
            (:obj:`"positive"`) or once per negative (:obj:`"negative"`, OpenKE's sampler).
            (default: :obj:`"positive"`)
    """
    def __init__(self, num_entities: int, num_negatives: int = 1, strategy: str = 'uniform',
                 known: Optional[KnownTriples] = None,
                 head_probability: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None, twins: bool = False,
                 side_per: str = 'positive'):
        if strategy not in ('uniform', 'bernoulli'):
            raise ValueError(f"strategy must be 'uniform' or 'bernoulli', got {strategy!r}")
        if side_per not in SIDE_PER:
            raise ValueError(f"side_per must be 'positive' or 'negative', got {side_per!r}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if num_entities < 2:
            raise ValueError("negative sampling needs at least two entities")
        self.num_entities = int(num_entities)
        self.num_negatives = int(num_negatives)
        self.strategy = strategy
        self.known = known
        self.generator = generator
        self.twins = bool(twins)
        self.side_per = side_per
        if known is not None and known.num_entities != self.num_entities:
            raise ValueError(f"known triples index {known.num_entities} entities, the "
                             f"sampler {self.num_entities}")
        if strategy == 'bernoulli' and head_probability is None:
            if known is None:
                raise ValueError("strategy='bernoulli' needs head_probability or known")
            R = known.num_relations
            keys = known.tail_keys
            ht, t = keys.div(known.num_entities, rounding_mode='floor'), keys % known.num_entities
            head_probability = relation_head_probability(
                ht.div(R, rounding_mode='floor'), ht % R, t, R)
        self.head_probability = head_probability
        # keys[p] - p is non-decreasing; within the run of a query it equals
        # (base - start) + (e_j - j), the number of free entities below e_j shifted by a
        # per-query constant, which is what the rejection-free draw counts against.
        self._shifted = None
        if known is not None:
            self._shifted = tuple(k - torch.arange(k.numel(), device=k.device)
                                  for k in (known.tail_keys, known.head_keys))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_negatives={self.num_negatives}, '
                f'strategy={self.strategy!r}, filtered={self.known is not None}'
                f'{", side_per=" + repr(self.side_per) if self.side_per != "positive" else ""}'
                f'{", twins=True" if self.twins else ""})')

    def _rand(self, shape, device) -> Tensor:
        return torch.rand(shape, device=device, generator=self.generator)

    def _draw(self, a: Tensor, r: Tensor, exclude: Tensor, side: int,
              K: Optional[int] = None) -> Tensor:
        r"""Entities :math:`e` with :math:`(a, r, e)` unknown (side 0: tails) or
        :math:`(e, r, a)` unknown (side 1: heads), :math:`K` per query (default: the
        sampler's), and never :obj:`exclude` (the positive's own entity)."""
        N, K = self.num_entities, self.num_negatives if K is None else K
        u = self._rand((a.numel(), K), a.device)
        if self.known is None:
            x = (u * (N - 1)).long().clamp_max(N - 2)
            return x + (x >= exclude[:, None]).long()
        known = self.known
        keys = known.tail_keys if side == 0 else known.head_keys
        shifted = self._shifted[side].to(keys.device)
        base, start, count = known._range(keys, a, r)
        free = N - count
        full = free <= 0  # no true negative: fall back to the unfiltered draw
        x = (u * free.clamp_min(1)[:, None]).long()
        x = torch.minimum(x, (free.clamp_min(1) - 1)[:, None])
        # The x-th free entity is x + #{j : e_j - j <= x} over the sorted known answers e_j;
        # all shifted keys before the run are <= the target and all after it are > it.
        cnt = torch.searchsorted(shifted, (base - start)[:, None] + x, right=True) - \
            start[:, None]
        x = x + cnt.clamp(min=0).minimum(count[:, None])
        if bool(full.any()):
            y = (u[full] * (N - 1)).long().clamp_max(N - 2)
            x[full] = y + (y >= exclude[full, None]).long()
        return x

    @torch.no_grad()
    def __call__(self, head: Tensor, rel: Tensor, tail: Tensor) -> Negatives:
        r"""Samples negatives for a batch of positives.

        Shapes:
            - **input:** :obj:`head`, :obj:`rel`, :obj:`tail` :math:`[B]`
            - **output:** :class:`Negatives` with :obj:`index` :math:`[B, K]` and
              :obj:`corrupt_head` :math:`[B]` (:math:`[B, K]` with
              :obj:`side_per="negative"`)
        """
        # Relation ids index the filter and the Bernoulli table; without either they are only
        # passed through, and any integer will do.
        R = (self.known.num_relations if self.known is not None else
             self.head_probability.numel() if self.head_probability is not None else 2**63 - 1)
        head, rel, tail = check_indices(
            'NegativeSampler', IndexSpec('head', head, self.num_entities),
            IndexSpec('rel', rel, R, 'relation'), IndexSpec('tail', tail, self.num_entities))
        B = head.numel()
        if self.strategy == 'bernoulli':
            p = self.head_probability.to(head.device)[rel]
        else:
            p = torch.full((B, ), 0.5, device=head.device)
        if self.side_per == 'negative':
            return self._per_negative(head, rel, tail, p)
        corrupt_head = self._rand((B, ), head.device) < p
        index = torch.empty(B, self.num_negatives, dtype=torch.long, device=head.device)
        hs = corrupt_head.nonzero().view(-1)
        ts = (~corrupt_head).nonzero().view(-1)
        if ts.numel():
            index[ts] = self._draw(head[ts], rel[ts], tail[ts], side=0)
        if hs.numel():
            index[hs] = self._draw(tail[hs], rel[hs], head[hs], side=1)
        return Negatives(index, corrupt_head, self.twins)

    def _per_negative(self, head: Tensor, rel: Tensor, tail: Tensor, p: Tensor) -> Negatives:
        r"""A side per negative: each of the :math:`B \cdot K` negatives is one draw of its
        side's query (the same exact filtered draw as per positive, with :math:`K = 1`)."""
        B, K = head.numel(), self.num_negatives
        corrupt_head = self._rand((B, K), head.device) < p[:, None]
        index = torch.empty(B, K, dtype=torch.long, device=head.device)
        for side, rows in ((0, ~corrupt_head), (1, corrupt_head)):
            b, k = rows.nonzero().unbind(1)
            if not b.numel():
                continue
            a, own = (head[b], tail[b]) if side == 0 else (tail[b], head[b])
            index[b, k] = self._draw(a, rel[b], own, side, K=1).view(-1)
        return Negatives(index, corrupt_head, self.twins)
