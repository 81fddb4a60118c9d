from typing import Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
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
        average (str, optional): What the combined score averages: :obj:`"probability"`
            (the shifted mean of :math:`\sigma(\mathcal{S}_m)` above) or :obj:`"logit"` (the
            mean of the logits :math:`\mathcal{S}_m`, MoSE's average inference); by default
            the probabilities with :obj:`joint_training`, else the logits. Training scores
            each view separately with :obj:`joint_training` either way.
            (default: :obj:`None`)
        decision_weights (bool, optional): Learned decision fusion (IMF): the scorers' votes
            are weighted by :math:`\omega = \mathrm{softmax}(\mathbf{w})` (learnable
            :math:`\mathbf{w}`, initially 0: equal weights), renormalised over the scorers
            that judge a pair, and with :obj:`joint_training` :meth:`view_logits` adds the
            fused view, the logit of :math:`\sum_m \omega_m \sigma(\mathcal{S}_m) /
            \sum_m \omega_m`, whose loss trains :math:`\mathbf{w}`. (default: :obj:`False`)
    """
    uses_masks = True

    def __init__(self, views: Sequence[str], scorers: Mapping[str, Interaction],
                 entity_fusion: Optional[torch.nn.Module] = None,
                 relation_fusion: Optional[torch.nn.Module] = None,
                 joint_training: bool = True, average: Optional[str] = None,
                 decision_weights: bool = False):
        super().__init__()
        if average not in (None, 'probability', 'logit'):
            raise ValueError(f"average must be 'probability' or 'logit', got {average!r}")
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
        self.average = average or ('probability' if joint_training else 'logit')
        if decision_weights:
            self.decision_logits = torch.nn.Parameter(torch.zeros(len(names)))
        else:
            self.register_parameter('decision_logits', None)
        if JOINT in names:
            self.entity_fusion = entity_fusion
            self.relation_fusion = relation_fusion
        self.scorers = torch.nn.ModuleDict({s: scorers[s] for s in names})
        first = scorers[names[0]]
        self.entity_width, self.relation_width = first.entity_width, first.relation_width

    def reset_parameters(self):
        if self.decision_logits is not None:
            torch.nn.init.zeros_(self.decision_logits)
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

    def decision_weights(self) -> Optional[Tensor]:
        r"""The learned decision weights :math:`\omega = \mathrm{softmax}(\mathbf{w})` of
        the trained scorers (:obj:`None` without learned decision fusion)."""
        if self.decision_logits is None:
            return None
        return torch.softmax(self.decision_logits, dim=0)

    def _scorer_weights(self, names: Optional[Sequence[str]]) -> Optional[List[Tensor]]:
        omega = self.decision_weights()
        if omega is None or names is None:
            return None
        return [omega[self.names.index(s)] for s in names]

    def combine(self, parts: List[Part], shape: Tuple[int, ...],
                names: Optional[Sequence[str]] = None) -> Tensor:
        r"""Averages the scorers' probabilities (or logits, see :obj:`average`) over
        the scorers that judge each pair, weighted by the decision weights of the scorers
        :obj:`names` where learned; :obj:`parts` holds (rows, logits, candidate
        weights)."""
        ref = parts[0][1]
        num = ref.new_zeros(shape)
        den = ref.new_zeros(shape)
        probability = self.average == 'probability'
        omegas = self._scorer_weights(names) or [None] * len(parts)
        for (rows, logits, weight), omega in zip(parts, omegas):
            value = torch.sigmoid(-logits) if probability else logits
            if rows is None and weight is None and omega is None:  # no [B, N] of ones
                num, den = num + value, den + 1.0
                continue
            w = torch.ones_like(value) if weight is None else weight.expand_as(value)
            if omega is not None:
                w = w * omega
            value = value * w
            if rows is None:
                num, den = num + value, den + w
            else:
                num, den = num.index_add(0, rows, value), den.index_add(0, rows, w)
        safe = torch.where(den > 0, den, torch.ones_like(den))
        if probability:  # nothing to judge a pair: probability 0, score -1
            return -(num + (den == 0).to(num.dtype)) / safe
        return torch.where(den > 0, num / safe,
                           torch.full_like(num, torch.finfo(num.dtype).min))

    def fused_logits(self, parts: List[Part], shape: Tuple[int, ...],
                     names: Sequence[str]) -> Tensor:
        r"""The logit of the decision-weighted mean probability :math:`p = \sum_{m \in
        M_{ht}} \omega_m \sigma(\mathcal{S}_m) / \sum_{m \in M_{ht}} \omega_m`,
        computed stably as :math:`\log \sum_m \omega_m \sigma(\mathcal{S}_m) - \log
        \sum_m \omega_m \sigma(-\mathcal{S}_m)` (log-sum-exp over the judging scorers);
        0 where no scorer judges."""
        omegas = self._scorer_weights(names)
        pos, neg = [], []
        for (rows, logits, weight), omega in zip(parts, omegas):
            judged = torch.ones_like(logits, dtype=torch.bool)
            if weight is not None:
                judged = judged & (weight.expand_as(logits) > 0)
            log_w = torch.log(omega)
            lp = torch.where(judged, log_w + F.logsigmoid(logits), float('-inf'))
            ln = torch.where(judged, log_w + F.logsigmoid(-logits), float('-inf'))
            if rows is not None:
                full = logits.new_full(shape, float('-inf'))
                lp, ln = full.index_copy(0, rows, lp), full.index_copy(0, rows, ln)
            pos.append(lp.expand(shape))
            neg.append(ln.expand(shape))
        lp, ln = torch.logsumexp(torch.stack(pos), 0), torch.logsumexp(torch.stack(neg), 0)
        ok = torch.isfinite(lp) & torch.isfinite(ln)
        zero = torch.zeros_like(lp)
        return torch.where(ok, torch.where(ok, lp, zero) - torch.where(ok, ln, zero), zero)

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
        shape = (h.size(0), t_all[0].size(0))
        if self.joint_training:
            if self.decision_logits is not None:  # the fused view trains the weights
                parts = parts + [(None, self.fused_logits(parts, shape, self.names), None)]
            return parts
        return [(None, self.combine(parts, shape, self.names), None)]

    def score_tails(self, h: Tensor, r: Tensor, t_all, h_mask: Optional[Tensor] = None,
                    t_mask: Optional[Tensor] = None) -> Tensor:
        parts = self._all_parts(self.active, h, r, t_all, h_mask)
        return self.combine(parts, (h.size(0), t_all[0].size(0)), self.active)

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
        return self.combine(parts, (h.size(0), ), self.active).view(shape)

    def extra_repr(self) -> str:
        return (f'views={self.views}, scorers={list(self.names)}, active={list(self.active)}, '
                f'average={self.average!r}')
