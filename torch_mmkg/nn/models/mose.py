from typing import List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.fusion import AllSlots
from torch_mmkg.nn.interactions import ComplExInteraction, EnsembleInteraction
from torch_mmkg.nn.kge.base import KGEModel, ScoringCache
from torch_mmkg.nn.loss import SoftmaxCrossEntropyLoss, n3_regularization
from torch_mmkg.nn.representation import EntityRepresentation
from torch_mmkg.nn.validation import check_sizes, choice, positive_int, real
from ._modalities import FromDataMixin

__all__ = ['MoSE', 'MoSEEnsemble', 'ModalitySplitRepresentation']

#: The splits an ensemble may be fitted on: validation only.
FIT_SPLITS = ('val', 'val_clean')
METHODS = ('average', 'boosting', 'meta')


class ModalitySplitRepresentation(EntityRepresentation):
    r"""MoSE's modality-split entity representation: slot 0 the structural embedding
    :math:`\mathbf{e}_s`, and for each modality :math:`m`

    .. math::
        \mathbf{e}^m = \big[(1 - \alpha)\, \mathbf{e}_s + \alpha\, \mathbf{x}_m
        \mathbf{W}_m\big] / \tau,

    with :math:`\mathbf{W}_m` a bias-free linear map (Xavier-uniform) and :math:`\tau` the
    confidence constraint. Slots an entity lacks are zero (masked, never scored).

    Args:
        num_nodes (int): :math:`N`.
        channels (int): The (real) width :math:`2d` of a slot.
        features (Mapping[str, Tensor], optional): :obj:`[N, F_m]` per modality.
        masks (Mapping[str, Tensor], optional): :obj:`[N]` availability per modality.
        alpha (float, optional): :math:`\alpha \in [0, 1]`. (default: :obj:`1.0`)
        scale (float, optional): :math:`\tau > 0`. (default: :obj:`20.0`)
        init_size (float, optional): The structural table is
            :math:`\mathcal{N}(0, 1) \cdot` :obj:`init_size` (kbc's). (default: :obj:`1e-3`)
    """
    def __init__(self, num_nodes: int, channels: int,
                 features: Optional[Mapping[str, Tensor]] = None,
                 masks: Optional[Mapping[str, Tensor]] = None, alpha: float = 1.0,
                 scale: float = 20.0, init_size: float = 1e-3):
        size = float(init_size)

        def init(weight: Tensor):
            with torch.no_grad():
                weight.normal_().mul_(size)
        super().__init__(num_nodes, channels, features, masks, projection_layers=1,
                         projection_bias=False, init=init)
        self.alpha, self.scale = float(alpha), float(scale)

    def reset_encoders(self):
        if self.projection is not None:
            for mlp in self.projection.mlps.values():
                torch.nn.init.xavier_uniform_(mlp[0].weight)

    def forward(self, index: Optional[Tensor] = None,
                rel_type: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        stack, mask = super().forward(index)
        if stack.size(-2) == 1:
            return stack, mask
        s = stack[..., :1, :]
        split = ((1.0 - self.alpha) * s + self.alpha * stack[..., 1:, :]) / self.scale
        split = split * mask[..., 1:, None].to(split.dtype)
        return torch.cat([s, split], dim=-2), mask

    def extra_repr(self) -> str:
        return (f'{self.num_nodes}, {self.channels}, slots={self.slots}, alpha={self.alpha}, '
                f'scale={self.scale}')


class MoSE(FromDataMixin, KGEModel):
    r"""The MoSE model from the `"MoSE: Modality Split and Ensemble for Multimodal Knowledge
    Graph Completion" <https://aclanthology.org/2022.emnlp-main.719>`_ paper (EMNLP 2022),
    for any number of modalities: one ComplEx model per modality over modality-split entity
    embeddings and relation tables, trained jointly, and ensembled at inference.

    **Modality split** (:class:`ModalitySplitRepresentation`): the structure
    :math:`\mathbf{e}_s \in \mathbb{C}^d` and, per modality :math:`m`,

    .. math::
        \mathbf{e}^m = \big[(1 - \alpha)\, \mathbf{e}_s + \alpha\, \mathbf{X}_m
        \mathbf{W}_m\big] / \tau,

    with :math:`\alpha = 1` (pure modality) and the confidence constraint :math:`\tau = 20`
    (the code's :obj:`scale`). Each modality has its own relation table :math:`\mathbf{r}^m`
    (with reciprocal relations).

    **Scores and loss.** :math:`\phi_m(h, r, t) = \mathrm{Re}(\langle \mathbf{h}^m,
    \mathbf{r}^m, \overline{\mathbf{t}^m}\rangle)` (ComplEx), and

    .. math::
        \mathcal{L} = \sum_{m \in \{s\} \cup M} \Big[\mathrm{CE}_{1\text{-}N}\big(
        \phi_m(h, r, \cdot), t\big) + \lambda \sum_{x \in \{\mathbf{h}^m,
        \mathbf{r}^m\}} \sum_k |x_k|^3\Big],

    the softmax cross-entropy over all entities and the N3 penalty on the moduli, averaged over
    the queries. The library's 1-N regime scores each query :math:`(e, r, ?)` once with all its
    answers (kbc's training loop scores each triple, so a query weighs by its number of
    answers there) and penalises the query entity and relation (kbc also the answer entity of
    each triple: every entity of a triple is penalised once here, as the query of one of its
    two directions).

    **Inference.** The model's own score is MoSE-AI, the average of the modalities' scores
    :math:`\frac{1}{|M_{ht}|}\sum_m \phi_m`; :class:`MoSEEnsemble` fits MoSE-BI
    (relation-specific weights by boosting) and MoSE-MI (a meta-learner) on validation
    triples only. The authors' training loop prints the best single modality per triple
    (an oracle "upper bound", their README warns); not reproduced.

    **Missing modalities.** With :obj:`mask_missing=True` the modality slot of an entity
    lacking it is masked: its scorer judges no query or candidate lacking it and the average
    runs over the scorers that can. :obj:`mask_missing=False` scores the stored features of
    such entities (the authors fill them with random normal vectors, see
    :class:`~torch_mmkg.transforms.RandomFillModality`).

    Args:
        num_nodes (int): :math:`N`.
        num_relations (int): :math:`R` (reciprocals are added).
        hidden_channels (int): The complex rank :math:`d` (real width :math:`2d`).
        features (Mapping[str, Tensor], optional): :obj:`[N, F_m]` per modality.
        masks (Mapping[str, Tensor], optional): :obj:`[N]` availability per modality.
        alpha (float, optional): :math:`\alpha \in [0, 1]`. (default: :obj:`1.0`)
        scale (float, optional): :math:`\tau > 0`. (default: :obj:`20.0`)
        regularization_weight (float, optional): N3's :math:`\lambda \geq 0`.
            (default: :obj:`0.01`)
        init_size (float, optional): Entity and relation tables are
            :math:`\mathcal{N}(0, 1) \cdot` :obj:`init_size`. (default: :obj:`1e-3`)
        mask_missing (bool, optional): (default: :obj:`True`)
        loss (torch.nn.Module, optional): Replaces :obj:`SoftmaxCrossEntropyLoss()`.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` :math:`[B, N]`;
          :meth:`view_scores` :math:`[S, B, N]` and their judged mask
    """
    one_to_n = True

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Optional[Mapping[str, Tensor]] = None,
                 masks: Optional[Mapping[str, Tensor]] = None, alpha: float = 1.0,
                 scale: float = 20.0, regularization_weight: float = 0.01,
                 init_size: float = 1e-3, mask_missing: bool = True,
                 loss: Optional[torch.nn.Module] = None):
        check_sizes(self, num_nodes, num_relations, hidden_channels)
        alpha = real(self, 'alpha', alpha, 0.0, 1.0)
        scale = real(self, 'scale', scale, 0.0, low_open=True)
        init_size = real(self, 'init_size', init_size, 0.0, low_open=True)
        regularization_weight = real(self, 'regularization_weight', regularization_weight,
                                     0.0)
        width = 2 * int(hidden_channels)
        representation = ModalitySplitRepresentation(
            num_nodes, width, features, masks if mask_missing else None, alpha, scale,
            init_size)
        slots = representation.slots
        interaction = EnsembleInteraction(slots, {s: ComplExInteraction() for s in slots},
                                          joint_training=True, average='logit')
        # The penalty is N3 over complex moduli (the ensemble scores complex views).
        interaction.complex_entities = True
        super().__init__(num_nodes, num_relations, hidden_channels, interaction,
                         loss or SoftmaxCrossEntropyLoss(0.0), inverse_relations=True,
                         regularization='n3' if regularization_weight else None,
                         regularization_weight=regularization_weight,
                         representation=representation, fusion=AllSlots(),
                         relation_embedding=False)
        self.rel_emb = torch.nn.Parameter(torch.empty(len(slots), 2 * num_relations, width))
        self.init_size, self.mask_missing = init_size, bool(mask_missing)
        self.reset_parameters()

    def reset_parameters(self):
        self.representation.reset_structure()
        self.representation.reset_encoders()
        with torch.no_grad():
            self.rel_emb.normal_().mul_(self.init_size)

    @property
    def slots(self) -> List[str]:
        r"""The modality slots (structure first); one scorer each."""
        return self.representation.slots

    @property
    def alpha(self) -> float:
        return self.representation.alpha

    @property
    def scale(self) -> float:
        return self.representation.scale

    def relation(self, rel_type: Tensor) -> Tensor:
        r"""The per-modality relation embeddings :math:`\mathbf{r}^m`, :math:`[*, S, 2d]`
        (relation ids in :math:`[0, 2R)`)."""
        return self.rel_emb[:, rel_type].movedim(0, -2)

    def _split_views(self, *reps: Optional[Tensor]) -> Tuple[Tensor, ...]:
        r"""N3 per modality: every view of the entities and of the relation apart."""
        *entities, relation = reps
        out = []
        for x in entities:
            if x is not None:
                out.extend(x.unbind(-2))
        return tuple(out) + tuple(relation.unbind(-2))

    def penalty(self, *representations: Tensor) -> Tensor:
        r""":math:`\lambda \sum_x \frac{1}{B}\sum_b \sum_k |x_{bk}|^3` over the complex
        views :obj:`representations` (N3, kbc's)."""
        if not self._penalized:
            return representations[0].new_zeros(())
        return n3_regularization(*representations, weight=self.regularization_weight)

    @torch.no_grad()
    def view_scores(self, entity_index: Tensor, rel_type: Tensor,
                    cache: Optional[ScoringCache] = None) -> Tuple[Tensor, Tensor]:
        r"""Every modality's scores :math:`\phi_m(e, r, \cdot)` of queries :math:`(e, r,
        ?)` against all entities, :math:`[S, B, N]`, and where the modality judges the pair
        (both entities have it), a bool :math:`[S, B, N]` (relation ids in
        :math:`[0, 2R)`): the inputs of :class:`MoSEEnsemble`."""
        cache = self.prepare_scoring() if cache is None else cache
        q, q_mask = cache.table[entity_index], cache.mask[entity_index]
        r = self.relation(rel_type)
        table, mask = cache.table, cache.mask
        scores, judged = [], []
        for i, s in enumerate(self.slots):
            scores.append(self.interaction.scorers[s].score_tails(q[:, i], r[:, i],
                                                                  table[:, i]))
            judged.append(q_mask[:, i, None] & mask[None, :, i])
        return torch.stack(scores), torch.stack(judged)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, hidden_channels={self.hidden_channels}, '
                f'modalities={self.modalities}, alpha={self.alpha}, scale={self.scale})')


