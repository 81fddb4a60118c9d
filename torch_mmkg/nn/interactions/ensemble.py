from typing import Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .base import Interaction

JOINT = 'joint'
Part = Tuple[Optional[Tensor], Tensor, Optional[Tensor]]


class EnsembleInteraction(Interaction):
    r"""A per-view scorer ensemble: one scorer per view of an entity (its slots, e.g. the
    structure and each modality) plus, optionally, one for a joint view fused from them,
    combined into one score: MoMoK's multi-modal joint decision (MuJoD, Eqs. 3–6 of `"Multiple
    Heads are Better than One" <https://arxiv.org/abs/2405.16869>`_), and the shape of MoSE
    and IMF.

    Entities and relations come as stacks of views, :math:`[*, S, D]` and
    :math:`[*, S, D_r]`, with the entities' view masks :math:`[*, S]`. Scorer :math:`m` sees
    view :math:`m` of the head, relation and tail; the joint scorer sees
    :math:`\mathrm{fuse}_e(\text{entity views})` and :math:`\mathrm{fuse}_r(\text{relation
    views})`. A view is only judged where both entities have it: a query lacking view
    :math:`m` gets no vote from :math:`\mathcal{S}_m`, and a candidate lacking it is
    averaged over the other scorers. With :obj:`joint_training` the combined score is the
    mean of the judging scorers' probabilities, shifted by :math:`-1` and computed as
    :math:`-\frac{1}{|M_{ht}|}\sum_m \sigma(-\mathcal{S}_m)` (ranks identically, keeps float
    resolution where :math:`\sigma` saturates), and training scores each view separately
    (:meth:`view_logits`: one loss per scorer); without, both use the mean of the logits. A
    pair no scorer judges scores lowest.

    Args:
        views (Sequence[str]): The names of the entity views (slots), in stack order.
        scorers (Mapping[str, Interaction]): The scorer of each view that is scored, and of
            :obj:`"joint"` if the joint view is.
        entity_fusion (Fusion, optional): Fuses entity views into the joint view (needed with
            a joint scorer).
        relation_fusion (Fusion, optional): Fuses relation views likewise.
        joint_training (bool, optional): (default: :obj:`True`)
    """
    uses_masks = True

    def __init__(self, views: Sequence[str], scorers: Mapping[str, Interaction],
                 entity_fusion: Optional[torch.nn.Module] = None,
                 relation_fusion: Optional[torch.nn.Module] = None,
                 joint_training: bool = True):
        super().__init__()
        self.views = list(views)
        names = [v for v in self.views if v in scorers] + ([JOINT] if JOINT in scorers else [])
        unknown = sorted(set(scorers) - set(names))
        if unknown or not names:
            raise ValueError(f"scorers must be among the views {self.views} and '{JOINT}', got "
                             f"{list(scorers)}")
        if JOINT in names and (entity_fusion is None or relation_fusion is None):
            raise ValueError("a joint scorer needs an entity_fusion and a relation_fusion")
        self.names = tuple(names)
        self.active = self.names
        self.joint_training = bool(joint_training)
        if JOINT in names:
            self.entity_fusion = entity_fusion
            self.relation_fusion = relation_fusion
        self.scorers = torch.nn.ModuleDict({s: scorers[s] for s in names})
        first = scorers[names[0]]
        self.entity_width, self.relation_width = first.entity_width, first.relation_width

    def reset_parameters(self):
        if JOINT in self.names:
            self.entity_fusion.reset_parameters()
            self.relation_fusion.reset_parameters()
        for scorer in self.scorers.values():
            if hasattr(scorer, 'reset_parameters'):
                scorer.reset_parameters()

    def prepare_candidates(self, table: Tensor, mask: Optional[Tensor] = None):
        r"""The candidate side of every scorer: the views, their mask and the joint view."""
        joint = self.entity_fusion(table, mask)[0] if JOINT in self.names else None
        return table, mask, joint

    def _inputs(self, names: Sequence[str], q: Tensor, q_mask: Tensor, r: Tensor
                ) -> Iterator[Tuple[str, Optional[Tensor], Tensor, Tensor, Optional[int]]]:
        r"""Per scorer: the query rows it judges (:obj:`None`: all), its query and relation
        views for them, and the view of its candidate mask (:obj:`None`: every candidate)."""
        for s in names:
            if s == JOINT:
                yield (s, None, self.entity_fusion(q, q_mask)[0],
                       self.relation_fusion(r)[0], None)
                continue
            i = self.views.index(s)
            if q_mask is None or bool(q_mask[..., i].all()):
                yield s, None, q[..., i, :], r[..., i, :], (None if q_mask is None else i)
            else:
                rows = q_mask[..., i].nonzero().view(-1)
                yield s, rows, q[rows, i], r[rows, i], i

    def combine(self, parts: List[Part], shape: Tuple[int, ...]) -> Tensor:
        r"""Averages the scorers' probabilities (or, without joint training, logits) over
        the scorers that judge each pair; :obj:`parts` holds (rows, logits, candidate
        weights)."""
        ref = parts[0][1]
        num = ref.new_zeros(shape)
        den = ref.new_zeros(shape)
        for rows, logits, weight in parts:
            value = torch.sigmoid(-logits) if self.joint_training else logits
            if rows is None and weight is None:  # judges every pair: no [B, N] of ones
                num, den = num + value, den + 1.0
                continue
            w = torch.ones_like(value) if weight is None else weight.expand_as(value)
            value = value * w
            if rows is None:
                num, den = num + value, den + w
            else:
                num, den = num.index_add(0, rows, value), den.index_add(0, rows, w)
        if self.joint_training:  # nothing to judge a pair: probability 0, score -1
            return -(num + (den == 0).to(num.dtype)) / den.clamp(min=1.0)
        return torch.where(den > 0, num / den.clamp(min=1.0),
                           torch.full_like(num, torch.finfo(num.dtype).min))

    def _all_parts(self, names, h, r, t_all, h_mask) -> List[Part]:
        table, mask, joint = t_all
        out = []
        for s, rows, q, rel, slot in self._inputs(names, h, h_mask, r):
            cand = joint if s == JOINT else table[:, self.views.index(s)]
            weight = (None if slot is None or mask is None or bool(mask[:, slot].all()) else
                      mask[:, slot].to(q.dtype)[None])
            out.append((rows, self.scorers[s].score_tails(q, rel, cand), weight))
        return out

    def view_logits(self, h: Tensor, r: Tensor, t_all, h_mask: Optional[Tensor] = None,
                    t_mask: Optional[Tensor] = None) -> List[Part]:
        r"""The training logits of every trained scorer, :obj:`(rows, logits [b, N],
        candidate weights [1, N])`; without joint training the one combined logit matrix."""
        parts = self._all_parts(self.names, h, r, t_all, h_mask)
        if self.joint_training:
            return parts
        return [(None, self.combine(parts, (h.size(0), t_all[0].size(0))), None)]

    def score_tails(self, h: Tensor, r: Tensor, t_all, h_mask: Optional[Tensor] = None,
                    t_mask: Optional[Tensor] = None) -> Tensor:
        parts = self._all_parts(self.active, h, r, t_all, h_mask)
        return self.combine(parts, (h.size(0), t_all[0].size(0)))

    def score_heads(self, h_all, r, t, h_mask=None, t_mask=None) -> Tensor:
        raise NotImplementedError("an ensemble scores queries (e, r, ?): train it with inverse "
                                  "relations, heads being tails of the inverse relation")

    def forward(self, h: Tensor, r: Tensor, t: Tensor, h_mask: Optional[Tensor] = None,
                t_mask: Optional[Tensor] = None) -> Tensor:
        shape = torch.broadcast_shapes(h.shape[:-2], r.shape[:-2], t.shape[:-2])
        S = len(self.views)
        h = h.expand(*shape, S, h.size(-1)).reshape(-1, S, h.size(-1))
        r = r.expand(*shape, r.size(-2), r.size(-1)).reshape(-1, r.size(-2), r.size(-1))
        t = t.expand(*shape, S, t.size(-1)).reshape(-1, S, t.size(-1))
        h_mask = None if h_mask is None else h_mask.expand(*shape, S).reshape(-1, S)
        t_mask = None if t_mask is None else t_mask.expand(*shape, S).reshape(-1, S)
        parts = []
        for s, rows, q, rel, slot in self._inputs(self.active, h, h_mask, r):
            if s == JOINT:
                cand = self.entity_fusion(t, t_mask)[0]
            else:
                i = self.views.index(s)
                cand = t[:, i] if rows is None else t[rows, i]
            weight = (None if slot is None or t_mask is None else
                      (t_mask[:, slot] if rows is None else t_mask[rows, slot]).to(q.dtype))
            parts.append((rows, self.scorers[s](q, rel, cand), weight))
        return self.combine(parts, (h.size(0), )).view(shape)

    def extra_repr(self) -> str:
        return f'views={self.views}, scorers={list(self.names)}, active={list(self.active)}'
