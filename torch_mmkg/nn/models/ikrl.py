from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_mmkg.loader import Negatives
from torch_mmkg.nn.fusion import StructureAndFused, SumFusion
from torch_mmkg.nn.fusion.projection import ModalityProjection
from torch_mmkg.nn.interactions import TransEInteraction
from torch_mmkg.nn.interactions.base import gather
from torch_mmkg.nn.interactions.weighted_multiview import WeightedMultiViewInteraction
from torch_mmkg.nn.kge.base import KGEModel
from torch_mmkg.nn.loss import MarginRankingLoss
from torch_mmkg.nn.regimes import ScoredBatch
from torch_mmkg.nn.representation import STRUCTURE, EntityRepresentation, register_modalities
from torch_mmkg.nn.validation import check_sizes, choice, real
from ._modalities import FromDataMixin, features_from_data

__all__ = ['IKRL', 'IKRL_TERMS', 'IKRL_TERM_NAMES', 'InstanceAttentionRepresentation',
           'dense_instances']

#: IKRL's four energies over the views (structure, image): :math:`d(s, s)`,
#: :math:`d(i, i)`, :math:`d(s, i)`, :math:`d(i, s)` (head type, tail type).
IKRL_TERMS = (((1, 0), (1, 0), 'unimodal'), ((0, 1), (0, 1), 'unimodal'),
              ((1, 0), (0, 1), 'crossmodal'), ((0, 1), (1, 0), 'crossmodal'))
#: The names of :data:`IKRL_TERMS`, in order.
IKRL_TERM_NAMES = ('ss', 'ii', 'si', 'is')


