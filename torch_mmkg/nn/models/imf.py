from typing import Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_mmkg.nn.fusion import AllSlots
from torch_mmkg.nn.fusion.mutan import MutanFusion
from torch_mmkg.nn.interactions import EnsembleInteraction, TuckERInteraction
from torch_mmkg.nn.kge.base import KGEModel, ScoringCache
from torch_mmkg.nn.loss import BCELoss
from torch_mmkg.nn.representation import EntityRepresentation
from torch_mmkg.nn.validation import (check_sizes, choice, optional_positive_int,
                                      positive_int, probability, real)
from ._modalities import FromDataMixin

__all__ = ['IMF', 'imf_contrastive_loss']

JOINT = 'joint'
#: How the image/text embeddings are made: a learned linear map of the features to d (any
#: feature width), or the features themselves as a trainable table (the authors' code, after
#: pooling the features to d, e.g. DB15K's AvgPool of 4,096-d VGG features to 256).
FEATURE_ENCODERS = ('projection', 'table')
DECISIONS = ('mean', 'learned')


def imf_contrastive_loss(embeddings: List[Tensor]) -> Tensor:
    r"""The contrastive loss that IMF's code defines (:obj:`IMF.contrastive_loss`, never
    called there), for any number :math:`S \geq 2` of modality embeddings
    :math:`\mathbf{E}_m \in \mathbb{R}^{B \times d}` of the same :math:`B` entities, each
    divided by its Frobenius norm (as the code does: one norm per batch matrix, not per row),

    .. math::
        \mathcal{L}_{con} = \frac{1}{B}\sum_b \mathrm{softplus}\Big(
        \frac{1}{SB}\sum_m \sum_{c \neq b} \hat{\mathbf{e}}_{m,b} \cdot
        \hat{\mathbf{e}}_{m,c} - \binom{S}{2}^{-1} \sum_{m < n} \hat{\mathbf{e}}_{m,b} \cdot
        \hat{\mathbf{e}}_{n,b}\Big), \qquad \hat{\mathbf{E}}_m = \mathbf{E}_m /
        \|\mathbf{E}_m\|_F,

    the positives being one entity's modalities and the negatives the other entities of the
    batch within a modality (the mean over a row of :math:`\hat{\mathbf{E}}_m
    \hat{\mathbf{E}}_m^\top` with its diagonal zeroed, as the code computes it)."""
    S = len(embeddings)
    if S < 2:
        raise ValueError("the contrastive loss needs at least two modalities")
    E = [x / torch.linalg.norm(x).clamp(min=1e-12) for x in embeddings]
    B = E[0].size(0)
    pos = torch.stack([(E[m] * E[n]).sum(-1) for m in range(S) for n in range(m + 1, S)],
                      dim=-1).mean(dim=-1)
    neg = sum(((x @ x.t()).sum(-1) - (x * x).sum(-1)) for x in E) / (S * B)
    return F.softplus(neg - pos).mean()


