import math
from typing import Callable, Mapping, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.fusion import Fusion
from torch_mmkg.nn.interactions import MultiViewInteraction, TransEInteraction
from torch_mmkg.nn.kge.base import KGEModel
from torch_mmkg.nn.loss import MarginRankingLoss
from torch_mmkg.nn.regimes import QueryScores, ScoredBatch
from torch_mmkg.nn.representation import EntityRepresentation
from torch_mmkg.nn.validation import check_sizes, choice, real
from ._modalities import FromDataMixin

__all__ = ['MMKRL', 'MMKRLViews', 'MMKRL_TERMS']

#: MMKRL's views of an entity, in :class:`MMKRLViews`' order.
STRUCTURAL, HEAD_PROJECTED, TAIL_PROJECTED, MULTIMODAL = range(4)
#: MMKRL's four energies over the views :math:`[\mathbf{e}, \mathbf{e}'_h, \mathbf{e}'_t,
#: \mathbf{m}_e]`: :math:`d(h', r', t')`, :math:`d(m_h, r', m_t)`, :math:`d(m_h, r', t)`,
#: :math:`d(h, r', m_t)` (the projected relation :math:`\mathbf{r}'` in each).
MMKRL_TERMS = (((0, 1, 0, 0), (0, 0, 1, 0), 'projected'),
               ((0, 0, 0, 1), (0, 0, 0, 1), 'multimodal'),
               ((0, 0, 0, 1), (1, 0, 0, 0), 'mixed'),
               ((1, 0, 0, 0), (0, 0, 0, 1), 'mixed'))


class MeanOfTerms(MultiViewInteraction):
    r"""A :class:`~torch_mmkg.nn.interactions.MultiViewInteraction` whose score is the mean of
    its terms instead of their sum (MMKRL's :math:`\frac14 \sum`): every score, a single term's
    included, is scaled by :math:`1 / |\text{terms}|`, so that the terms add up to the
    score."""
    def _sum(self, fn, terms: Optional[str], term: Optional[int] = None) -> Tensor:
        return super()._sum(fn, terms, term) / len(self.terms)


class MMKRLViews(Fusion):
    r"""MMKRL's views of an entity from its stack :math:`[\mathbf{e}, \mathbf{W}_1
    \mathbf{x}_1, \ldots, \mathbf{W}_M \mathbf{x}_M]` (a structural embedding and linearly
    projected features): the structural embedding, its two structural projections (as a head
    and as a tail, :math:`\mathbf{W}_s` shared, a bias per role) and the multi-modal
    embedding, a linear map of the concatenated features,

    .. math::
        [\mathbf{e},\ \mathbf{W}_s \mathbf{e} + \mathbf{b}_h,\ \mathbf{W}_s \mathbf{e} +
        \mathbf{b}_t,\ \mathbf{m}_e], \qquad \mathbf{m}_e = \mathbf{W}_m [\mathbf{x}_1;
        \ldots; \mathbf{x}_M] + \mathbf{b}_m = \sum_m \mathbf{W}_m \mathbf{x}_m +
        \mathbf{b}_m,

    in which a missing modality contributes nothing (with :obj:`mask_missing`). It also
    projects relations, :math:`\mathbf{r}' = \mathbf{W}_s \mathbf{r} + \mathbf{b}_r`
    (:meth:`project_relation`).

    Args:
        channels (int): The width :math:`d`.
        mask_missing (bool, optional): Leave missing modalities out of
            :math:`\mathbf{m}_e`. (default: :obj:`True`)
        bias_init (Callable, optional): In-place initialisation of the four biases.
            (default: :func:`torch.nn.init.normal_`, the authors' :obj:`torch.randn`)

    Shapes:
        - **input:** stack :math:`[*, 1 + M, d]`, mask :math:`[*, 1 + M]`
        - **output:** views :math:`[*, 4, d]`, :obj:`None`
    """
    def __init__(self, channels: int, mask_missing: bool = True,
                 bias_init: Optional[Callable[[Tensor], None]] = None):
        super().__init__()
        self.channels, self.mask_missing = int(channels), bool(mask_missing)
        self.projection = torch.nn.Linear(channels, channels, bias=False)
        self.head_bias = torch.nn.Parameter(torch.empty(channels))
        self.tail_bias = torch.nn.Parameter(torch.empty(channels))
        self.relation_bias = torch.nn.Parameter(torch.empty(channels))
        self.multimodal_bias = torch.nn.Parameter(torch.empty(channels))
        self.bias_init = bias_init or torch.nn.init.normal_
        self.reset_parameters()

    def reset_parameters(self):
        self.projection.reset_parameters()
        for b in (self.head_bias, self.tail_bias, self.relation_bias):
            self.bias_init(b)
        torch.nn.init.zeros_(self.multimodal_bias)

    def multimodal(self, stack: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        r""":math:`\mathbf{m}_e` :math:`[*, d]` of a stack."""
        mods = stack[..., 1:, :]
        if mask is not None and self.mask_missing:
            mods = torch.where(mask[..., 1:, None], mods, mods.new_zeros(()))
        return mods.sum(dim=-2) + self.multimodal_bias

    def project_relation(self, r: Tensor) -> Tensor:
        r""":math:`\mathbf{r}' = \mathbf{W}_s \mathbf{r} + \mathbf{b}_r`."""
        return self.projection(r) + self.relation_bias

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, None]:
        if stack.size(-2) < 2:
            raise ValueError(f"MMKRLViews needs a structural slot and at least one modality, "
                             f"got a stack of {stack.size(-2)}")
        e = stack[..., 0, :]
        p = self.projection(e)
        return torch.stack([e, p + self.head_bias, p + self.tail_bias,
                            self.multimodal(stack, mask)], dim=-2), None

    def extra_repr(self) -> str:
        return f'{self.channels}, mask_missing={self.mask_missing}'


