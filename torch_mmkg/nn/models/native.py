from typing import Any, Mapping, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.loader import Negatives
from torch_mmkg.nn.fusion import FUSIONS, AdaptiveFusion, ConcatFusion
from torch_mmkg.nn.interactions import RotatEInteraction
from torch_mmkg.nn.kge.base import KGEModel, compact_batch_index
from torch_mmkg.nn.loss import SelfAdversarialLoss
from torch_mmkg.nn.validation import choice
from ._modalities import (FromDataMixin, ProjectedStackMixin, check_projected_stack_args,
                          register_modalities)


class NATIVE(ProjectedStackMixin, FromDataMixin, KGEModel):
    r"""The ReDAF model of NATIVE from the `"NATIVE: Multi-modal Knowledge Graph Completion
    in the Wild" <https://arxiv.org/abs/2406.17605>`_ paper (relation-guided dual adaptive
    fusion; the CoMAT adversarial training regime wraps it separately).

    Each entity has a learnable structural embedding :math:`\mathbf{e}_S \in \mathbb{C}^d` and,
    per modality :math:`m`, frozen features :math:`\mathbf{x}_m` projected by a two-layer MLP
    :math:`\mathbf{e}_m = P_m(\mathbf{x}_m)`. In the context of relation :math:`r` the joint
    embedding is (Eqs. 2–3)

    .. math::
        \mathbf{e}^{\mathrm{joint}}_r = \sum_{m \in M \cup \{S\}} \omega_m(e, r)\,
        \mathbf{e}_m, \qquad \omega_m(e, r) = \mathrm{softmax}_m\big(\mathbf{v}^{\top}
        \tanh(\mathbf{e}_m) / \sigma(\zeta_r)\big),

    the same :math:`r` for head and tail, scored by RotatE, :math:`\gamma - \sum_k
    |h_k e^{i\theta_{r,k}} - t_k|`, and trained with the self-adversarial loss plus an
    :math:`L_2` penalty on the raw embeddings.

    Missing modalities (mask False) are left out of the softmax, so an entity is never scored
    through a feature it does not have; :obj:`mask_missing=False` restores the paper's
    behaviour. For evaluation the projections are computed once per pass and the fusion once
    per relation of the batch, not per query.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations.
        hidden_channels (int): The complex embedding size :math:`d` (entities have real
            width :math:`2d`).
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` features.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability (default: all present).
        margin (float, optional): :math:`\gamma`, finite. (default: :obj:`4.0`)
        epsilon (float, optional): Initialisation range :math:`\pm(\gamma+\epsilon)/d`,
            which must be positive. (default: :obj:`2.0`)
        adversarial_temperature (float, optional): :math:`\geq 0`. (default: :obj:`2.0`)
        regularization_weight (float, optional): :math:`L_2` weight, :math:`\geq 0`.
            (default: :obj:`1e-5`)
        mask_missing (bool, optional): (default: :obj:`True`)
        relation_temperature (bool, optional): Use :math:`\zeta_r` (ablation "w/o
            :math:`\zeta_r`" when False). (default: :obj:`True`)
        fusion (str, optional): :obj:`"adaptive"` (ReDAF), or the paper's ablations
            :obj:`"mean"` ("w/o :math:`\omega_m`": uniform weights over the available
            representations), :obj:`"concat"` and :obj:`"product"` (see
            :mod:`torch_mmkg.nn.fusion`). (default: :obj:`"adaptive"`)
        projection_layers (int, optional): :obj:`2` for the MLP :math:`P_m`, :obj:`1` for
            a single linear map (ablation "w/o :math:`P_m`"). (default: :obj:`2`)
        loss (torch.nn.Module, optional): Replaces the default loss.

    The ablation switches of the paper's Table 4 that concern training (w/o CoMAT, w/o the
    gradient penalty, vanilla GAN loss, MLP discriminator) are options of
    :class:`~torch_mmkg.training.CoMAT`.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`modality_stack` :math:`[*, M + 1, 2d]` and
          :math:`[*, M + 1]`
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 margin: float = 4.0, epsilon: float = 2.0,
                 adversarial_temperature: float = 2.0, regularization_weight: float = 1e-5,
                 mask_missing: bool = True, relation_temperature: bool = True,
                 fusion: str = 'adaptive', projection_layers: int = 2, loss=None):
        margin, epsilon, adversarial_temperature, projection_layers = (
            check_projected_stack_args(self, num_nodes, num_relations, hidden_channels,
                                       margin, epsilon, adversarial_temperature,
                                       projection_layers))
        choice(self, 'fusion', fusion, sorted(FUSIONS))
        super().__init__(num_nodes, num_relations, hidden_channels, RotatEInteraction(margin),
                         loss or SelfAdversarialLoss(adversarial_temperature),
                         regularization='l2', regularization_weight=regularization_weight)
        if not features:
            raise ValueError("NATIVE needs at least one modality (use RotatE without any)")
        self.modalities = register_modalities(self, num_nodes, features, masks)
        width = 2 * hidden_channels
        self._build_embeddings(num_nodes, num_relations, hidden_channels, features, margin,
                               epsilon, projection_layers)
        if fusion == 'adaptive':
            self.fusion = AdaptiveFusion(width, num_relations if relation_temperature else None,
                                         mask_missing)
        elif fusion == 'concat':
            self.fusion = ConcatFusion(width, len(self.modalities) + 1, mask_missing)
        else:
            self.fusion = FUSIONS[fusion](width, mask_missing)
        self.reset_parameters()

    def reset_parameters(self):
        self._reset_embeddings()
        self.fusion.reset_parameters()

    # Representations ##########################################################################

    def fuse(self, stack: Tensor, mask: Tensor, rel_type: Tensor,
             logits: Optional[Tensor] = None) -> Tensor:
        r"""Joint embeddings :math:`[*, 2d]` of stacks in the context of :obj:`rel_type`
        (broadcast against the stack's leading dimensions)."""
        if not self.fusion.relation_dependent:
            return self.fusion(stack, mask)[0]
        rel = rel_type.expand(stack.shape[:-2])
        return self.fusion(stack, mask, rel, logits)[0]

    def entity(self, index: Optional[Tensor] = None) -> Tensor:
        if self.fusion.relation_dependent:
            raise RuntimeError("NATIVE's entity representation depends on the relation; use "
                               "joint(index, rel_type)")
        return self.fusion(*self.modality_stack(index))[0]

    # Scoring ##################################################################################

    def prepare_scoring(self) -> Any:
        r"""The all-entity stack and mask, and either the joint table (relation-free
        fusions) or the relation-free fusion logits, once per evaluation pass."""
        stack, mask = self.modality_stack(None)
        if not self.fusion.relation_dependent:
            return stack, mask, self.fusion(stack, mask)[0]
        return stack, mask, self.fusion.logits(stack)

    def _static_table(self, cache: Any) -> Optional[Tensor]:
        return None if self.fusion.relation_dependent else cache[2]

    def _relation_table(self, cache: Any, rel: Tensor) -> Tensor:
        stack, mask, logits = cache
        w = self.fusion.weights(None, mask, rel, logits)
        return torch.einsum('nm,nmd->nd', w, stack)

    def score_negatives(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                        negatives: Negatives) -> Tuple[Tensor, Tensor]:
        r"""Positive and negative scores; the projections are computed once per distinct
        entity of the batch, the fusion logits once per entity and only their temperature
        per candidate."""
        cand = negatives.index
        B, K = cand.shape
        index, hi, ti, ci = compact_batch_index(head_index, tail_index, cand, self.num_nodes)
        stack, mask = self.modality_stack(index)
        r = self.relation(rel_type)
        ch = negatives.corrupt_head
        if not self.fusion.relation_dependent:  # one joint table for the batch
            table = self.fusion(stack, mask)[0]
            h, t = table[hi], table[ti]
        else:
            logits = self.fusion.logits(stack)
            h = self.fuse(stack[hi], mask[hi], rel_type, logits[hi])
            t = self.fuse(stack[ti], mask[ti], rel_type, logits[ti])
            w = self.fusion.weights(None, mask[ci], rel_type[:, None].expand(B, K),
                                    logits[ci])  # [B, K, M + 1]
        pos = self.interaction(h, r, t)
        anchor = torch.where(ch[:, None], t, h)
        if not self.fusion.relation_dependent and hasattr(self.interaction,
                                                          'score_candidates'):
            neg = self.interaction.score_candidates(anchor, r, table, ci, ch)
        elif self.fusion.relation_dependent and hasattr(self.interaction,
                                                        'score_weighted_candidates'):
            neg = self.interaction.score_weighted_candidates(anchor, r, stack, w, ci, ch)
        else:  # fused kernels unavailable: gather the candidates
            c = (table[ci] if not self.fusion.relation_dependent else
                 (w[..., None] * stack[ci]).sum(dim=-2))
            neg = self.interaction(torch.where(ch[:, None, None], c, h[:, None]), r[:, None],
                                   torch.where(ch[:, None, None], t[:, None], c))
        self._reg_inputs = (self.node_emb(head_index), self.rel_emb(rel_type),
                            self.node_emb(tail_index))
        return pos, neg

    def loss_1n(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__} is trained with negative sampling")