class _MetaLearner(torch.nn.Module):
    r"""MoSE-MI's meta-learner: :math:`f(\mathbf{s}) = \mathrm{ReLU}(\mathbf{w}_2^\top
    \mathrm{ReLU}(\mathbf{W}_1 \mathbf{s} + \mathbf{b}_1) + b_2)` of a pair's modality
    scores :math:`\mathbf{s}` (and their judged flags where modalities are masked)."""
    def __init__(self, in_channels: int, hidden_channels: int, output_relu: bool):
        super().__init__()
        self.lin1 = torch.nn.Linear(in_channels, hidden_channels)
        self.lin2 = torch.nn.Linear(hidden_channels, 1)
        self.output_relu = bool(output_relu)

    def forward(self, x: Tensor) -> Tensor:
        out = self.lin2(torch.relu(self.lin1(x))).squeeze(-1)
        return torch.relu(out) if self.output_relu else out


class MoSEEnsemble(torch.nn.Module):
    r"""MoSE's ensemble inference (Section 3.3 of the `"MoSE: Modality Split and Ensemble for
    Multimodal Knowledge Graph Completion" <https://aclanthology.org/2022.emnlp-main.719>`_
    paper), fitted on **validation triples only** and scored like a model: it has
    :meth:`prepare_scoring`, :meth:`score_tails` and :meth:`score_heads`, so
    :class:`~torch_mmkg.evaluation.RankingEvaluator` ranks it.

    For a query :math:`(e, r, ?)` (heads as tails of the reciprocal :math:`r + R`) with
    modality scores :math:`\phi_m` (:meth:`MoSE.view_scores`) and :math:`M_{ht}` the
    modalities that judge a pair:

    * **AI** (:obj:`method="average"`): :math:`\frac{1}{|M_{ht}|} \sum_{m \in M_{ht}}
      \phi_m`, the model's own score.
    * **BI** (:obj:`"boosting"`): :math:`\sum_{m \in M_{ht}} w_{r,m} \phi_m / \sum_{m \in
      M_{ht}} w_{r,m}` (the authors' :math:`\sum_m w_{r,m}\phi_m`, which ranks the same
      within a query when every modality judges: :math:`\sum_m w_{r,m} > 0` is one constant
      per query; a non-positive sum is not divided by), with relation-specific weights fitted
      by the authors' AdaBoost-style procedure per relation :math:`r \in [0, 2R)` on the
      validation queries of :math:`r` (fewer than :obj:`min_queries`: equal weights
      :math:`1/S`). Over the pairs :math:`(q, e)` of those queries, with the known answers
      of :math:`q` (train and validation only) and its answer :math:`t_q` itself counted as
      correct, a modality is right on a pair when :math:`\phi_m(q, e) < \phi_m(q, t_q)`:
      :math:`p_m(q, e) = +1`, else :math:`-1` (0 where :math:`m` does not judge it). With
      pair weights :math:`D_0 = 1/N`, for :math:`k = 1, \ldots, S` rounds

      .. math::
          \alpha_m = \frac{1}{2}\ln\frac{\sum_{p_m = +1} D_{k-1} + 10^{-10}}
          {\sum_{p_m = -1} D_{k-1} + 10^{-10}}, \qquad
          w_{r, b_k} \mathrel{+}= \alpha_{b_k}, \qquad
          D_k = \frac{D_{k-1}\, e^{-\alpha_{b_k} p_{b_k}}}{Z_k},

      where :math:`b_k` is the modality of largest :math:`\alpha` whose weight so far is
      :math:`\leq 0` (ties: the first) and :math:`Z_k` normalises :math:`D_k` to sum 1
      (:meth:`boosting` computes each round in one streamed pass over the validation
      queries, :math:`O(S \cdot B \cdot N)` memory, instead of storing :math:`D` and
      :math:`p` for all pairs).
    * **MI** (:obj:`"meta"`): a meta-learner MLP :math:`f` (hidden :obj:`hidden_channels`,
      ReLU; :obj:`output_relu=True` adds the authors' ReLU on the output) scores each pair
      from its modality scores (with their judged flags as inputs where the model masks
      modalities),
      trained by the softmax cross-entropy of :math:`f(\phi(q, \cdot))` against the answer
      of each validation query (unfiltered scores, as the authors), Adagrad
      (:obj:`lr` 0.1), batch 256, :obj:`epochs` 20. The authors keep the epoch of best
      *test* Hits@10; this fits a fixed number of epochs and never reads test triples.

    Deviations from the authors' scripts, on purpose: the filter of the validation queries
    in BI holds train and validation triples (theirs also the test triples), and MI's
    epoch is not chosen on test.

    Args:
        method (str, optional): :obj:`"average"`, :obj:`"boosting"` or :obj:`"meta"`.
            (default: :obj:`"boosting"`)
        min_queries (int, optional): BI's minimum of validation queries per relation
            (the authors' 10). (default: :obj:`10`)
        hidden_channels (int, optional): MI's hidden width (the authors' 32).
        epochs (int, optional): MI's epochs. (default: :obj:`20`)
        lr (float, optional): MI's Adagrad learning rate. (default: :obj:`0.1`)
        batch_size (int, optional): Queries per batch when scoring or fitting.
            (default: :obj:`256`)
        output_relu (bool, optional): MI's final ReLU, as the authors' code has it. It
            can kill the learner: when every output starts negative, all scores are 0 and
            get no gradient (on the planted test problem of this library it did for every
            seed tried, every candidate then tied); the paper's MLP is used by default.
            (default: :obj:`False`)
        seed (int, optional): MI's initialisation and shuffling. (default: :obj:`0`)

    Example::

        ens = MoSEEnsemble('boosting').fit(model, data, split='val_clean')
        result = RankingEvaluator(KnownTriples.from_data(data)).evaluate(
            ens, *get_triples(data, 'test'))
    """
    def __init__(self, method: str = 'boosting', min_queries: int = 10,
                 hidden_channels: int = 32, epochs: int = 20, lr: float = 0.1,
                 batch_size: int = 256, output_relu: bool = False, seed: int = 0):
        super().__init__()
        self.method = choice(self, 'method', method, METHODS)
        self.min_queries = positive_int(self, 'min_queries', min_queries)
        self.hidden_channels = positive_int(self, 'hidden_channels', hidden_channels)
        self.epochs = positive_int(self, 'epochs', epochs)
        self.lr = real(self, 'lr', lr, 0.0, low_open=True)
        self.batch_size = positive_int(self, 'batch_size', batch_size)
        self.output_relu, self.seed = bool(output_relu), int(seed)
        self.model: Optional[MoSE] = None
        self.register_buffer('weights', None)
        self.meta: Optional[_MetaLearner] = None
        self.mask_inputs = False

    # The model interface #####################################################################

    def _fitted(self) -> MoSE:
        if self.model is None:
            raise RuntimeError("MoSEEnsemble: call fit(model, data) first")
        return self.model

    @property
    def num_nodes(self) -> int:
        return self._fitted().num_nodes

    @property
    def num_relations(self) -> int:
        return self._fitted().num_relations

    def trusted_indices(self):
        return self._fitted().trusted_indices()

    def prepare_scoring(self) -> ScoringCache:
        return self._fitted().prepare_scoring()

    @torch.no_grad()
    def score_tails(self, head_index: Tensor, rel_type: Tensor,
                    cache: Optional[ScoringCache] = None) -> Tensor:
        r"""The ensemble scores :math:`[B, N]` of :math:`(h, r, ?)` (:math:`r \in [0,
        2R)`)."""
        model = self._fitted()
        head_index, rel_type = model._check(
            'MoSEEnsemble.score_tails', model._entity_ids('head_index', head_index),
            model._relation_ids('rel_type', rel_type, inverse=True))
        scores, judged = model.view_scores(head_index, rel_type, cache)
        return self.combine(scores, judged, rel_type)

    def score_heads(self, rel_type: Tensor, tail_index: Tensor,
                    cache: Optional[ScoringCache] = None) -> Tensor:
        r"""The ensemble scores :math:`[B, N]` of :math:`(?, r, t)`, as :math:`(t, r + R,
        ?)`."""
        model = self._fitted()
        rel_type, tail_index = model._check(
            'MoSEEnsemble.score_heads', model._relation_ids('rel_type', rel_type),
            model._entity_ids('tail_index', tail_index))
        return self.score_tails(tail_index, rel_type + model.num_relations, cache)

    def forward(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor) -> Tensor:
        r"""The ensemble scores of triples :math:`[B]`."""
        scores = self.score_tails(head_index, rel_type)
        return scores.gather(1, tail_index.view(-1, 1).long()).view(-1)

    def combine(self, scores: Tensor, judged: Tensor, rel_type: Tensor) -> Tensor:
        r"""The ensemble score of modality scores :math:`[S, B, N]` judged where
        :obj:`judged`, for queries of relations :obj:`rel_type` :math:`[B]`."""
        if self.method == 'meta':
            return self.meta(self._meta_inputs(scores, judged))
        S = scores.size(0)
        if self.method == 'average':
            w = scores.new_full((S, rel_type.numel(), 1), 1.0 / S)
        else:
            w = self.weights.to(scores)[:, rel_type, None]  # [S, B, 1]
        wj = w * judged.to(scores.dtype)
        num = (wj * scores).sum(dim=0)
        den = wj.sum(dim=0)
        out = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), num)
        nothing = ~judged.any(dim=0)
        return out.masked_fill(nothing, torch.finfo(out.dtype).min)

    def _meta_inputs(self, scores: Tensor, judged: Tensor) -> Tensor:
        x = (scores * judged.to(scores.dtype)).movedim(0, -1)  # [B, N, S]
        if self.mask_inputs:
            x = torch.cat([x, judged.to(scores.dtype).movedim(0, -1)], dim=-1)
        return x

    # Fitting ##################################################################################

    def fit(self, model: MoSE, data, split: str = 'val_clean') -> 'MoSEEnsemble':
        r"""Fits the ensemble of :obj:`model` on the validation triples of :obj:`data`
        (:obj:`split` is :obj:`"val"` or :obj:`"val_clean"`, computed as the trainer does
        where the graph lacks it); no test triple is read. Returns :obj:`self`."""
        from torch_mmkg.data.known_triples import KnownTriples
        from torch_mmkg.data.mmkg import REL, get_triples, split_key
        from torch_mmkg.data.split import clean_val_mask
        if not isinstance(model, MoSE):
            raise ValueError(f"MoSEEnsemble fits a MoSE model, got {type(model).__name__}")
        if split not in FIT_SPLITS:
            raise ValueError(f"MoSEEnsemble is fitted on validation triples only: split must "
                             f"be one of {FIT_SPLITS}, got {split!r}")
        if split == 'val_clean' and split_key('val_clean') not in data[REL]:
            store, mask = data[REL], clean_val_mask(data)
            h, r, t = store.edge_index[0, mask], store.edge_type[mask], store.edge_index[1, mask]
        else:
            h, r, t = get_triples(data, split)
        known = KnownTriples.from_data(data, ['train', 'val'])
        self.model = model
        self.fit_triples(h, r, t, known)
        return self

    def _queries(self, h: Tensor, r: Tensor, t: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        R = self._fitted().num_relations
        return torch.cat([h, t]), torch.cat([r, r + R]), torch.cat([t, h])

    @torch.no_grad()
    def fit_triples(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                    known=None) -> 'MoSEEnsemble':
        r"""Fits the ensemble on the given (validation) triples, both directions, with the
        filter :obj:`known` (train and validation triples; :obj:`None`: unfiltered) for
        BI. :meth:`fit` calls it with a graph's validation split."""
        model = self._fitted()
        was_training = model.training
        model.eval()
        device = model.rel_emb.device
        h, r, t = (x.to(device).long() for x in (head_index, rel_type, tail_index))
        e, rel, ans = self._queries(h, r, t)
        S = len(model.slots)
        self.mask_inputs = bool(model.mask_missing and not bool(
            model.representation(None)[1].all()))
        try:
            if self.method == 'average':
                self.weights = torch.full((S, 2 * model.num_relations), 1.0 / S,
                                          device=device)
            elif self.method == 'boosting':
                self.weights = self.boosting(e, rel, ans, known)
            else:
                with torch.enable_grad():
                    self.meta = self._fit_meta(e, rel, ans)
        finally:
            model.train(was_training)
        return self

    def _filtered(self, e: Tensor, rel: Tensor, ans: Tensor, known, shape) -> Tensor:
        r"""The known answers of queries :math:`(e, rel, ?)` and their own answer, a bool
        :math:`[B, N]`."""
        R = self._fitted().num_relations
        out = torch.zeros(shape, dtype=torch.bool, device=e.device)
        out[torch.arange(e.numel(), device=e.device), ans] = True
        if known is not None:
            known = known.to(e.device)
            tail = rel < R
            rows_t, rows_h = tail.nonzero().view(-1), (~tail).nonzero().view(-1)
            if rows_t.numel():
                fq, fe = known.tails(e[rows_t], rel[rows_t])
                out[rows_t[fq], fe] = True
            if rows_h.numel():  # (e, r + R, ?) asks for the heads of (?, r, e)
                fq, fe = known.heads(rel[rows_h] - R, e[rows_h])
                out[rows_h[fq], fe] = True
        return out

    def boosting(self, e: Tensor, rel: Tensor, ans: Tensor, known=None) -> Tensor:
        r"""BI's relation-specific modality weights :math:`[S, 2R]` from the queries
        :math:`(e, rel, ?)` with answers :obj:`ans` (see the class description)."""
        model = self._fitted()
        S, R2, N = len(model.slots), 2 * model.num_relations, model.num_nodes
        dtype = model.rel_emb.dtype
        device = e.device
        counts = torch.bincount(rel, minlength=R2)
        acc = torch.zeros(R2, S, dtype=dtype, device=device)
        chosen: List[Tensor] = []
        alphas: List[Tensor] = []
        cache = model.prepare_scoring()
        rows_r = torch.arange(R2, device=device)
        for k in range(S):
            correct = torch.zeros(R2, S, dtype=dtype, device=device)
            wrong = torch.zeros(R2, S, dtype=dtype, device=device)
            total = torch.zeros(R2, dtype=dtype, device=device)
            for i in range(0, e.numel(), self.batch_size):
                sl = slice(i, i + self.batch_size)
                eb, rb, ab = e[sl], rel[sl], ans[sl]
                scores, judged = model.view_scores(eb, rb, cache)
                B = eb.numel()
                target = scores[:, torch.arange(B, device=device), ab][..., None]  # [S,B,1]
                judged = judged & judged[:, torch.arange(B, device=device), ab][..., None]
                filtered = self._filtered(eb, rb, ab, known, (B, N))
                p = torch.where(filtered[None] | (scores < target), 1.0, -1.0).to(dtype)
                p = p * judged.to(dtype)
                logd = torch.zeros(B, N, dtype=dtype, device=device)
                for c, a in zip(chosen, alphas):
                    logd = logd - a[rb, None] * p[c[rb], torch.arange(B, device=device)]
                d = torch.exp(logd) / N  # D_0 = 1/N, then the unnormalised updates
                total.index_add_(0, rb, d.sum(-1))
                correct.index_add_(0, rb, ((p > 0).to(dtype) * d).sum(-1).t())
                wrong.index_add_(0, rb, ((p < 0).to(dtype) * d).sum(-1).t())
            if k > 0:  # D_k normalised to sum 1 (D_0 sums to the number of queries)
                z = torch.where(total > 0, total, torch.ones_like(total))[:, None]
                correct, wrong = correct / z, wrong / z
            alpha = 0.5 * torch.log((correct + 1e-10) / (wrong + 1e-10))  # [2R, S]
            order = torch.argsort(alpha, dim=1, descending=True, stable=True)
            free = torch.gather(acc, 1, order) <= 0
            best = torch.gather(order, 1, free.to(torch.int8).argmax(dim=1, keepdim=True))
            best = best.view(-1)
            a_best = alpha[rows_r, best]
            acc[rows_r, best] += a_best
            chosen.append(best)
            alphas.append(a_best)
        weights = acc.t().contiguous()
        few = counts < self.min_queries
        weights[:, few] = 1.0 / S
        return weights

    def _fit_meta(self, e: Tensor, rel: Tensor, ans: Tensor) -> _MetaLearner:
        model = self._fitted()
        S = len(model.slots)
        device = e.device
        gen = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            meta = _MetaLearner(S * (2 if self.mask_inputs else 1), self.hidden_channels,
                                self.output_relu)
        meta = meta.to(device=device, dtype=model.rel_emb.dtype)
        opt = torch.optim.Adagrad(meta.parameters(), lr=self.lr)
        cache = model.prepare_scoring()
        for _ in range(self.epochs):
            perm = torch.randperm(e.numel(), generator=gen).to(device)
            for i in range(0, e.numel(), self.batch_size):
                sl = perm[i:i + self.batch_size]
                with torch.no_grad():
                    scores, judged = model.view_scores(e[sl], rel[sl], cache)
                logits = meta(self._meta_inputs(scores, judged))
                loss = torch.nn.functional.cross_entropy(logits, ans[sl])
                opt.zero_grad()
                loss.backward()
                opt.step()
        meta.eval()
        for p in meta.parameters():
            p.requires_grad_(False)
        return meta

    def extra_repr(self) -> str:
        return f'method={self.method!r}, fitted={self.model is not None}'
