import contextlib
import itertools
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_mmkg.nn.club import CLUBEstimator
from torch_mmkg.nn.fusion.attention import AttentionFusion
from torch_mmkg.nn.fusion.experts import ModalityExperts
from torch_mmkg.nn.interactions import TuckERInteraction
from torch_mmkg.nn.kge.base import KGEModel
from torch_mmkg.nn.loss import BCELoss
from torch_mmkg.nn.validation import (check_sizes, optional_positive_int, positive_int,
                                      probability, real)
from ._modalities import FromDataMixin, register_modalities

STRUCTURE, JOINT = 'structure', 'joint'


class MoMoK(FromDataMixin, KGEModel):
    r"""MoMoK from the `"Multiple Heads are Better than One: Mixture of Modality Knowledge
    Experts for Entity Representation Learning" <https://arxiv.org/abs/2405.16869>`_ paper
    (ICLR 2025): relation-guided modality knowledge experts (ReMoKE), multi-modal joint
    decision (MuJoD) and expert information disentanglement (ExID), for any number of
    modalities.

    **ReMoKE** (Eq. 2). Every modality :math:`m` (the learnable structural embedding
    :math:`S` and each feature modality, features :math:`L_2`-normalised and frozen) has
    :math:`K` experts :math:`\mathcal{V}_{m,i} = \mathcal{W}_{m,i}(\mathbf{x}_m -
    \mathbf{b}_{m,i}) \in \mathbb{R}^d` mixed by a noisy gate with the relation-aware
    temperature :math:`\sigma(\varepsilon_r)` (see
    :class:`~torch_mmkg.nn.fusion.ModalityExperts`),

    .. math::
        \hat{\mathbf{e}}_{m,r} = \sum_{i=1}^{K} G_i(\mathcal{V}_{m,i}, r)\,
        \mathcal{V}_{m,i}, \qquad
        G_i = \mathrm{softmax}_i\big((\mathcal{U}_m(\mathbf{x}_m)_i + \delta_{m,i}) /
        \sigma(\varepsilon_r)\big).

    The temperature applies to the query entity of :math:`(e, r, ?)`; candidate entities are
    gated at temperature 1, as in the authors' code. Relations have one embedding
    :math:`\mathbf{r}_m \in \mathbb{R}^{d_r}` per modality.

    **MuJoD** (Eqs. 3–6). The modality embeddings are fused into a joint modality :math:`J`
    by :class:`~torch_mmkg.nn.fusion.AttentionFusion` (likewise the relation embeddings);
    every modality :math:`m \in M \cup \{J\}` has its own TuckER scorer

    .. math::
        \mathcal{S}_m(h, r, t) = \mathcal{W}_m \times_1 \hat{\mathbf{h}}_{m,r} \times_2
        \mathbf{r}_m \times_3 \hat{\mathbf{t}}_{m},

    (with TuckER's batch norms and dropouts), trained 1-N with inverse relations by the sum
    :math:`\mathcal{L}_{kgc} = \sum_m \mathcal{L}_m` of binary cross-entropies with label
    smoothing. A triple's score is the mean of the scorers' probabilities,
    :math:`\frac{1}{|M_{ht}|} \sum_{m \in M_{ht}} \sigma(\mathcal{S}_m)` as in the authors'
    code, returned shifted by :math:`-1` and computed as :math:`-\frac{1}{|M_{ht}|}\sum_m
    \sigma(-\mathcal{S}_m)`, which ranks identically but keeps float resolution among the
    top candidates, where :math:`\sigma` saturates.

    **ExID** (Eqs. 7–10). The total loss is :math:`\mathcal{L}_{kgc} + \lambda
    \mathcal{L}_{club}` with :math:`\mathcal{L}_{club} = \frac{1}{K^2}\sum_m \sum_{i \neq j}
    I_{\mathrm{CLUB}}(\mathcal{V}_{m,i}; \mathcal{V}_{m,j})` over the distinct query entities
    of the batch (:class:`~torch_mmkg.nn.CLUBEstimator`, one variational network per ordered
    expert pair, since one network cannot model :math:`q(\mathcal{V}_j \mid \mathcal{V}_i)`
    for every :math:`j` at once). The variational networks get no gradient from this loss:
    they are the :meth:`auxiliary_parameters`, fitted alternately by :meth:`auxiliary_loss`
    (Eq. 9) with their own optimiser, which :class:`~torch_mmkg.training.Trainer` does
    after every step. By hand::

        loss = model.loss_1n(entity, rel, target)   # L_kgc + lambda * L_club
        loss.backward(); optimizer.step()           # optimizer over the main parameters
        est_opt.zero_grad(); model.auxiliary_loss().backward(); est_opt.step()

    **Missing modalities.** With :obj:`mask_missing=True` an entity without modality
    :math:`m` is never scored by :math:`\mathcal{S}_m`: a query lacking :math:`m` has no
    :math:`\mathcal{L}_m` term and no vote from :math:`\mathcal{S}_m`, a candidate lacking
    :math:`m` is left out of :math:`\mathcal{L}_m`'s columns and its final score averages
    only the scorers that can judge it (:math:`M_{ht}`: structure and joint always, a feature
    modality when both entities have it); the joint embedding fuses only the modalities the
    entity has; ExID uses only entities that have the modality. An entity no enabled scorer
    can judge ranks last. :obj:`mask_missing=False` scores the zero (missing) features like
    real ones, as the authors' code does.

    **Ablations** (the paper's Table 2) are switches: :obj:`scorers` (e.g.
    :obj:`["structure"]` for a single-modality model, (1.1)–(1.4)),
    :obj:`relation_temperature=False` (2.1), :obj:`noisy_gating=False` (2.2),
    :obj:`adaptive_fusion=False` (2.3), :obj:`joint_training=False` (2.4: one
    cross-entropy on the mean of the scorers' logits, which is also the inference score,
    instead of one per modality) and :obj:`club_weight=0` (2.5, w/o ExID).
    :meth:`use_scorers` evaluates a trained model with a subset of its scorers (Table 4).

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations :math:`R` (inverses are added).
        hidden_channels (int): The entity embedding size :math:`d` of every modality.
        features (Mapping[str, Tensor], optional): Per modality, the :obj:`[N, F_m]`
            features (none: a structure-only mixture of experts). (default: :obj:`None`)
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability. (default: all present)
        relation_channels (int, optional): :math:`d_r`. (default: :obj:`hidden_channels`)
        num_experts (int, optional): :math:`K \geq 1`. (default: :obj:`3`)
        num_heads (int, optional): Heads of the joint fusion, :math:`\geq 1`.
            (default: :obj:`2`)
        club_weight (float, optional): :math:`\lambda \geq 0`. (default: :obj:`1e-4`)
        label_smoothing (float, optional): In :math:`[0, 1)`. (default: :obj:`0.1`)
        input_dropout (float, optional): TuckER's, in :math:`[0, 1)`. (default: :obj:`0.3`)
        hidden_dropout1 (float, optional): TuckER's, in :math:`[0, 1)`.
            (default: :obj:`0.4`)
        hidden_dropout2 (float, optional): TuckER's, in :math:`[0, 1)`.
            (default: :obj:`0.5`)
        fusion_dropout (float, optional): Before the joint projections, in :math:`[0, 1)`.
            (default: :obj:`0.2`)
        noisy_gating (bool, optional): (default: :obj:`True`)
        noise_epsilon (float, optional): Noise floor :math:`\epsilon \geq 0` of the gate's
            standard deviation. (default: :obj:`0.01`)
        relation_temperature (bool, optional): (default: :obj:`True`)
        adaptive_fusion (bool, optional): (default: :obj:`True`)
        joint_training (bool, optional): (default: :obj:`True`)
        scorers (Sequence[str], optional): The scorers to train and use, among
            :obj:`"structure"`, the modality names and :obj:`"joint"`. (default: all)
        mask_missing (bool, optional): (default: :obj:`True`)
        normalize_features (bool, optional): :math:`L_2`-normalise feature rows.
            (default: :obj:`True`)
        loss (torch.nn.Module, optional): Replaces the default
            :class:`~torch_mmkg.nn.loss.BCELoss` (called as :obj:`loss(logits, target,
            candidate_weight)`).

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`modality_embeddings` :math:`[*, S, d]` (and experts
          :math:`[*, S, K, d]`, gates :math:`[*, S, K]`, mask :math:`[*, S]`)
    """
    one_to_n = True

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Optional[Mapping[str, Tensor]] = None,
                 masks: Optional[Mapping[str, Tensor]] = None,
                 relation_channels: Optional[int] = None, num_experts: int = 3,
                 num_heads: int = 2, club_weight: float = 1e-4, label_smoothing: float = 0.1,
                 input_dropout: float = 0.3, hidden_dropout1: float = 0.4,
                 hidden_dropout2: float = 0.5, fusion_dropout: float = 0.2,
                 noisy_gating: bool = True, noise_epsilon: float = 1e-2,
                 relation_temperature: bool = True, adaptive_fusion: bool = True,
                 joint_training: bool = True, scorers: Optional[Sequence[str]] = None,
                 mask_missing: bool = True, normalize_features: bool = True, loss=None):
        check_sizes(self, num_nodes, num_relations, hidden_channels)
        relation_channels = optional_positive_int(self, 'relation_channels', relation_channels)
        num_experts = positive_int(self, 'num_experts', num_experts)
        num_heads = positive_int(self, 'num_heads', num_heads)
        club_weight = real(self, 'club_weight', club_weight, 0.0)
        noise_epsilon = real(self, 'noise_epsilon', noise_epsilon, 0.0)
        label_smoothing, input_dropout, hidden_dropout1, hidden_dropout2, fusion_dropout = (
            probability(self, name, value) for name, value in (
                ('label_smoothing', label_smoothing), ('input_dropout', input_dropout),
                ('hidden_dropout1', hidden_dropout1), ('hidden_dropout2', hidden_dropout2),
                ('fusion_dropout', fusion_dropout)))
        super().__init__(num_nodes, num_relations, hidden_channels, None,
                         loss or BCELoss(label_smoothing), inverse_relations=True)
        features = dict(features or {})
        self.modalities = register_modalities(self, num_nodes, features, masks,
                                              reserved=(STRUCTURE, JOINT))
        if normalize_features:
            for m in self.modalities:
                self._buffers[f'x_{m}'] = F.normalize(getattr(self, f'x_{m}'), dim=-1)
        names = [STRUCTURE] + self.modalities + [JOINT]
        scorers = list(names if scorers is None else scorers)
        bad = [s for s in scorers if s not in names]
        if not scorers or bad or len(set(scorers)) != len(scorers):
            raise ValueError(f"scorers must be distinct names among {names}, got {scorers}")
        self.scorers = tuple(s for s in names if s in scorers)
        self.active_scorers = self.scorers
        # The modality slots computed: all when the joint modality is scored.
        self.slots = [s for s in names[:-1] if JOINT in self.scorers or s in self.scorers]
        d = hidden_channels
        dr = self.relation_channels = int(relation_channels or hidden_channels)
        S, R2 = len(self.slots), 2 * num_relations
        self.num_experts, self.club_weight = int(num_experts), float(club_weight)
        self.joint_training, self.mask_missing = bool(joint_training), bool(mask_missing)
        self.node_emb = torch.nn.Embedding(num_nodes, d)
        self.experts = torch.nn.ModuleDict({
            m: ModalityExperts(d if m == STRUCTURE else features[m].size(1), d, num_experts,
                               noisy_gating, noise_epsilon)
            for m in self.slots
        })
        if relation_temperature:
            self.rel_temperature = torch.nn.Parameter(torch.empty(R2))
        else:
            self.register_parameter('rel_temperature', None)
        self.rel_emb = torch.nn.Parameter(torch.empty(S, R2, dr))
        if JOINT in self.scorers:
            self.entity_fusion = AttentionFusion(d, d, S, num_heads, fusion_dropout,
                                                 adaptive_fusion, mask_missing)
            self.relation_fusion = AttentionFusion(dr, dr, S, num_heads, fusion_dropout,
                                                   adaptive_fusion, mask_missing=False)
        self.tucker = torch.nn.ModuleDict({
            s: TuckERInteraction(d, dr, input_dropout, hidden_dropout1, hidden_dropout2,
                                 batch_norm=True)
            for s in self.scorers
        })
        self.pairs = [(i, j) for i, j in itertools.permutations(range(num_experts), 2)]
        self.estimators = torch.nn.ModuleDict({
            m: torch.nn.ModuleList([CLUBEstimator(d, d) for _ in self.pairs])
            for m in self.slots
        } if self.pairs and self.club_weight > 0 else {})
        self._club_index: Optional[Tensor] = None
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_normal_(self.node_emb.weight)
        torch.nn.init.xavier_normal_(self.rel_emb.view(-1, self.relation_channels))
        if self.rel_temperature is not None:
            torch.nn.init.zeros_(self.rel_temperature)  # sigma(0) = 0.5
        if JOINT in self.scorers:
            self.entity_fusion.reset_parameters()
            self.relation_fusion.reset_parameters()
        for group in (self.experts, self.tucker):
            for module in group.values():
                module.reset_parameters()
        for pairs in self.estimators.values():
            for est in pairs:
                est.reset_parameters()

    # Representations ##########################################################################

    def _slot_input(self, m: str, index: Optional[Tensor]) -> Tensor:
        x = self.node_emb.weight if m == STRUCTURE else getattr(self, f'x_{m}')
        return x if index is None else x[index]

    def slot_mask(self, index: Optional[Tensor] = None) -> Tensor:
        r"""Which modality slots the entities have, :math:`[*, S]` (all True for the
        structure, and everywhere with :obj:`mask_missing=False`)."""
        shape = (self.num_nodes, ) if index is None else tuple(index.shape)
        cols = []
        for m in self.slots:
            if m == STRUCTURE or not self.mask_missing:
                cols.append(torch.ones(shape, dtype=torch.bool, device=self.rel_emb.device))
            else:
                mask = getattr(self, f'mask_{m}')
                cols.append(mask if index is None else mask[index])
        return torch.stack(cols, dim=-1)

    def relation_temperature(self, rel_type: Tensor) -> Optional[Tensor]:
        r""":math:`\sigma(\varepsilon_r)` of relation ids in :math:`[0, 2R)` (:obj:`None`
        without relation temperatures)."""
        if self.rel_temperature is None:
            return None
        return torch.sigmoid(self.rel_temperature[rel_type])

    def modality_embeddings(self, index: Optional[Tensor] = None,
                            rel_type: Optional[Tensor] = None, noise: Optional[bool] = None
                            ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""ReMoKE for the entities :obj:`index` (all if :obj:`None`): the modality
        embeddings :math:`\hat{\mathbf{e}}_{m,r}` :math:`[*, S, d]`, the expert outputs
        :math:`[*, S, K, d]`, the gates :math:`[*, S, K]` and the slot mask :math:`[*, S]`.
        With :obj:`rel_type` (same shape as :obj:`index`) the gates use the relation
        temperature, as for query entities; without, temperature 1, as for candidates. With
        :obj:`mask_missing`, entities lacking a modality skip its experts and get zeros in
        its slot (which nothing reads)."""
        tau = None if rel_type is None else self.relation_temperature(rel_type)
        mask = self.slot_mask(index)
        outs = []
        for s, m in enumerate(self.slots):
            x, present = self._slot_input(m, index), mask[..., s]
            if m == STRUCTURE or not self.mask_missing or bool(present.all()):
                outs.append(self.experts[m](x, tau, noise))
                continue
            # Only the entities that have the modality go through its experts (the others
            # are masked everywhere): zero embeddings and gates stand in for them.
            sub = self.experts[m](x[present], None if tau is None else tau[present], noise)
            full = []
            for part in sub:
                out = part.new_zeros(present.shape + part.shape[1:])
                out[present] = part
                full.append(out)
            outs.append(full)
        return (torch.stack([o[0] for o in outs], dim=-2),
                torch.stack([o[1] for o in outs], dim=-3),
                torch.stack([o[2] for o in outs], dim=-2), mask)

    def relation_embeddings(self, rel_type: Tensor) -> Tensor:
        r"""The per-modality relation embeddings :math:`\mathbf{r}_m` :math:`[*, S, d_r]`."""
        return self.rel_emb[:, rel_type].movedim(0, -2)

    def joint(self, stack: Tensor, mask: Optional[Tensor] = None,
              relation: bool = False) -> Tuple[Tensor, Tensor]:
        r"""MuJoD's joint embedding of a stack of entity (or, with :obj:`relation=True`,
        relation) modality embeddings, and its attention weights :math:`[*, H, S]`."""
        fusion = self.relation_fusion if relation else self.entity_fusion
        return fusion(stack, None if relation else mask)

    def _candidate_tables(self, with_experts: bool = False) -> Dict[str, Tensor]:
        E, V, _, mask = self.modality_embeddings(None, None)
        out = {'stack': E, 'mask': mask}
        if JOINT in self.scorers:
            out['joint'] = self.joint(E, mask)[0]
        if with_experts:
            out['experts'] = V
        return out

    def prepare_scoring(self) -> Dict[str, Tensor]:
        r"""The candidate side of every scorer for all entities (once per evaluation)."""
        return self._candidate_tables()

    # Scoring ##################################################################################

    def _scorer_inputs(self, names: Sequence[str], q_stack: Tensor, q_mask: Tensor,
                       rel_type: Tensor) -> Iterator[Tuple[str, Optional[Tensor], Tensor,
                                                           Tensor, Optional[int]]]:
        r"""Per scorer: the query rows that it judges (:obj:`None`: all), its query entity
        and relation embeddings for them, and the slot of its candidate mask (:obj:`None`:
        every candidate)."""
        r_stack = self.relation_embeddings(rel_type)
        for s in names:
            if s == JOINT:
                yield (s, None, self.joint(q_stack, q_mask)[0],
                       self.joint(r_stack, relation=True)[0], None)
                continue
            i = self.slots.index(s)
            if s == STRUCTURE or not self.mask_missing:
                yield s, None, q_stack[..., i, :], r_stack[..., i, :], None
            else:
                rows = q_mask[..., i].nonzero().view(-1)
                yield s, rows, q_stack[rows, i], r_stack[rows, i], i

    def _combine(self, parts: List[Tuple[Optional[Tensor], Tensor, Optional[Tensor]]],
                 shape: Tuple[int, ...]) -> Tensor:
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

    def _query_logits(self, entity_index: Tensor, rel_type: Tensor,
                      tables: Dict[str, Tensor], names: Sequence[str]
                      ) -> List[Tuple[str, Optional[Tensor], Tensor, Optional[Tensor]]]:
        q_stack, _, _, q_mask = self.modality_embeddings(entity_index, rel_type)
        out = []
        for s, rows, q, r, slot in self._scorer_inputs(names, q_stack, q_mask, rel_type):
            table = tables['joint'] if s == JOINT else tables['stack'][:, self.slots.index(s)]
            weight = None if slot is None else tables['mask'][:, slot].to(q.dtype)[None]
            out.append((s, rows, self.tucker[s].score_tails(q, r, table), weight))
        return out

    def _score_tails(self, head_index: Tensor, rel_type: Tensor, cache: Any = None) -> Tensor:
        tables = self.prepare_scoring() if cache is None else cache
        parts = self._query_logits(head_index, rel_type, tables, self.active_scorers)
        return self._combine([p[1:] for p in parts], (head_index.numel(), self.num_nodes))

    def _forward(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor) -> Tensor:
        h, r, t = torch.broadcast_tensors(head_index, rel_type, tail_index)
        shape = h.shape
        h, r, t = h.reshape(-1), r.reshape(-1), t.reshape(-1)
        q_stack, _, _, q_mask = self.modality_embeddings(h, r)
        t_stack, _, _, t_mask = self.modality_embeddings(t, None)
        parts = []
        for s, rows, q, rel, slot in self._scorer_inputs(self.active_scorers, q_stack, q_mask,
                                                         r):
            if s == JOINT:
                cand = self.joint(t_stack, t_mask)[0]
            else:
                i = self.slots.index(s)
                cand = t_stack[:, i] if rows is None else t_stack[rows, i]
            weight = None if slot is None else t_mask[rows, slot].to(q.dtype)
            parts.append((rows, self.tucker[s](q, rel, cand), weight))
        return self._combine(parts, (h.numel(), )).view(shape)

    @contextlib.contextmanager
    def use_scorers(self, scorers: Sequence[str]):
        r"""Scores (e.g. evaluates) with a subset of the trained scorers inside the
        :obj:`with` block: :obj:`with model.use_scorers(["text"]): ...`."""
        bad = [s for s in scorers if s not in self.scorers]
        if not scorers or bad:
            raise ValueError(f"scorers must be among the trained ones {list(self.scorers)}, "
                             f"got {list(scorers)}")
        old = self.active_scorers
        self.active_scorers = tuple(s for s in self.scorers if s in scorers)
        try:
            yield self
        finally:
            self.active_scorers = old

    # Training #################################################################################

    def club_loss(self, experts: Tensor, mask: Tensor) -> Tensor:
        r""":math:`\mathcal{L}_{club}` (Eq. 8) of expert outputs :math:`[n, S, K, d]` of
        :math:`n` entities with slot mask :math:`[n, S]`; no gradient reaches the
        estimators."""
        total = experts.new_zeros(())
        if not self.pairs:
            return total
        for s, m in enumerate(self.slots):
            v = experts[:, s][mask[:, s]]
            for (i, j), est in zip(self.pairs, self.estimators[m]):
                total = total + est(v[:, i], v[:, j], frozen=True)
        return total / self.num_experts**2

    def _loss_1n(self, entity_index: Tensor, rel_type: Tensor, target: Tensor) -> Tensor:
        r"""The training loss :math:`\mathcal{L}_{kgc} + \lambda\mathcal{L}_{club}` of the
        queries :math:`(e, r, ?)` (relation ids in :math:`[0, 2R)`) against their
        :obj:`[B, N]` targets."""
        if target.shape != (entity_index.numel(), self.num_nodes):
            raise ValueError(f"targets must be [{entity_index.numel()}, {self.num_nodes}], "
                             f"got {tuple(target.shape)}")
        tables = self._candidate_tables(with_experts=self.club_weight > 0)
        parts = self._query_logits(entity_index, rel_type, tables, self.scorers)
        if self.joint_training:
            loss = sum((self.loss_fn(logits, target if rows is None else target[rows], w)
                        for _, rows, logits, w in parts if logits.size(0)),
                       target.new_zeros((), dtype=parts[0][2].dtype))
        else:
            combined = self._combine([p[1:] for p in parts], tuple(target.shape))
            loss = self.loss_fn(combined, target, None)
        self._club_index = torch.unique(entity_index)
        if self.club_weight > 0 and self.pairs:  # ExID (Eq. 8)
            idx = self._club_index
            loss = loss + self.club_weight * self.club_loss(tables['experts'][idx],
                                                            tables['mask'][idx])
        return loss

    def auxiliary_parameters(self) -> List[torch.nn.Parameter]:
        r"""The CLUB variational networks, trained by :meth:`auxiliary_loss` only."""
        return list(self.estimators.parameters())

    def auxiliary_loss(self) -> Optional[Tensor]:
        r"""The estimators' negative log-likelihood (Eq. 9) on the expert outputs of the
        last :meth:`loss_1n` batch's query entities, recomputed without gradient (after the
        main step, as the authors do); :obj:`None` before any batch or without ExID."""
        if self._club_index is None or not self.auxiliary_parameters():
            return None
        idx = self._club_index
        with torch.no_grad():
            values = torch.stack([self.experts[m].experts(self._slot_input(m, idx))
                                  for m in self.slots], dim=1)
            mask = self.slot_mask(idx)
        losses = []
        for s, m in enumerate(self.slots):
            v = values[:, s][mask[:, s]]
            if v.size(0) == 0:
                continue
            for (i, j), est in zip(self.pairs, self.estimators[m]):
                losses.append(est.learning_loss(v[:, i], v[:, j]))
        return torch.stack(losses).mean() if losses else None

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, hidden_channels={self.hidden_channels}, '
                f'modalities={self.modalities}, scorers={list(self.scorers)}, '
                f'num_experts={self.num_experts})')