class MMKRL(FromDataMixin, KGEModel):
    r"""The MMKRL model from the `"MMKRL: A robust embedding approach for multi-modal
    knowledge graph representation learning" <https://doi.org/10.1007/s10489-021-02693-9>`_
    paper (Applied Intelligence 2022), for any number of modalities: structural and
    multi-modal knowledge reconstructed by a sum of four translation energies and aligned by
    norm constraints.

    Each entity has a learnable structural embedding :math:`\mathbf{e} \in \mathbb{R}^d`
    and, per modality :math:`m`, features :math:`\mathbf{x}_m` (a trainable table initialised
    from them, as the re-implementation does). Entities and relations are projected into the
    reconstruction space by one shared map with a bias per role, and the entity's
    multi-modal embedding is a linear map of its concatenated features
    (:class:`MMKRLViews`),

    .. math::
        \mathbf{h}' = \mathbf{W}_s \mathbf{h} + \mathbf{b}_h, \quad
        \mathbf{r}' = \mathbf{W}_s \mathbf{r} + \mathbf{b}_r, \quad
        \mathbf{t}' = \mathbf{W}_s \mathbf{t} + \mathbf{b}_t, \quad
        \mathbf{m}_e = \mathbf{W}_m [\mathbf{x}_1; \ldots; \mathbf{x}_M] + \mathbf{b}_m .

    The energy averages four TransE distances, all with the projected relation (the mixed
    terms with the *raw* structural embedding of the other side),

    .. math::
        E(h, r, t) = \tfrac14 \big[d(\mathbf{h}', \mathbf{r}', \mathbf{t}') +
        d(\mathbf{m}_h, \mathbf{r}', \mathbf{m}_t) + d(\mathbf{m}_h, \mathbf{r}',
        \mathbf{t}) + d(\mathbf{h}, \mathbf{r}', \mathbf{m}_t)\big], \qquad
        d(\mathbf{a}, \mathbf{r}, \mathbf{b}) = \|\hat{\mathbf{a}} + \hat{\mathbf{r}} -
        \hat{\mathbf{b}}\|_1,

    each argument :math:`L_2`-normalised first (:math:`\hat{\mathbf{x}} = \mathbf{x} /
    \|\mathbf{x}\|_2`, OpenKE's :obj:`norm_flag`), and the score is :math:`f = -E`
    (:data:`MMKRL_TERMS`, :class:`MeanOfTerms`). Training adds to the negative-sampling loss
    (a margin ranking loss by default) the knowledge alignment with weight :math:`\lambda`
    (the batch term :obj:`"alignment"`, :meth:`alignment_loss`),

    .. math::
        \mathcal{L}_{ka} = \overline{\|\mathbf{h} - \mathbf{h}'\|^2} +
        \overline{\|\mathbf{t} - \mathbf{t}'\|^2} + \overline{\|\mathbf{r} -
        \mathbf{r}'\|^2} + \overline{\|\mathbf{W}_{sm} \mathbf{h} - \mathbf{m}_h\|^2} +
        \overline{\|\mathbf{W}_{sm} \mathbf{t} - \mathbf{m}_t\|^2},

    each bar the mean over the batch's heads (or tails, relations) *and* over the :math:`d`
    coordinates (the re-implementation's mean-reduced :obj:`MSELoss`), heads and tails
    counted over the positive and the negative triples, repeats included. Under 1-N training
    (not the authors') the query entities take both roles and the relations are the queries'.

    **Sources.** The authors' code was not located; the defaults follow the
    re-implementation behind the comparison tables (zjukg's :obj:`MMKRL.py` and
    :obj:`MMKRLNegativeSampling`, identical in NATIVE, AdaMF-MAT and LBMKGC): trainable
    feature tables, :math:`\lambda = 1`, Xavier-initialised embeddings, biases
    :math:`\mathcal{N}(0, 1)`, :math:`\mathbf{W}_s, \mathbf{W}_{sm}` without bias, and
    :math:`\mathbf{W}_m` initialised as one :obj:`Linear` over the concatenated features.
    They give no training script for it; the margin ranking loss with :math:`\gamma = 6`
    (the default of their OpenKE :obj:`MarginLoss`) is this library's choice. The
    adversarial training of the paper (the re-implementation's :obj:`MMKRLTrainer`, the
    :math:`\dagger` rows of NATIVE's table) is a training add-on,
    :class:`~torch_mmkg.training.MMKRLAdversary` (:obj:`TrainConfig(mmkrl_adversary={})`),
    which scores synthetic triples through :meth:`offset_score_stacks`.

    **Missing modalities.** With :obj:`mask_missing=True` a missing modality contributes
    nothing to :math:`\mathbf{m}_e` (its rows of the trainable table are never trained);
    :obj:`mask_missing=False` uses the rows as stored, as the re-implementation does with its
    zero-filled (and then trained) features.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations.
        hidden_channels (int): The embedding size :math:`d`.
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` features.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability. (default: all present)
        margin (float, optional): :math:`\gamma > 0` of the default loss.
            (default: :obj:`6.0`)
        alignment_weight (float, optional): :math:`\lambda \geq 0`; :obj:`0` drops the
            alignment (the re-implementation's :obj:`mse=False`). (default: :obj:`1.0`)
        trainable_features (bool, optional): Fine-tune the feature tables.
            (default: :obj:`True`)
        mask_missing (bool, optional): (see above) (default: :obj:`True`)
        normalize (bool, optional): :math:`L_2`-normalise the arguments of every distance.
            (default: :obj:`True`)
        p_norm (float, optional): The norm :math:`p \geq 1` of the distances.
            (default: :obj:`1.0`)
        regularization_weight (float, optional): OpenKE's :obj:`regul_rate`, the weight of
            :math:`(\overline{h^2} + \overline{t^2} + \overline{r^2}) / 3` over the raw
            embeddings of the batch's positives and negatives. (default: :obj:`0.0`)
        loss (torch.nn.Module, optional): Replaces the default loss.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`views` :math:`[*, 4, d]`; :meth:`energies` :math:`[*, 4]`
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 margin: float = 6.0, alignment_weight: float = 1.0,
                 trainable_features: bool = True, mask_missing: bool = True,
                 normalize: bool = True, p_norm: float = 1.0,
                 regularization_weight: float = 0.0, loss: Optional[torch.nn.Module] = None):
        num_nodes, num_relations, hidden_channels = check_sizes(self, num_nodes, num_relations,
                                                                hidden_channels)
        margin = real(self, 'margin', margin, 0.0, low_open=True)
        alignment_weight = real(self, 'alignment_weight', alignment_weight, 0.0)
        p_norm = real(self, 'p_norm', p_norm, 1.0, finite=False)
        for name, value in (('trainable_features', trainable_features),
                            ('mask_missing', mask_missing), ('normalize', normalize)):
            choice(self, name, value, (True, False))
        if not features:
            raise ValueError("MMKRL needs at least one modality (use TransE without any)")
        representation = EntityRepresentation(num_nodes, hidden_channels, features, masks,
                                              projection_layers=1, projection_bias=False,
                                              trainable_features=trainable_features)
        super().__init__(num_nodes, num_relations, hidden_channels,
                         MeanOfTerms(TransEInteraction(p_norm, normalize=normalize),
                                     MMKRL_TERMS),
                         loss or MarginRankingLoss(margin), regularization='l2',
                         regularization_weight=regularization_weight,
                         representation=representation,
                         fusion=MMKRLViews(hidden_channels, mask_missing),
                         regularize='raw_batch')
        # W_sm exists only where the alignment trains it
        self.alignment_projection = (torch.nn.Linear(hidden_channels, hidden_channels,
                                                     bias=False) if alignment_weight else None)
        self.margin, self.alignment_weight = margin, alignment_weight
        self.mask_missing, self.trainable_features = bool(mask_missing), trainable_features
        self.p_norm = p_norm
        self.reset_parameters()

    def reset_parameters(self):
        r"""Xavier-uniform structural and relation embeddings; :math:`\mathbf{W}_m` and
        :math:`\mathbf{b}_m` uniform in :math:`\pm 1/\sqrt{\sum_m F_m}` (PyTorch's
        :obj:`Linear` over the concatenated features); :math:`\mathbf{W}_s`,
        :math:`\mathbf{W}_{sm}` PyTorch's :obj:`Linear` default; the role biases
        :math:`\mathcal{N}(0, 1)`."""
        super().reset_parameters()
        rep = self.representation
        bound = 1.0 / math.sqrt(sum(getattr(rep, f'x_{m}').size(1) for m in rep.modalities))
        with torch.no_grad():
            for mlp in rep.projection.mlps.values():
                mlp[0].weight.uniform_(-bound, bound)
            self.fusion.multimodal_bias.uniform_(-bound, bound)
        if self.alignment_projection is not None:
            self.alignment_projection.reset_parameters()

    # The parts, in the paper's terms ###########################################################

    def views(self, index: Optional[Tensor] = None) -> Tensor:
        r"""The views :math:`[\mathbf{e}, \mathbf{e}'_h, \mathbf{e}'_t, \mathbf{m}_e]`
        :math:`[*, 4, d]` of :obj:`index` (all entities if :obj:`None`)."""
        return self.entity(index)

    def relation(self, rel_type: Tensor) -> Tensor:
        r"""The projected relations :math:`\mathbf{r}' = \mathbf{W}_s \mathbf{r} +
        \mathbf{b}_r` :math:`[*, d]` (the raw :math:`\mathbf{r}` is :obj:`rel_emb`)."""
        return self.fusion.project_relation(self.rel_emb(rel_type))

    def energies(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor) -> Tensor:
        r"""The four distances :math:`d(h', r', t'), d(m_h, r', m_t), d(m_h, r', t),
        d(h, r', m_t)` :math:`[*, 4]` of triples (:math:`E` is their mean)."""
        head_index, rel_type, tail_index = self._check_triples('energies', head_index,
                                                               rel_type, tail_index)
        h, r, t = self.entity(head_index), self.relation(rel_type), self.entity(tail_index)
        base = self.interaction.base
        return torch.stack([base(h[..., a.index(1), :], r, t[..., b.index(1), :]).neg()
                            for a, b, _ in MMKRL_TERMS], dim=-1)

    def alignment_loss(self, heads: Tensor, tails: Tensor, rel_type: Tensor) -> Tensor:
        r""":math:`\mathcal{L}_{ka}` (unweighted) of the entities :obj:`heads` and
        :obj:`tails` (index tensors, repeats counted) and the relations :obj:`rel_type`;
        each distinct entity is represented once."""
        if self.alignment_projection is None:
            raise RuntimeError("the model was built with alignment_weight=0")
        n = heads.numel()
        uniq, inv = torch.unique(torch.cat([heads.reshape(-1), tails.reshape(-1)]),
                                 return_inverse=True)
        stack, mask = self.representation(uniq)
        v = self.fusion(stack, mask)[0]
        e = v[:, STRUCTURAL]
        h_err = (e - v[:, HEAD_PROJECTED]).pow(2).mean(dim=-1)
        t_err = (e - v[:, TAIL_PROJECTED]).pow(2).mean(dim=-1)
        m_err = (self.alignment_projection(e) - v[:, MULTIMODAL]).pow(2).mean(dim=-1)
        rh, rt = inv[:n], inv[n:]
        r = self.rel_emb(rel_type)
        return (h_err[rh].mean() + t_err[rt].mean() +
                (r - self.fusion.project_relation(r)).pow(2).mean() +
                m_err[rh].mean() + m_err[rt].mean())

    def offset_score_stacks(self, head_stack: Tensor, head_mask: Tensor, rel_type: Tensor,
                            tail_stack: Tensor, tail_mask: Tensor, head_offset: Tensor,
                            tail_offset: Tensor) -> Tensor:
        r"""Scores of triples given as stacks (as :meth:`score_stacks`) with an offset
        :math:`\mathbf{g}` added to every view but the raw structural one: the heads'
        :math:`\mathbf{h}' + \mathbf{g}_h` and :math:`\mathbf{m}_h + \mathbf{g}_h`, the
        tails' :math:`\mathbf{t}' + \mathbf{g}_t` and :math:`\mathbf{m}_t + \mathbf{g}_t`,

        .. math::
            \tfrac14 \big[d(\mathbf{h}' + \mathbf{g}_h, \mathbf{r}', \mathbf{t}' +
            \mathbf{g}_t) + d(\mathbf{m}_h + \mathbf{g}_h, \mathbf{r}', \mathbf{m}_t +
            \mathbf{g}_t) + d(\mathbf{m}_h + \mathbf{g}_h, \mathbf{r}', \mathbf{t}) +
            d(\mathbf{h}, \mathbf{r}', \mathbf{m}_t + \mathbf{g}_t)\big]

        negated: the score of a synthetic triple of the adversarial training
        (:class:`~torch_mmkg.training.MMKRLAdversary`). Offsets are :math:`[*, d]`, broadcast
        with the stacks' leading dimensions."""
        def shifted(views: Tensor, g: Tensor) -> Tensor:  # [e, e'_h + g, e'_t + g, m_e + g]
            return views + torch.stack([torch.zeros_like(g), g, g, g], dim=-2)

        return self._interact(shifted(self.fuse(head_stack, head_mask), head_offset),
                              self.relation(rel_type),
                              shifted(self.fuse(tail_stack, tail_mask), tail_offset),
                              head_mask, tail_mask)

    # Training #################################################################################

    def score_batch(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                    negatives) -> ScoredBatch:
        r""":meth:`~torch_mmkg.nn.KGEModel.score_batch` with the term :obj:`"alignment"`:
        :math:`\lambda \mathcal{L}_{ka}` over the heads and tails of the positives and the
        negatives."""
        scored = super().score_batch(head_index, rel_type, tail_index, negatives)
        if self.alignment_weight:
            heads, tails = self._negative_grid(head_index, tail_index, negatives)
            scored.terms['alignment'] = self.alignment_weight * self.alignment_loss(
                heads, tails, rel_type)
        return scored

    def score_queries(self, entity_index: Tensor, rel_type: Tensor) -> QueryScores:
        r""":meth:`~torch_mmkg.nn.KGEModel.score_queries` with the term :obj:`"alignment"`
        over the query entities (in both roles) and relations."""
        scored = super().score_queries(entity_index, rel_type)
        if self.alignment_weight:
            R = self.num_relations
            rel = torch.where(rel_type >= R, rel_type - R, rel_type)
            scored.terms['alignment'] = self.alignment_weight * self.alignment_loss(
                entity_index, entity_index, rel)
        return scored

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, modalities={self.modalities})')
