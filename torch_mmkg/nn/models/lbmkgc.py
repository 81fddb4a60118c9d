import math
from typing import Any, Mapping, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.loader import Negatives
from torch_mmkg.nn.fusion import AdaptiveFusion, MeanFusion
from torch_mmkg.nn.interactions import RotatEInteraction
from torch_mmkg.nn.kge.base import KGEModel, compact_batch_index
from torch_mmkg.nn.alignment import logit_scale_temperature, multimodal_contrastive_loss
from torch_mmkg.nn.loss import SelfAdversarialLoss
from torch_mmkg.nn.validation import choice, real
from ._modalities import (FromDataMixin, ProjectedStackMixin, check_projected_stack_args,
                          register_modalities)

FUSION_CHOICES = ('context', 'mean')


class LBMKGC(ProjectedStackMixin, FromDataMixin, KGEModel):
    r"""The LBMKGC model from the `"Large Model-Driven Balanced Multimodal Knowledge Graph
    Completion" <https://github.com/guoynow/LBMKGC>`_ paper: context-guided adaptive fusion
    (CGuAF) of a structural embedding and any number of (completed, aligned) modalities,
    scored by RotatE and trained with the self-adversarial loss.

    Each entity has a learnable structural embedding :math:`\mathbf{e}_s \in \mathbb{C}^d`
    and, per modality :math:`m`, frozen features :math:`\mathbf{f}_m` projected by a
    two-layer MLP, :math:`\mathbf{e}_m = P_m(\mathbf{f}_m)`. CGuAF first weighs the
    modalities of the entity (Eqs. 9–10),

    .. math::
        \omega_m(e) = \frac{\exp\big(\mathbf{v}^{\top}\tanh(\mathbf{e}_m)\big)}
        {\sum_{n \in M} \exp\big(\mathbf{v}^{\top}\tanh(\mathbf{e}_n)\big)}, \qquad
        \mathbf{h}_{mm} = \sum_{m \in M} \omega_m(e)\, \mathbf{e}_m,

    then mixes structure and modalities in the context of the triple's relation (Eq. 11),

    .. math::
        \mathbf{h}_{\mathrm{joint}} = \zeta_r\, \mathbf{e}_s + (1 - \zeta_r)\,
        \mathbf{h}_{mm}, \qquad \zeta_r = \sigma(g_r),

    with one learnable scalar :math:`g_r` per relation (the sigmoid keeps the mix convex, as
    in the authors' code), the same :math:`r` for head and tail. The score is RotatE (Eq.
    12) with margin :math:`\gamma`, :math:`F(h, r, t) = \gamma - \sum_k |h_k e^{i\theta_{r,
    k}} - t_k|`, and the loss the self-adversarial negative-sampling loss (Eq. 13).

    Optionally (:obj:`alignment_weight` :math:`\lambda > 0`) the cross-modal alignment CMoA
    is also trained jointly: :math:`\lambda` times the symmetric contrastive loss of Eq. 8
    (learnable temperature) between the projected modalities :math:`\mathbf{e}_a,
    \mathbf{e}_b` of the distinct entities of the batch's positive triples that have both
    (the other entities of the batch being the in-batch negatives), averaged over pairs of
    modalities.
    The paper's CMoA is a stage before the model: see
    :class:`~torch_mmkg.nn.CrossModalAlignment`; its modality completion LvMC is
    :class:`~torch_mmkg.transforms.CompleteModality`.

    Missing modalities (mask False) are left out of :math:`\omega` and an entity without any
    modality is its structural embedding (:math:`\mathbf{h}_{\mathrm{joint}} =
    \mathbf{e}_s`); :obj:`mask_missing=False` fuses every stored row as the paper's code
    does. For evaluation the projections and :math:`\mathbf{h}_{mm}` are computed once per
    pass and the mix once per relation of a batch.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations.
        hidden_channels (int): The complex embedding size :math:`d` (entities have real
            width :math:`2d`).
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` features.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability (default: all present).
        margin (float, optional): :math:`\gamma`, finite (the paper tunes it in 8–24).
            (default: :obj:`12.0`)
        epsilon (float, optional): Initialisation range :math:`\pm(\gamma+\epsilon)/d`,
            which must be positive. (default: :obj:`2.0`)
        adversarial_temperature (float, optional): The self-adversarial temperature
            :math:`\beta \geq 0`. (default: :obj:`4.0`)
        regularization_weight (float, optional): :math:`L_2` weight (:math:`\geq 0`) on the
            raw structural and relation embeddings of the batch. (default: :obj:`1e-5`)
        fusion (str, optional): :obj:`"context"` (CGuAF) or :obj:`"mean"` (the ablation
            "w/o CGuAF": the mean of the available representations, structure included).
            (default: :obj:`"context"`)
        mask_missing (bool, optional): (default: :obj:`True`)
        projection_layers (int, optional): :obj:`2` (MLP :math:`P_m`) or :obj:`1`.
            (default: :obj:`2`)
        alignment_weight (float, optional): :math:`\lambda \geq 0` of the joint CMoA loss
            (needs two modalities or more when positive). (default: :obj:`0.0`)
        alignment_temperature (float, optional): Initial temperature of that loss, finite
            and positive. (default: :obj:`0.07`)
        loss (torch.nn.Module, optional): Replaces the default loss.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`modality_stack` :math:`[*, M + 1, 2d]` and
          :math:`[*, M + 1]`; :meth:`modality_weights` :math:`[*, M]`
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 margin: float = 12.0, epsilon: float = 2.0,
                 adversarial_temperature: float = 4.0, regularization_weight: float = 1e-5,
                 fusion: str = 'context', mask_missing: bool = True,
                 projection_layers: int = 2, alignment_weight: float = 0.0,
                 alignment_temperature: float = 0.07, loss=None):
        margin, epsilon, adversarial_temperature, projection_layers = (
            check_projected_stack_args(self, num_nodes, num_relations, hidden_channels,
                                       margin, epsilon, adversarial_temperature,
                                       projection_layers))
        choice(self, 'fusion', fusion, FUSION_CHOICES)
        alignment_weight = real(self, 'alignment_weight', alignment_weight, 0.0)
        alignment_temperature = real(self, 'alignment_temperature', alignment_temperature,
                                     0.0, low_open=True)
        super().__init__(num_nodes, num_relations, hidden_channels, RotatEInteraction(margin),
                         loss or SelfAdversarialLoss(adversarial_temperature),
                         regularization='l2', regularization_weight=regularization_weight)
        if not features:
            raise ValueError("LBMKGC needs at least one modality (use RotatE without any)")
        if alignment_weight and len(features) < 2:
            raise ValueError("LBMKGC: alignment_weight > 0 needs at least two modalities to "
                             f"align, got {list(features)}")
        self.modalities = register_modalities(self, num_nodes, features, masks)
        self.fusion = fusion
        self.mask_missing = bool(mask_missing)
        self.alignment_weight = float(alignment_weight)
        width = 2 * hidden_channels
        self._build_embeddings(num_nodes, num_relations, hidden_channels, features, margin,
                               epsilon, projection_layers)
        if fusion == 'context':
            self.modal_fusion = AdaptiveFusion(width, None, mask_missing)
            self.gate = torch.nn.Parameter(torch.empty(num_relations))
        else:
            self.modal_fusion = MeanFusion(width, mask_missing)
            self.register_parameter('gate', None)
        self._init_scale = math.log(1.0 / alignment_temperature)
        self.align_logit_scale = (torch.nn.Parameter(torch.tensor(self._init_scale))
                                  if alignment_weight else None)
        self._align_inputs = None
        self.reset_parameters()

    def reset_parameters(self):
        self._reset_embeddings()
        self.modal_fusion.reset_parameters()
        if self.gate is not None:
            torch.nn.init.zeros_(self.gate)
        if self.align_logit_scale is not None:
            with torch.no_grad():
                self.align_logit_scale.fill_(self._init_scale)

    # Representations ##########################################################################

    def modality_weights(self, stack: Tensor, mask: Tensor) -> Tensor:
        r"""The weights :math:`\omega_m(e)` :math:`[*, M]` of Eq. 9 (masked modalities get
        0) for stacks from :meth:`modality_stack`."""
        if self.fusion != 'context':
            raise RuntimeError("modality weights exist only with fusion='context'")
        return self.modal_fusion.weights(stack[..., 1:, :], mask[..., 1:])

    def zeta(self, rel_type: Tensor) -> Tensor:
        r"""The structure share :math:`\zeta_r = \sigma(g_r)` of relations :obj:`rel_type`."""
        if self.gate is None:
            raise RuntimeError("zeta exists only with fusion='context'")
        return torch.sigmoid(self.gate[rel_type])

    def pair(self, stack: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The structural and fused multi-modal embeddings stacked, :math:`[*, 2, 2d]`, and
        whether the entity has any modality :math:`[*]` (CGuAF's first stage)."""
        h_mm = (self.modality_weights(stack, mask)[..., None] * stack[..., 1:, :]).sum(-2)
        has = (mask[..., 1:].any(dim=-1) if self.mask_missing else
               torch.ones(mask.shape[:-1], dtype=torch.bool, device=mask.device))
        return torch.stack([stack[..., 0, :], h_mm], dim=-2), has

    @staticmethod
    def mix_weights(has: Tensor, zeta: Tensor) -> Tensor:
        r"""The weights :math:`(\zeta_r, 1 - \zeta_r)` of the pair, :math:`(1, 0)` for
        entities without any modality; :math:`[*, 2]`."""
        z = torch.where(has, zeta, torch.ones_like(zeta))
        return torch.stack([z, 1.0 - z], dim=-1)

    def fuse(self, stack: Tensor, mask: Tensor, rel_type: Tensor) -> Tensor:
        r"""Joint embeddings :math:`[*, 2d]` of stacks in the context of :obj:`rel_type`
        (broadcast against the stack's leading dimensions)."""
        if self.fusion == 'mean':
            return self.modal_fusion(stack, mask)[0]
        pair, has = self.pair(stack, mask)
        zeta = self.zeta(rel_type).expand(has.shape)
        return (self.mix_weights(has, zeta)[..., None] * pair).sum(dim=-2)

    def entity(self, index: Optional[Tensor] = None) -> Tensor:
        if self.fusion == 'context':
            raise RuntimeError("LBMKGC's entity representation depends on the relation; use "
                               "joint(index, rel_type)")
        return self.modal_fusion(*self.modality_stack(index))[0]

    # Scoring ##################################################################################

    def prepare_scoring(self) -> Any:
        r"""The all-entity table (mean fusion), or the all-entity pair
        :math:`(\mathbf{e}_s, \mathbf{h}_{mm})` and availability, once per pass."""
        stack, mask = self.modality_stack(None)
        if self.fusion == 'mean':
            return self.modal_fusion(stack, mask)[0]
        return self.pair(stack, mask)

    def _static_table(self, cache: Any) -> Optional[Tensor]:
        return cache if self.fusion == 'mean' else None

    def _relation_table(self, cache: Any, rel: Tensor) -> Tensor:
        pair, has = cache
        w = self.mix_weights(has, self.zeta(rel).expand(has.shape))
        return torch.einsum('ns,nsd->nd', w, pair)

    def score_negatives(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                        negatives: Negatives) -> Tuple[Tensor, Tensor]:
        r"""Positive and negative scores; projections and the modality fusion are computed
        once per distinct entity of the batch, only the relation's mix per candidate (by the
        fused RotatE candidate kernels)."""
        cand, ch = negatives.index, negatives.corrupt_head
        B, K = cand.shape
        index, hi, ti, ci = compact_batch_index(head_index, tail_index, cand, self.num_nodes)
        stack, mask = self.modality_stack(index)
        r = self.relation(rel_type)
        if self.fusion == 'mean':
            table = self.modal_fusion(stack, mask)[0]
            h, t = table[hi], table[ti]
            neg = self.interaction.score_candidates(torch.where(ch[:, None], t, h), r, table,
                                                    ci, ch)
        else:
            pair, has = self.pair(stack, mask)
            zeta = self.zeta(rel_type)
            h = (self.mix_weights(has[hi], zeta)[..., None] * pair[hi]).sum(-2)
            t = (self.mix_weights(has[ti], zeta)[..., None] * pair[ti]).sum(-2)
            w = self.mix_weights(has[ci], zeta[:, None].expand(B, K))  # [B, K, 2]
            neg = self.interaction.score_weighted_candidates(
                torch.where(ch[:, None], t, h), r, pair, w, ci, ch)
        pos = self.interaction(h, r, t)
        self._reg_inputs = (self.node_emb(head_index), self.rel_emb(rel_type),
                            self.node_emb(tail_index))
        if self.alignment_weight:  # the distinct entities of the positives, not negatives
            rows = torch.unique(torch.cat([hi, ti]))
            self._align_inputs = (stack[rows], mask[rows])
        return pos, neg

    # Training #################################################################################

    @property
    def alignment_temperature(self) -> Optional[Tensor]:
        r"""The current temperature :math:`\tau` of the joint CMoA loss."""
        if self.align_logit_scale is None:
            return None
        return logit_scale_temperature(self.align_logit_scale)

    def alignment_loss(self, stack: Tensor, mask: Tensor) -> Tensor:
        r"""Eq. 8 between the projected modalities of the rows of :obj:`stack` (from
        :meth:`modality_stack`) that have both, averaged over the pairs of modalities."""
        if self.align_logit_scale is None:
            raise RuntimeError("the model was built with alignment_weight=0")
        views = {m: stack[:, i + 1] for i, m in enumerate(self.modalities)}
        masks = {m: mask[:, i + 1] for i, m in enumerate(self.modalities)}
        loss = multimodal_contrastive_loss(views, masks, self.alignment_temperature)
        return stack.new_zeros(()) if loss is None else loss

    def loss(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
             negatives: Optional[Negatives] = None) -> Tensor:
        r"""The self-adversarial loss (Eq. 13) plus the :math:`L_2` penalty, plus
        :math:`\lambda \mathcal{L}_{\mathrm{CMoA}}` over the entities of the batch's positive
        triples when :obj:`alignment_weight` is set."""
        out = super().loss(head_index, rel_type, tail_index, negatives)
        inputs, self._align_inputs = self._align_inputs, None
        if self.alignment_weight and inputs is not None:
            out = out + self.alignment_weight * self.alignment_loss(*inputs)
        return out

    def loss_1n(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__} is trained with negative sampling")

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, modalities={self.modalities}, '
                f'fusion={self.fusion!r})')