class InstanceAttentionRepresentation(EntityRepresentation):
    r"""IKRL's entity representation: a learnable structural embedding
    :math:`\mathbf{e}_s` (slot 0) and, per modality :math:`m`, the attention-weighted sum of
    the projections of the entity's instances :math:`\mathbf{x}_{m,1}, \ldots,
    \mathbf{x}_{m,K}` (e.g. its images), as in IKRL,

    .. math::
        \mathbf{e}_m = \sum_{k} \alpha_k\, \mathbf{W}_m \mathbf{x}_{m,k}, \qquad
        \alpha_k = \frac{\exp\big((\mathbf{W}_m \mathbf{x}_{m,k})^{\top}
        \mathbf{e}_s\big)}{\sum_{j} \exp\big((\mathbf{W}_m \mathbf{x}_{m,j})^{\top}
        \mathbf{e}_s\big)},

    the sums running over the instances the entity has (mask True). Without attention
    (:obj:`attention=False`, the paper's IKRL (AVG)) :math:`\alpha_k` is uniform over them.
    An entity with one feature vector, :obj:`[N, F]`, gets :math:`\mathbf{e}_m =
    \mathbf{W}_m \mathbf{x}_m`.

    Input layout: per modality either one vector per entity, features :obj:`[N, F]` with a
    mask :obj:`[N]`, or :math:`K` instance slots per entity, features :obj:`[N, K, F]` with
    a mask :obj:`[N, K]` (True where the entity has that instance; entities with fewer than
    :math:`K` instances leave the rest False, see :func:`dense_instances`). The slot of
    modality :math:`m` is present when the entity has at least one instance; an entity
    without any gets zeros there (never read by a masked fusion). With
    :obj:`mask_missing=False` every stored instance counts.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        channels (int): The width :math:`D` of every slot.
        features (Mapping[str, Tensor]): Per modality, :obj:`[N, F]` or :obj:`[N, K, F]`.
        masks (Mapping[str, Tensor], optional): Per modality, :obj:`[N]` or :obj:`[N, K]`
            bool availability. (default: all present)
        attention (bool, optional): Attention over the instances, else their mean.
            (default: :obj:`True`)
        projection_bias (bool, optional): :math:`\mathbf{W}_m \mathbf{x} + \mathbf{b}_m`.
            (default: :obj:`False`)
        trainable_features (bool, optional): The feature tables are parameters.
            (default: :obj:`False`)
        mask_missing (bool, optional): Leave instances with a False mask out.
            (default: :obj:`True`)

    Shapes:
        - **input:** entity indices :math:`[*]` (all entities if :obj:`None`)
        - **output:** stack :math:`[*, M + 1, D]`, mask :math:`[*, M + 1]`
    """
    def __init__(self, num_nodes: int, channels: int, features: Mapping[str, Tensor],
                 masks: Optional[Mapping[str, Tensor]] = None, attention: bool = True,
                 projection_bias: bool = False, trainable_features: bool = False,
                 mask_missing: bool = True):
        torch.nn.Module.__init__(self)
        self.num_nodes, self.channels = int(num_nodes), int(channels)
        if not features:
            raise ValueError("an instance representation needs at least one modality")
        self.modalities = register_modalities(self, num_nodes, features, masks, (STRUCTURE, ),
                                              bool(trainable_features), instances=True)
        self.attention = bool(attention)
        self.mask_missing = bool(mask_missing)
        self.init = torch.nn.init.xavier_uniform_
        self.node_emb = torch.nn.Embedding(num_nodes, channels)
        self.projection = ModalityProjection({m: x.size(-1) for m, x in features.items()},
                                             channels, num_layers=1, bias=projection_bias)

    def num_instances(self, modality: str) -> Optional[int]:
        r"""The instance slots :math:`K` of a modality (:obj:`None`: one vector per
        entity)."""
        x = getattr(self, f'x_{modality}')
        return int(x.size(1)) if x.dim() == 3 else None

    def _present(self, modality: str, index: Optional[Tensor]) -> Tensor:
        mask = self.mask(modality, index)
        return mask if self.mask_missing else torch.ones_like(mask)

    def attention_weights(self, modality: str, index: Optional[Tensor] = None) -> Tensor:
        r"""The weights :math:`\alpha` :math:`[*, K]` of the instances of :obj:`modality`
        for :obj:`index` (all entities if :obj:`None`): zero for a missing instance, and
        everywhere for an entity without any."""
        proj = self._project(modality, index)
        return self._weights(proj, self._present(modality, index), self.structural(index))

    def _project(self, modality: str, index: Optional[Tensor]) -> Tensor:
        x = self.features(modality, index)
        if self.num_instances(modality) is None:
            x = x.unsqueeze(-2)
        return self.projection.mlps[modality](x)

    def _weights(self, proj: Tensor, present: Tensor, e_s: Tensor) -> Tensor:
        if present.dim() == proj.dim() - 2:  # one vector per entity
            present = present.unsqueeze(-1)
        any_ = present.any(dim=-1, keepdim=True)
        if not self.attention:
            w = present.to(proj.dtype)
            return w / w.sum(dim=-1, keepdim=True).clamp(min=1.0)
        logits = (proj * e_s.unsqueeze(-2)).sum(dim=-1)
        logits = logits.masked_fill(~present, float('-inf'))
        logits = torch.where(any_, logits, torch.zeros_like(logits))  # no NaN anywhere
        alpha = torch.softmax(logits, dim=-1)
        return torch.where(any_, alpha, torch.zeros_like(alpha))

    def encode(self, index: Optional[Tensor] = None) -> Dict[str, Tensor]:
        e_s = self.structural(index)
        out = {}
        for m in self.modalities:
            proj = self._project(m, index)
            if self.num_instances(m) is None:
                out[m] = proj.squeeze(-2)  # W x, exactly
                continue
            present = self._present(m, index)
            alpha = self._weights(proj, present, e_s)
            # where, not a product: a missing instance never reaches the sum
            proj = torch.where(present[..., None], proj, proj.new_zeros(()))
            out[m] = (alpha[..., None] * proj).sum(dim=-2)
        return out

    def forward(self, index: Optional[Tensor] = None,
                rel_type: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        s = self.structural(index)
        enc = self.encode(index)
        slots, masks = [s], [torch.ones(s.shape[:-1], dtype=torch.bool, device=s.device)]
        for m in self.modalities:
            slots.append(enc[m])
            present = self._present(m, index)
            masks.append(present.any(dim=-1) if self.num_instances(m) is not None else present)
        return torch.stack(slots, dim=-2), torch.stack(masks, dim=-1)

    def extra_repr(self) -> str:
        inst = {m: self.num_instances(m) or 1 for m in self.modalities}
        return (f'{self.num_nodes}, {self.channels}, instances={inst}, '
                f'attention={self.attention}')


def dense_instances(data, instance_type: str) -> Tuple[Tensor, Tensor]:
    r"""The instances of a :mod:`torch_mmkg` graph's node type :obj:`instance_type` (e.g.
    several images per entity, features :obj:`data[instance_type].x` :math:`[I, F]` linked to
    their entities by the edge type :obj:`(instance_type, "of", "entity")`, as
    :class:`~torch_mmkg.transforms.PoolModality` reads them) as a dense :obj:`[N, K, F]`
    tensor and its :obj:`[N, K]` mask, :math:`K` the largest number of instances of an
    entity, each entity's instances in the order of the edges."""
    from torch_mmkg.data.mmkg import ENTITY
    edge_type = (instance_type, 'of', ENTITY)
    if instance_type not in data.node_types or edge_type not in data.edge_types:
        raise ValueError(f"the graph has no instance node type '{instance_type}' linked to "
                         f"entities by {edge_type}")
    x = data[instance_type].x
    edge_index = data[edge_type].edge_index
    N = data[ENTITY].num_nodes
    inst, ent = edge_index[0], edge_index[1]
    if ent.numel() and (int(ent.min()) < 0 or int(ent.max()) >= N or int(inst.min()) < 0
                        or int(inst.max()) >= x.size(0)):
        raise ValueError(f"{edge_type} links ids out of range")
    count = torch.bincount(ent, minlength=N)
    K = max(int(count.max()) if count.numel() else 0, 1)
    order = torch.argsort(ent, stable=True)
    ent, inst = ent[order], inst[order]
    start = torch.cumsum(count, 0) - count
    pos = torch.arange(ent.numel(), device=ent.device) - start[ent]
    dense = x.new_zeros(N, K, x.size(-1))
    mask = torch.zeros(N, K, dtype=torch.bool, device=x.device)
    dense[ent, pos] = x[inst]
    mask[ent, pos] = True
    return dense, mask


class IKRL(FromDataMixin, KGEModel):
    r"""The IKRL model from the `"Image-embodied Knowledge Representation Learning"
    <https://www.ijcai.org/proceedings/2017/0438.pdf>`_ paper, generalised to any number of
    modalities, each with one or several feature vectors (images) per entity, some of them
    missing for some entities.

    Each entity has a structural embedding :math:`\mathbf{e}_s \in \mathbb{R}^d` and an
    image-based one, the attention-weighted projection of its images (see
    :class:`InstanceAttentionRepresentation`), summed over the modalities it has,

    .. math::
        \mathbf{e}_i = \sum_{m \,:\, k_m(e)} \sum_k \alpha_{m,k}\, \mathbf{W}_m
        \mathbf{x}_{m,k}, \qquad \alpha_{m,k} = \mathrm{softmax}_k\big(
        (\mathbf{W}_m \mathbf{x}_{m,k})^{\top} \mathbf{e}_s\big),

    which is :math:`\mathbf{e}_i = \mathbf{W}\mathbf{x}` for one feature vector per entity
    (an entity without any modality has :math:`\mathbf{e}_i = \mathbf{0}`). The energy adds
    four TransE distances over the structure- and image-based representations,

    .. math::
        E(h, r, t) = \|\mathbf{h}_s + \mathbf{r} - \mathbf{t}_s\|_p +
        \|\mathbf{h}_i + \mathbf{r} - \mathbf{t}_i\|_p +
        \|\mathbf{h}_s + \mathbf{r} - \mathbf{t}_i\|_p +
        \|\mathbf{h}_i + \mathbf{r} - \mathbf{t}_s\|_p,

    the score is :math:`f(h, r, t) = -E(h, r, t)`, and training minimises the margin ranking
    loss :math:`\max(0, \gamma + E(h, r, t) - E(h', r, t'))`.

    Where the sources differ, a switch picks one (each default says which it follows):

    * :obj:`test_energy`: the energy evaluation ranks with. The original C++ code
      (``Test.cpp``) ranks with the image–image energy :math:`\|\mathbf{h}_i + \mathbf{r} -
      \mathbf{t}_i\|` alone (:obj:`"image"`); the re-implementation behind the current
      comparison tables (zjukg's ``IKRL.py``) with all four (:obj:`"all"`). Training always
      uses all four; the interaction scores the evaluation energy in evaluation mode
      (:meth:`torch.nn.Module.eval`), so that :meth:`forward`, :meth:`score_tails` and the
      negatives agree in either mode.
    * :obj:`per_term_loss`: the original code trains one hinge per energy,
      :math:`\sum_k \max(0, \gamma + E_k(h, r, t) - E_k(h', r, t'))`; the re-implementation
      one hinge on their sum.
    * :obj:`normalize`: zjukg's version :math:`L_2`-normalises every TransE argument
      (OpenKE's :obj:`norm_flag`); the original scores raw vectors (it keeps the structural
      vectors within the unit ball after each update instead).
    * :obj:`projection_bias`, :obj:`trainable_features`: zjukg's version has
      :math:`\mathbf{W}\mathbf{x} + \mathbf{b}` and fine-tunes the feature table; the
      original code has :math:`\mathbf{W}\mathbf{x}` on fixed features.

    Not implemented: the original code's per-energy learning rates (:math:`\times 1` for
    :math:`d(s, s)` and :math:`d(i, i)`, :math:`\times 0.5` for the mixed ones, and a
    penalty on :math:`\|\mathbf{e}_i\| > 1` at :math:`\times 0.2`), its extra
    relation-corrupted negative for :math:`d(s, s)` (the regime, not the model, samples
    negatives) and its initialisation from a TransE run. The original also clips each image
    vector to :math:`\|\mathbf{x}\|_2 \leq 1` before use: do so on the features given.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations.
        hidden_channels (int): The embedding size :math:`d` (the original uses 50).
        features (Mapping[str, Tensor]): Per modality, :obj:`[N, F]` features (one vector per
            entity) or :obj:`[N, K, F]` (:math:`K` instances per entity, e.g. images; see
            :func:`dense_instances` and :meth:`from_data`).
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` (or
            :obj:`[N, K]`) bool availability (default: all present).
        margin (float, optional): The margin :math:`\gamma > 0` of the default loss (the
            original's). (default: :obj:`4.0`)
        p_norm (float, optional): The norm :math:`p \geq 1` (the original's :math:`L_1`).
            (default: :obj:`1.0`)
        test_energy (str, optional): :obj:`"all"` (the four energies, as the comparison
            tables' re-implementation ranks) or :obj:`"image"` (:math:`d(i, i)` alone, as the
            original code ranks). (default: :obj:`"all"`)
        multi_image_attention (bool, optional): Attention over an entity's instances
            (the paper's IKRL (ATT) and the original code); else their mean (the paper's
            IKRL (AVG)). No effect with one vector per entity. (default: :obj:`True`)
        normalize (bool, optional): :math:`L_2`-normalise the arguments of every TransE
            term (zjukg's version); the original does not. (default: :obj:`False`)
        per_term_loss (bool, optional): One hinge per energy (the original code) instead
            of one on their sum (zjukg's version). Needs negatives without twins.
            (default: :obj:`False`)
        projection_bias (bool, optional): A bias in :math:`\mathbf{W}_m` (zjukg's
            version). (default: :obj:`False`)
        trainable_features (bool, optional): Fine-tune the feature tables (zjukg's
            version). (default: :obj:`False`)
        mask_missing (bool, optional): Leave missing modalities and instances out of
            :math:`\mathbf{e}_i`; :obj:`False` uses every stored row.
            (default: :obj:`True`)
        regularization (str, optional): :obj:`None`, :obj:`"l2"` or :obj:`"n3"` penalty on
            the batch's embeddings. (default: :obj:`"l2"`)
        regularization_weight (float, optional): Its weight. (default: :obj:`0.0`)
        loss (torch.nn.Module, optional): Replaces the default loss.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`embed` two :math:`[*, d]` tensors
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 margin: float = 4.0, p_norm: float = 1.0, test_energy: str = 'all',
                 multi_image_attention: bool = True, normalize: bool = False,
                 per_term_loss: bool = False, projection_bias: bool = False,
                 trainable_features: bool = False, mask_missing: bool = True,
                 regularization: Optional[str] = 'l2', regularization_weight: float = 0.0,
                 loss: Optional[torch.nn.Module] = None):
        check_sizes(self, num_nodes, num_relations, hidden_channels)
        margin = real(self, 'margin', margin, 0.0, low_open=True)
        p_norm = real(self, 'p_norm', p_norm, 1.0, finite=False)
        choice(self, 'test_energy', test_energy, ('all', 'image'))
        for name, value in (('multi_image_attention', multi_image_attention),
                            ('normalize', normalize), ('per_term_loss', per_term_loss),
                            ('projection_bias', projection_bias),
                            ('trainable_features', trainable_features),
                            ('mask_missing', mask_missing)):
            choice(self, name, value, (True, False))
        if not features:
            raise ValueError(f"{type(self).__name__} needs at least one modality (use TransE "
                             f"without any)")
        representation = InstanceAttentionRepresentation(
            num_nodes, hidden_channels, features, masks, attention=multi_image_attention,
            projection_bias=projection_bias, trainable_features=trainable_features,
            mask_missing=mask_missing)
        interaction = WeightedMultiViewInteraction(
            TransEInteraction(p_norm, normalize=normalize), IKRL_TERMS,
            eval_terms=(1, ) if test_energy == 'image' else None)
        super().__init__(num_nodes, num_relations, hidden_channels, interaction,
                         loss or MarginRankingLoss(margin), regularization=regularization,
                         regularization_weight=regularization_weight,
                         representation=representation,
                         fusion=StructureAndFused(SumFusion(hidden_channels,
                                                            mask_missing=mask_missing)))
        self.margin, self.p_norm = margin, float(p_norm)
        self.test_energy = test_energy
        self.per_term_loss = bool(per_term_loss)
        self.mask_missing = bool(mask_missing)
        self.reset_parameters()

    @classmethod
    def from_data(cls, data, hidden_channels: int,
                  modalities: Optional[Sequence[str]] = None,
                  instances: Optional[Mapping[str, str]] = None, **kwargs) -> 'IKRL':
        r"""Builds the model for a :mod:`torch_mmkg` graph with all its modalities (or the
        subset :obj:`modalities`, in that order) and, for each :obj:`modality: node type` of
        :obj:`instances`, the several instances per entity of that node type
        (:func:`dense_instances`; e.g. :obj:`{"image": "image"}` for the images that
        :class:`~torch_mmkg.transforms.PoolModality` would average), which replace a
        pooled modality of the same name."""
        N, R, features, masks = features_from_data(data, modalities)
        for m, node_type in (instances or {}).items():
            features[m], masks[m] = dense_instances(data, node_type)
        return cls(N, R, hidden_channels, features, masks, **kwargs)

    def embed(self, index: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        r"""The structure- and image-based embeddings :math:`(\mathbf{e}_s,
        \mathbf{e}_i)`, each :math:`[*, d]`, of :obj:`index` (all entities if
        :obj:`None`)."""
        return tuple(self.entity(index).unbind(-2))

    def attention(self, index: Optional[Tensor] = None) -> Dict[str, Tensor]:
        r"""Per modality, the weights :math:`\alpha` :math:`[*, K]` of the instances of the
        entities :obj:`index` (all if :obj:`None`; :math:`K = 1` for one vector per
        entity)."""
        return {m: self.representation.attention_weights(m, index)
                for m in self.representation.modalities}

    def score_parts(self, head_index: Tensor, rel_type: Tensor,
                    tail_index: Tensor) -> Mapping[str, Tensor]:
        r"""The four scores :math:`-d(s, s), -d(i, i), -d(s, i), -d(i, s)` of the given
        triples (keys :obj:`"ss"`, :obj:`"ii"`, :obj:`"si"`, :obj:`"is"`), for inspection."""
        h, t = self.entity(head_index), self.entity(tail_index)
        r, f = self.relation(rel_type), self.interaction
        return {name: f(h, r, t, term=k) for k, name in enumerate(IKRL_TERM_NAMES)}

    # One hinge per energy (the original code) ###############################################

    def score_batch(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                    negatives: Negatives) -> ScoredBatch:
        r"""As :meth:`KGEModel.score_batch`; with :obj:`per_term_loss`, one scorer per
        energy (its positive and negative scores), so that the regime's loss is the sum of
        one hinge per energy."""
        if not self.per_term_loss:
            return super().score_batch(head_index, rel_type, tail_index, negatives)
        if negatives.twins:
            raise ValueError(f"{type(self).__name__}(per_term_loss=True) does not score twins "
                             f"negatives")
        heads, tails = self._negative_grid(head_index, tail_index, negatives)  # [B, 1 + K]
        stack, mask, (hi, ti) = self.representation.unique(heads, tails)
        table = self.fusion(stack, mask)[0]
        H, T = gather(table, hi), gather(table, ti)  # [B, 1 + K, 2, d]
        r = self.relation(rel_type)
        views = []
        for k in self.interaction.active_terms():
            s = self.interaction(H, r[:, None], T, term=k)
            views.append((None, s[:, 0], s[:, 1:]))
        side = (negatives.corrupt_head if negatives.corrupt_head.dim() == 2
                else negatives.corrupt_head[:, None])
        cand = torch.where(side[..., None, None], H[:, 1:], T[:, 1:])
        terms = self._negative_batch_penalty(head_index, rel_type, tail_index, negatives,
                                             (H[:, 0], T[:, 0], cand, r))
        return ScoredBatch(views, terms, {'entity_index': head_index})

    def score_negatives(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                        negatives: Negatives) -> Tuple[Tensor, Tensor]:
        r"""Scores of the positives :obj:`[B]` and their negatives :obj:`[B, K]` (the sums
        over the energies with :obj:`per_term_loss`)."""
        if not self.per_term_loss:
            return super().score_negatives(head_index, rel_type, tail_index, negatives)
        views = self.score_batch(head_index, rel_type, tail_index, negatives).views
        return sum(v[1] for v in views), sum(v[2] for v in views)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, modalities={self.modalities}, '
                f'test_energy={self.test_energy!r})')