class IMF(FromDataMixin, KGEModel):
    r"""The IMF model from the `"IMF: Interactive Multimodal Fusion Model for Link
    Prediction" <https://arxiv.org/abs/2303.10816>`_ paper (WWW 2023), for any number of
    modalities: modality-specific entity and relation embeddings, an interactive
    (Mutan-style) fusion of them into a joint modality, one TuckER scorer per modality and for
    the joint one, and a decision fusion of their predictions.

    **Modality embeddings.** The structure :math:`\mathbf{e}_s` is learned; each feature
    modality :math:`m` (image, text, ...) is :math:`\mathbf{e}_m = \mathbf{x}_m
    \mathbf{W}_m` (:obj:`feature_encoder="projection"`, any feature width) or the features
    themselves as a trainable table (:obj:`"table"`, the authors' code, whose DB15K features
    are average-pooled to :math:`d = 256` first: pool yours to :obj:`hidden_channels`, e.g.
    with :class:`~torch_mmkg.transforms.PoolModality` or by hand). Relations have one table
    per modality, :math:`\mathbf{r}_m`, doubled for inverse relations.

    **Interactive fusion** (:class:`~torch_mmkg.nn.fusion.MutanFusion`, :math:`K = 2`
    heads), for entities and likewise for relations,

    .. math::
        \mathbf{e}_{mm} = \mathrm{ReLU}\Big(\sum_{k=1}^{K} \prod_{m}
        \mathrm{ReLU}\big(\mathbf{W}_{mk}\, \mathrm{Drop}(\mathbf{e}_m) +
        \mathbf{b}_{mk}\big)\Big).

    **Per-modality scorers.** For :math:`m \in \{s, \ldots, mm\}`,

    .. math::
        p_m(h, r, t) = \sigma\big(\mathrm{TuckER}_m(\mathbf{h}_m, \mathbf{r}_m) \cdot
        \mathbf{t}_m\big),

    TuckER with its batch norms and dropouts 0.3/0.4/0.5 (the authors' layer, as in MoMoK),
    trained 1-N with inverse relations by

    .. math::
        \mathcal{L} = \sum_m \mathrm{BCE}\big(p_m,\ (1 - \epsilon)\, y + 1/N\big)
        \;[+\ \lambda \mathcal{L}_{con}],

    the smoothing of the authors' data loader, which is exactly
    :class:`~torch_mmkg.nn.loss.BCELoss`'s (:obj:`label_smoothing` :math:`\epsilon = 0.1`).

    **Decision fusion.** With :obj:`decision="mean"` (the authors' code) the prediction is
    :math:`\frac{1}{|M|}\sum_m p_m` with equal weights; :obj:`decision="learned"` is the
    paper's learned weighted average over the predictions of all modalities,
    :math:`\sum_m \omega_m p_m` with :math:`\omega = \mathrm{softmax}(\mathbf{w})` (learnable
    :math:`\mathbf{w}`, equal weights at the start), trained by one more BCE on the fused
    prediction. The paper's text was not available to this implementation: this form is read
    from its abstract ("the learned weighted average over the predictions of all
    modalities"). The returned score is the fused probability shifted by :math:`-1`
    (:class:`~torch_mmkg.nn.interactions.EnsembleInteraction`), which ranks identically.

    **Contrastive loss** (:obj:`contrastive_weight` :math:`\lambda`, default 0: off). The
    paper adds contrastive learning to the fusion; the authors' code defines
    :obj:`contrastive_loss` but never calls it, so the published numbers were obtained
    without it. With :math:`\lambda > 0` :func:`imf_contrastive_loss` (the code's formula)
    over the modality embeddings of the query entities of each batch is added.

    **Missing modalities.** With :obj:`mask_missing=True` a missing modality's factor is
    skipped in the Mutan product, its scorer never judges a query or candidate lacking it
    (the prediction averages the scorers that can), and the contrastive loss uses the
    entities that have every modality. :obj:`mask_missing=False` treats the stored (zero)
    features as real, the paper's behaviour.

    **As a composition** it is an :class:`~torch_mmkg.nn.EntityRepresentation` (structure and
    encoded modalities), every slot a view (:class:`~torch_mmkg.nn.fusion.AllSlots`),
    per-modality relation tables and an
    :class:`~torch_mmkg.nn.interactions.EnsembleInteraction` of TuckER scorers whose joint view
    is fused by :class:`~torch_mmkg.nn.fusion.MutanFusion`: MoMoK's structure (IMF is its
    ancestor), with Mutan in place of attention and plain modality embeddings in place of
    experts.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations :math:`R` (inverses are added).
        hidden_channels (int): The entity embedding size :math:`d` of every modality.
        features (Mapping[str, Tensor], optional): Per modality, :obj:`[N, F_m]` features.
            (default: :obj:`None`, a structure-only model with a joint scorer over it)
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` availability.
        relation_channels (int, optional): :math:`d_r`. (default: :obj:`hidden_channels`,
            the authors' :obj:`r_dim = dim = 256`)
        num_heads (int, optional): Mutan heads :math:`K`. (default: :obj:`2`)
        fusion_dropout (float, optional): Mutan's dropout. (default: :obj:`0.2`)
        input_dropout (float, optional): TuckER's. (default: :obj:`0.3`)
        hidden_dropout1 (float, optional): TuckER's. (default: :obj:`0.4`)
        hidden_dropout2 (float, optional): TuckER's. (default: :obj:`0.5`)
        label_smoothing (float, optional): :math:`\epsilon`. (default: :obj:`0.1`)
        feature_encoder (str, optional): :obj:`"projection"` or :obj:`"table"` (see above).
            (default: :obj:`"projection"`)
        decision (str, optional): :obj:`"mean"` (the authors' code) or :obj:`"learned"`
            (the paper). (default: :obj:`"mean"`, the code behind the published tables)
        contrastive_weight (float, optional): :math:`\lambda \geq 0`. (default: :obj:`0.0`)
        mask_missing (bool, optional): (default: :obj:`True`)
        loss (torch.nn.Module, optional): Replaces :obj:`BCELoss(label_smoothing)`.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`modality_stack` :math:`[*, S, d]` and mask :math:`[*, S]`
    """
    one_to_n = True

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Optional[Mapping[str, Tensor]] = None,
                 masks: Optional[Mapping[str, Tensor]] = None,
                 relation_channels: Optional[int] = None, num_heads: int = 2,
                 fusion_dropout: float = 0.2, input_dropout: float = 0.3,
                 hidden_dropout1: float = 0.4, hidden_dropout2: float = 0.5,
                 label_smoothing: float = 0.1, feature_encoder: str = 'projection',
                 decision: str = 'mean', contrastive_weight: float = 0.0,
                 mask_missing: bool = True, loss: Optional[torch.nn.Module] = None):
        check_sizes(self, num_nodes, num_relations, hidden_channels)
        relation_channels = optional_positive_int(self, 'relation_channels', relation_channels)
        num_heads = positive_int(self, 'num_heads', num_heads)
        fusion_dropout, input_dropout, hidden_dropout1, hidden_dropout2, label_smoothing = (
            probability(self, name, value) for name, value in (
                ('fusion_dropout', fusion_dropout), ('input_dropout', input_dropout),
                ('hidden_dropout1', hidden_dropout1), ('hidden_dropout2', hidden_dropout2),
                ('label_smoothing', label_smoothing)))
        choice(self, 'feature_encoder', feature_encoder, FEATURE_ENCODERS)
        choice(self, 'decision', decision, DECISIONS)
        contrastive_weight = real(self, 'contrastive_weight', contrastive_weight, 0.0)
        features = dict(features or {})
        if JOINT in features:
            raise ValueError(f"'{JOINT}' is a reserved name here; rename that modality")
        if feature_encoder == 'table':
            bad = {m: x.size(-1) for m, x in features.items()
                   if hasattr(x, 'size') and x.size(-1) != hidden_channels}
            if bad:
                raise ValueError(f"feature_encoder='table' uses the features as the "
                                 f"embeddings: they must have width hidden_channels="
                                 f"{hidden_channels} (pool them first), got {bad}")
        d = int(hidden_channels)
        dr = int(relation_channels or d)
        representation = EntityRepresentation(
            num_nodes, d, features, masks if mask_missing else None,
            projection_layers=1 if feature_encoder == 'projection' else 0,
            projection_bias=False, trainable_features=feature_encoder == 'table',
            init=torch.nn.init.xavier_normal_, reserved=(JOINT, ))
        slots = representation.slots
        scorers = {s: TuckERInteraction(d, dr, input_dropout, hidden_dropout1,
                                        hidden_dropout2, batch_norm=True,
                                        dropout_target='matrix', core_init='xavier')
                   for s in slots + [JOINT]}
        interaction = EnsembleInteraction(
            slots, scorers,
            entity_fusion=MutanFusion(d, len(slots), num_heads, fusion_dropout, mask_missing),
            relation_fusion=MutanFusion(dr, len(slots), num_heads, fusion_dropout,
                                        mask_missing=False),
            joint_training=True, average='probability',
            decision_weights=decision == 'learned')
        super().__init__(num_nodes, num_relations, hidden_channels, interaction,
                         loss or BCELoss(label_smoothing), inverse_relations=True,
                         representation=representation, fusion=AllSlots(),
                         relation_embedding=False)
        self.rel_emb = torch.nn.Parameter(torch.empty(len(slots), 2 * num_relations, dr))
        self.relation_channels = dr
        self.feature_encoder, self.decision = feature_encoder, decision
        self.contrastive_weight = float(contrastive_weight)
        self.mask_missing = bool(mask_missing)
        self.reset_parameters()

    def reset_parameters(self):
        self.representation.reset_structure()
        torch.nn.init.xavier_normal_(self.rel_emb.view(-1, self.relation_channels))
        self.representation.reset_encoders()
        self.interaction.reset_parameters()

    @property
    def slots(self) -> List[str]:
        r"""The modality slots (structure first)."""
        return self.representation.slots

    @property
    def scorers(self) -> Tuple[str, ...]:
        r"""The scorers: the slots, then :obj:`"joint"`."""
        return self.interaction.names

    @property
    def entity_fusion(self) -> MutanFusion:
        return self.interaction.entity_fusion

    @property
    def relation_fusion(self) -> MutanFusion:
        return self.interaction.relation_fusion

    def relation(self, rel_type: Tensor) -> Tensor:
        r"""The per-modality relation embeddings :math:`\mathbf{r}_m`, :math:`[*, S, d_r]`
        (relation ids in :math:`[0, 2R)`)."""
        return self.rel_emb[:, rel_type].movedim(0, -2)

    def decision_weights(self) -> Tensor:
        r"""The decision weights :math:`\omega` of the scorers (equal with
        :obj:`decision="mean"`)."""
        omega = self.interaction.decision_weights()
        if omega is None:
            n = len(self.scorers)
            return self.rel_emb.new_full((n, ), 1.0 / n)
        return omega

    def joint(self, stack: Tensor, mask: Optional[Tensor] = None,
              relation: bool = False) -> Tensor:
        r"""The interactive fusion of entity (or, with :obj:`relation=True`, relation)
        modality stacks."""
        if relation:
            return self.relation_fusion(stack)[0]
        return self.entity_fusion(stack, mask)[0]

    def query_terms(self, cache: Optional[ScoringCache], entity_index: Tensor
                    ) -> Dict[str, Tensor]:
        r""":math:`\lambda \mathcal{L}_{con}` over the query entities of the batch (those
        having every modality where missing ones are masked)."""
        if not self.contrastive_weight or len(self.slots) < 2:
            return {}
        if cache is None:
            stack, mask = self.representation(entity_index)
        else:
            stack, mask = cache.table[entity_index], cache.mask[entity_index]
        if self.mask_missing:
            keep = mask.all(dim=-1)
            stack = stack[keep]
        if stack.size(0) == 0:
            return {'contrastive': stack.sum() * 0.0}
        loss = imf_contrastive_loss(list(stack.unbind(-2)))
        return {'contrastive': self.contrastive_weight * loss}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, hidden_channels={self.hidden_channels}, '
                f'modalities={self.modalities}, decision={self.decision!r})')
