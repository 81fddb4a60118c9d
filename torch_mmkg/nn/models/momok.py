import contextlib
import itertools
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.club import CLUBEstimator
from torch_mmkg.nn.fusion import AllSlots, AttentionFusion
from torch_mmkg.nn.interactions import EnsembleInteraction, TuckERInteraction
from torch_mmkg.nn.kge.base import KGEModel, ScoringCache
from torch_mmkg.nn.loss import BCELoss, SoftmaxCrossEntropyLoss
from torch_mmkg.nn.representation import ExpertRepresentation
from torch_mmkg.nn.validation import (check_sizes, choice, optional_positive_int,
                                      positive_int, probability, real)
from ._modalities import FromDataMixin

STRUCTURE, JOINT = 'structure', 'joint'
#: ExID's expert pairs: one random pair per step and one variational network per modality
#: (the authors' code), every ordered pair with one network per modality (the paper's Eq. 8),
#: or every ordered pair with a network each (this library before 0.2).
CLUB_PAIRS = ('random', 'all', 'per_pair')


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
    :math:`\mathcal{L}_{kgc} = \sum_m \mathcal{L}_m` of softmax cross-entropies over all
    entities, as the paper's Eqs. 5–6 write them (the authors' code uses binary
    cross-entropies: :obj:`objective="bce"`), with label smoothing. A triple's score is the
    mean of the scorers' probabilities,
    :math:`\frac{1}{|M_{ht}|} \sum_{m \in M_{ht}} \sigma(\mathcal{S}_m)` as in the authors'
    code, returned shifted by :math:`-1` and computed as :math:`-\frac{1}{|M_{ht}|}\sum_m
    \sigma(-\mathcal{S}_m)`, which ranks identically but keeps float resolution among the
    top candidates, where :math:`\sigma` saturates.

    **ExID** (Eqs. 7–10). The total loss is :math:`\mathcal{L}_{kgc} + \lambda
    \mathcal{L}_{club}` over the distinct query entities of the batch
    (:class:`~torch_mmkg.nn.CLUBEstimator`, one variational network :math:`\mathcal{Q}_{\theta,
    m}` per modality). By default (:obj:`club_pairs="random"`, the authors' code) one random
    pair :math:`i \neq j` of experts is drawn per step for all modalities and
    :math:`\mathcal{L}_{club} = \frac{1}{|M|}\sum_m I_{\mathrm{CLUB}}(\mathcal{V}_{m,i};
    \mathcal{V}_{m,j})`; :obj:`club_pairs="all"` is the paper's Eq. 8,
    :math:`\frac{1}{K^2}\sum_m \sum_{i \neq j} I_{\mathrm{CLUB}}(\mathcal{V}_{m,i};
    \mathcal{V}_{m,j})` (:math:`K(K-1)` bounds per modality and step, about twice the
    effective :math:`\lambda` at :math:`K=3`), and :obj:`"per_pair"` the same sum with one
    network per ordered pair (this library before 0.2). The variational networks get no
    gradient from this loss:
    they are the :meth:`auxiliary_parameters`, fitted alternately by :meth:`auxiliary_loss`
    (Eq. 9) with their own optimiser, which :class:`~torch_mmkg.training.Trainer` does
    after every step. By hand::

        loss = model.loss_1n(entity, rel, target)   # L_kgc + lambda * L_club
        loss.backward(); optimizer.step()           # optimizer over the main parameters
        est_opt.zero_grad(); model.auxiliary_loss(entity).backward(); est_opt.step()

    **As a composition** it is an :class:`~torch_mmkg.nn.ExpertRepresentation` (ReMoKE, with
    relation-aware queries), every slot a view (:class:`~torch_mmkg.nn.fusion.AllSlots`),
    per-modality relation embeddings, and an
    :class:`~torch_mmkg.nn.interactions.EnsembleInteraction` of TuckER scorers (MuJoD, the
    joint view fused by :class:`~torch_mmkg.nn.fusion.AttentionFusion`); ExID is its
    :meth:`query_terms` and auxiliary objective.

    **Missing modalities.** With :obj:`mask_missing=True` an entity without modality
    :math:`m` is never scored by :math:`\mathcal{S}_m`: a query lacking :math:`m` has no
    :math:`\mathcal{L}_m` term and no vote from :math:`\mathcal{S}_m`, a candidate lacking
    :math:`m` is left out of :math:`\mathcal{L}_m`'s columns and its final score averages
    only the scorers that can judge it (:math:`M_{ht}`: structure and joint always, a feature
    modality when both entities have it); the joint embedding fuses only the modalities the
    entity has; ExID uses only entities that have the modality. An entity no enabled scorer
    can judge ranks last. :obj:`mask_missing=False` scores the zero (missing) features like
    real ones, as the authors' code does. The average over :math:`M_{ht}` gives a candidate
    with a feature modality one more vote than one without: early in training, while the
    feature scorers are still weak, this pulls such candidates towards those scorers'
    (poorer) judgement; :meth:`use_scorers` evaluates with a subset of the scorers, e.g. to
    check whether the ensemble already helps.

    **Ablations** (the paper's Table 2) are switches: :obj:`scorers` (e.g.
    :obj:`["structure"]` for a single-modality model, (1.1)–(1.4)),
    :obj:`relation_temperature=False` (2.1), :obj:`noisy_gating=False` (2.2),
    :obj:`adaptive_fusion=False` (2.3), :obj:`joint_training=False` (2.4: one
    cross-entropy on the mean of the scorers' logits, which is also the inference score,
    instead of one per modality) and :obj:`club_weight=0` (2.5, w/o ExID).
    :meth:`use_scorers` evaluates a trained model with a subset of its scorers (Table 4).

    **Sources.** Where the paper is silent the defaults follow the authors' code
    (:obj:`init="authors"`: expert weights :math:`\mathcal{N}(0, 0.02^2)`, TuckER cores
    Xavier-uniform, :math:`\varepsilon_r \sim \mathcal{N}(0, 1)`, :math:`d_r = 256`;
    :obj:`finetune_features=True`; TuckER's second dropout on the relation's core matrix);
    where paper and code differ, a switch says which is which (:obj:`objective`,
    :obj:`club_pairs`).

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations :math:`R` (inverses are added).
        hidden_channels (int): The entity embedding size :math:`d` of every modality.
        features (Mapping[str, Tensor], optional): Per modality, the :obj:`[N, F_m]`
            features (none: a structure-only mixture of experts). (default: :obj:`None`)
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability. (default: all present)
        relation_channels (int, optional): :math:`d_r`. (default: :obj:`256`, the authors'
            :obj:`r_dim`; :obj:`hidden_channels` with :obj:`init="library"`)
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
        loss (torch.nn.Module, optional): Replaces the default loss of :obj:`objective`
            (called as :obj:`loss(logits, target, candidate_weight)`).
        objective (str, optional): :obj:`"softmax"`, the paper's Eqs. 5–6 (a softmax
            cross-entropy over all entities per scorer,
            :class:`~torch_mmkg.nn.loss.SoftmaxCrossEntropyLoss`), or :obj:`"bce"`, the
            authors' code (binary cross-entropy, :class:`~torch_mmkg.nn.loss.BCELoss`), both
            with :obj:`label_smoothing`. On MKG-W (d=64, batch 128, lr 3e-3, 4 CPU minutes,
            :obj:`init="library"`) the softmax reached test MRR 18–19, the BCE 6.65; the
            quick start (batch 512, lr 1e-2, 7.5 minutes) reaches 26.1–27.0.
            (default: :obj:`"softmax"`)
        finetune_features (bool, optional): Fine-tune the (normalised) feature tables with
            the model, as the authors' code does; :obj:`False` keeps them frozen.
            (default: :obj:`True`)
        dropout_target (str, optional): Where :obj:`hidden_dropout1` applies:
            :obj:`"matrix"` (the relation's core matrix, the authors' and TuckER's code) or
            :obj:`"query"` (the contracted query), see
            :class:`~torch_mmkg.nn.interactions.TuckERInteraction`. (default: :obj:`"matrix"`)
        club_pairs (str, optional): :obj:`"random"` (the authors' code), :obj:`"all"` (the
            paper's Eq. 8) or :obj:`"per_pair"` (see ExID above). (default: :obj:`"random"`)
        init (str, optional): :obj:`"authors"` (their code's initialisations and
            :math:`d_r`) or :obj:`"library"` (experts :math:`\mathcal{N}(0, 1/F)`, TuckER
            cores :math:`U(\pm 1/\sqrt{d})`, :math:`\varepsilon_r = 0`, :math:`d_r = d`:
            this library before 0.2). (default: :obj:`"authors"`)

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`modality_embeddings` :math:`[*, S, d]` (and experts
          :math:`[*, S, K, d]`, gates :math:`[*, S, K]`, mask :math:`[*, S]`)
    """
    one_to_n = True
    legacy_keys = KGEModel.legacy_keys + (
        (r'experts\.', 'representation.experts.'),
        (r'rel_temperature$', 'representation.rel_temperature'),
        (r'entity_fusion\.', 'interaction.entity_fusion.'),
        (r'relation_fusion\.', 'interaction.relation_fusion.'),
        (r'tucker\.', 'interaction.scorers.'))

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
                 mask_missing: bool = True, normalize_features: bool = True, loss=None,
                 objective: str = 'softmax', finetune_features: bool = True,
                 dropout_target: str = 'matrix', club_pairs: str = 'random',
                 init: str = 'authors'):
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
        choice(self, 'objective', objective, ('softmax', 'bce'))
        choice(self, 'dropout_target', dropout_target, ('matrix', 'query'))
        choice(self, 'club_pairs', club_pairs, CLUB_PAIRS)
        choice(self, 'init', init, ('authors', 'library'))
        features = dict(features or {})
        for m in (STRUCTURE, JOINT):
            if m in features:
                raise ValueError(f"'{m}' is a reserved name here ({[STRUCTURE, JOINT]}); "
                                 f"rename that modality")
        modalities = list(features)
        names = [STRUCTURE] + modalities + [JOINT]
        scorers = list(names if scorers is None else scorers)
        bad = [s for s in scorers if s not in names]
        if not scorers or bad or len(set(scorers)) != len(scorers):
            raise ValueError(f"scorers must be distinct names among {names}, got {scorers}")
        scorers = [s for s in names if s in scorers]
        # The modality slots computed: all when the joint modality is scored.
        slots = [s for s in names[:-1] if JOINT in scorers or s in scorers]
        d = hidden_channels
        dr = int(relation_channels or (256 if init == 'authors' else hidden_channels))
        R2 = 2 * num_relations
        representation = ExpertRepresentation(
            num_nodes, d, features, masks, slots, R2 if relation_temperature else None,
            num_experts, noisy_gating, noise_epsilon, mask_missing, normalize_features,
            reserved=(JOINT, ), trainable_features=finetune_features,
            expert_std=0.02 if init == 'authors' else None)
        rel_emb = torch.nn.Parameter(torch.empty(len(slots), R2, dr))
        fusions = {}
        if JOINT in scorers:
            fusions = dict(entity_fusion=AttentionFusion(d, d, len(slots), num_heads,
                                                         fusion_dropout, adaptive_fusion,
                                                         mask_missing),
                           relation_fusion=AttentionFusion(dr, dr, len(slots), num_heads,
                                                           fusion_dropout, adaptive_fusion,
                                                           mask_missing=False))
        tucker = {s: TuckERInteraction(d, dr, input_dropout, hidden_dropout1, hidden_dropout2,
                                       batch_norm=True, dropout_target=dropout_target,
                                       core_init='xavier' if init == 'authors' else 'uniform')
                  for s in scorers}
        interaction = EnsembleInteraction(slots, tucker, joint_training=joint_training,
                                          **fusions)
        pairs = list(itertools.permutations(range(num_experts), 2))
        # One variational network per modality (paper and authors), or per ordered pair.
        num_nets = len(pairs) if club_pairs == 'per_pair' else 1
        estimators = torch.nn.ModuleDict({
            m: torch.nn.ModuleList([CLUBEstimator(d, d) for _ in range(num_nets)])
            for m in slots
        } if pairs and club_weight > 0 else {})
        if loss is None:
            loss = (SoftmaxCrossEntropyLoss(label_smoothing) if objective == 'softmax' else
                    BCELoss(label_smoothing))
        super().__init__(num_nodes, num_relations, hidden_channels, interaction,
                         loss, inverse_relations=True,
                         representation=representation, fusion=AllSlots(),
                         relation_embedding=False)
        self.rel_emb = rel_emb
        self.relation_channels = dr
        self.num_experts, self.club_weight = int(num_experts), float(club_weight)
        self.joint_training, self.mask_missing = bool(joint_training), bool(mask_missing)
        self.pairs = pairs
        self.club_pairs, self.init_style = club_pairs, init
        self._club_pair: Optional[Tuple[int, int]] = None
        self.estimators = estimators
        self.reset_parameters()

    def reset_parameters(self):
        self.representation.reset_structure()
        torch.nn.init.xavier_normal_(self.rel_emb.view(-1, self.relation_channels))
        if self.rel_temperature is not None:
            if self.init_style == 'authors':  # nn.Embedding's N(0, 1), as the authors' rel_gate
                torch.nn.init.normal_(self.rel_temperature)
            else:
                torch.nn.init.zeros_(self.rel_temperature)  # sigma(0) = 0.5
        if JOINT in self.scorers:
            self.entity_fusion.reset_parameters()
            self.relation_fusion.reset_parameters()
        for module in self.experts.values():
            module.reset_parameters()
        for module in self.tucker.values():
            module.reset_parameters()
        for pairs in self.estimators.values():
            for est in pairs:
                est.reset_parameters()

    # The parts, in the paper's terms ###########################################################

    @property
    def slots(self) -> List[str]:
        r"""The modality slots computed (structure first)."""
        return self.representation.slots

    @property
    def scorers(self) -> Tuple[str, ...]:
        r"""The trained scorers."""
        return self.interaction.names

    @property
    def active_scorers(self) -> Tuple[str, ...]:
        r"""The scorers used for scoring (see :meth:`use_scorers`)."""
        return self.interaction.active

    @property
    def experts(self) -> torch.nn.ModuleDict:
        return self.representation.experts

    @property
    def rel_temperature(self) -> Optional[torch.nn.Parameter]:
        return self.representation.rel_temperature

    @property
    def tucker(self) -> torch.nn.ModuleDict:
        return self.interaction.scorers

    @property
    def entity_fusion(self) -> AttentionFusion:
        return self.interaction.entity_fusion

    @property
    def relation_fusion(self) -> AttentionFusion:
        return self.interaction.relation_fusion

    def relation_temperature(self, rel_type: Tensor) -> Optional[Tensor]:
        r""":math:`\sigma(\varepsilon_r)` of relation ids in :math:`[0, 2R)` (:obj:`None`
        without relation temperatures)."""
        return self.representation.temperature(rel_type)

    def slot_mask(self, index: Optional[Tensor] = None) -> Tensor:
        r"""Which modality slots the entities have, :math:`[*, S]`."""
        return self.representation.slot_mask(index)

    def modality_embeddings(self, index: Optional[Tensor] = None,
                            rel_type: Optional[Tensor] = None, noise: Optional[bool] = None
                            ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""ReMoKE for the entities :obj:`index` (all if :obj:`None`): the modality
        embeddings :math:`[*, S, d]`, the expert outputs :math:`[*, S, K, d]`, the gates
        :math:`[*, S, K]` and the slot mask :math:`[*, S]`; with :obj:`rel_type` at the
        query's relation temperature."""
        stack, mask, extras = self.representation.forward_with_extras(index, rel_type, noise)
        return stack, extras['experts'], extras['gates'], mask

    def relation(self, rel_type: Tensor) -> Tensor:
        r"""The per-modality relation embeddings :math:`\mathbf{r}_m` :math:`[*, S, d_r]`."""
        return self.rel_emb[:, rel_type].movedim(0, -2)

    relation_embeddings = relation

    def joint(self, stack: Tensor, mask: Optional[Tensor] = None,
              relation: bool = False) -> Tuple[Tensor, Tensor]:
        r"""MuJoD's joint embedding of a stack of entity (or, with :obj:`relation=True`,
        relation) modality embeddings, and its attention weights :math:`[*, H, S]`."""
        fusion = self.relation_fusion if relation else self.entity_fusion
        return fusion(stack, None if relation else mask)

    @contextlib.contextmanager
    def use_scorers(self, scorers: Sequence[str]):
        r"""Scores (e.g. evaluates) with a subset of the trained scorers inside the
        :obj:`with` block: :obj:`with model.use_scorers(["text"]): ...`."""
        bad = [s for s in scorers if s not in self.scorers]
        if not scorers or bad:
            raise ValueError(f"scorers must be among the trained ones {list(self.scorers)}, "
                             f"got {list(scorers)}")
        old = self.interaction.active
        self.interaction.active = tuple(s for s in self.scorers if s in scorers)
        try:
            yield self
        finally:
            self.interaction.active = old

    # ExID #####################################################################################

    def club_loss(self, experts: Tensor, mask: Tensor) -> Tensor:
        r""":math:`\mathcal{L}_{club}` (Eq. 8) of expert outputs :math:`[n, S, K, d]` of
        :math:`n` entities with slot mask :math:`[n, S]`; no gradient reaches the
        estimators."""
        total = experts.new_zeros(())
        if not self.pairs:
            return total
        if self.club_pairs == 'random':  # one pair for this step, for every modality
            self._club_pair = tuple(torch.randperm(self.num_experts)[:2].tolist())
        for s, m in enumerate(self.slots):
            v = experts[:, s][mask[:, s]]
            for (i, j), est in self._estimator_pairs(m):
                total = total + est(v[:, i], v[:, j], frozen=True)
        if self.club_pairs == 'random':
            return total / len(self.slots)
        return total / self.num_experts**2

    def _estimator_pairs(self, m: str):
        if self.club_pairs == 'per_pair':
            return zip(self.pairs, self.estimators[m])
        if self.club_pairs == 'all':
            return ((pair, self.estimators[m][0]) for pair in self.pairs)
        pair = self._club_pair or self.pairs[0]
        return [(pair, self.estimators[m][0])]

    def query_terms(self, cache: ScoringCache, entity_index: Tensor) -> Dict[str, Tensor]:
        r""":math:`\lambda \mathcal{L}_{club}` over the distinct query entities of the
        batch, from the expert outputs of the same forward pass (1-N) or of the query
        entities (negative sampling)."""
        if not (self.club_weight > 0 and self.pairs):
            return {}
        idx = torch.unique(entity_index)
        if cache is None:  # a negative-sampling batch: the experts of its query entities
            _, mask, extras = self.representation.forward_with_extras(idx)
            return {'club': self.club_weight * self.club_loss(extras['experts'], mask)}
        return {'club': self.club_weight * self.club_loss(cache.extras['experts'][idx],
                                                          cache.mask[idx])}

    def auxiliary_parameters(self) -> List[torch.nn.Parameter]:
        r"""The CLUB variational networks, trained by :meth:`auxiliary_loss` only."""
        return list(self.estimators.parameters())

    def auxiliary_loss(self, entity_index: Optional[Tensor] = None) -> Optional[Tensor]:
        r"""The estimators' negative log-likelihood (Eq. 9) on the expert outputs of the
        query entities :obj:`entity_index` of a training batch, recomputed without gradient
        (after the main step, as the authors do); :obj:`None` without ExID or entities."""
        if entity_index is None or not self.auxiliary_parameters():
            return None
        idx = torch.unique(entity_index)
        with torch.no_grad():
            values = torch.stack([self.experts[m].experts(self.representation.slot_input(m, idx))
                                  for m in self.slots], dim=1)
            mask = self.slot_mask(idx)
        losses = []
        for s, m in enumerate(self.slots):
            v = values[:, s][mask[:, s]]
            if v.size(0) == 0:
                continue
            for (i, j), est in self._estimator_pairs(m):
                losses.append(est.learning_loss(v[:, i], v[:, j]))
        return torch.stack(losses).mean() if losses else None

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, hidden_channels={self.hidden_channels}, '
                f'modalities={self.modalities}, scorers={list(self.scorers)}, '
                f'num_experts={self.num_experts})')
