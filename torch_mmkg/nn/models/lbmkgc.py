import math
from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.alignment import logit_scale_temperature, multimodal_contrastive_loss
from torch_mmkg.nn.fusion import ContextGatedFusion
from torch_mmkg.nn.kge.base import KGEModel
from torch_mmkg.nn.validation import real
from ._modalities import FromDataMixin, check_projected_stack_args, projected_rotate


class LBMKGC(FromDataMixin, KGEModel):
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
    :class:`~torch_mmkg.transforms.CompleteModality`, and its ablation "w/o LvMC" (random
    rows for the missing modalities, treated as present) is
    :class:`~torch_mmkg.transforms.RandomFillModality`.

    The paper's ablation "w/o :math:`\mathbf{e}_s`" (Table 2) is :obj:`use_structure=False`:
    the joint embedding is the modality part alone, :math:`\mathbf{h}_{\mathrm{joint}} =
    \mathbf{h}_{mm}` (:math:`\zeta_r \equiv 0`; there is no gate and the fusion no longer
    depends on the relation), and the structural embedding only stands in for entities
    without any modality (none after the modality completion LvMC). Its ablations "w/o
    :math:`\mathbf{e}_t`" and "w/o :math:`\mathbf{e}_v`" are :meth:`from_data` with
    :obj:`modalities` naming the one kept.

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
        fusion (str or Fusion, optional): :obj:`"context"` (CGuAF,
            :class:`~torch_mmkg.nn.fusion.ContextGatedFusion`), :obj:`"mean"` (the ablation
            "w/o CGuAF": the mean of the available representations, structure included), or
            any other registered fusion (any case) or :class:`~torch_mmkg.nn.fusion.Fusion`
            module. (default: :obj:`"context"`)
        mask_missing (bool, optional): (default: :obj:`True`)
        projection_layers (int, optional): :obj:`2` (MLP :math:`P_m`) or :obj:`1`.
            (default: :obj:`2`)
        use_structure (bool, optional): Mix the structural embedding into the joint
            embedding (Eq. 11); :obj:`False` is the ablation "w/o :math:`\mathbf{e}_s`"
            (CGuAF only: :obj:`fusion="context"` or a
            :class:`~torch_mmkg.nn.fusion.ContextGatedFusion` built with it).
            (default: :obj:`True`)
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
    legacy_keys = KGEModel.legacy_keys + (
        (r'projection\.', 'representation.projection.'), (r'modal_fusion\.', 'fusion.modal.'),
        (r'gate$', 'fusion.gate'))

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 margin: float = 12.0, epsilon: float = 2.0,
                 adversarial_temperature: float = 4.0, regularization_weight: float = 1e-5,
                 fusion='context', mask_missing: bool = True,
                 projection_layers: int = 2, use_structure: bool = True,
                 alignment_weight: float = 0.0, alignment_temperature: float = 0.07,
                 loss=None):
        margin, epsilon, adversarial_temperature, projection_layers = (
            check_projected_stack_args(self, num_nodes, num_relations, hidden_channels,
                                       margin, epsilon, adversarial_temperature,
                                       projection_layers))
        alignment_weight = real(self, 'alignment_weight', alignment_weight, 0.0)
        alignment_temperature = real(self, 'alignment_temperature', alignment_temperature,
                                     0.0, low_open=True)
        if not features:
            raise ValueError("LBMKGC needs at least one modality (use RotatE without any)")
        if not isinstance(use_structure, bool):
            raise ValueError(f"LBMKGC: use_structure must be true or false, got "
                             f"{use_structure!r}")
        if isinstance(fusion, ContextGatedFusion):
            if fusion.use_structure != use_structure:
                raise ValueError(f"LBMKGC: use_structure={use_structure} contradicts the "
                                 f"given fusion, built with use_structure="
                                 f"{fusion.use_structure}")
        elif not use_structure:
            from torch_mmkg.nn.fusion import FUSIONS
            if not (isinstance(fusion, str) and fusion in FUSIONS
                    and FUSIONS[fusion] is ContextGatedFusion):
                raise ValueError(f"LBMKGC: use_structure=False (the ablation 'w/o e_s') "
                                 f"removes the structural share of CGuAF; it needs "
                                 f"fusion='context', got fusion={fusion!r}")
        if alignment_weight and len(features) < 2:
            raise ValueError("LBMKGC: alignment_weight > 0 needs at least two modalities to "
                             f"align, got {list(features)}")
        super().__init__(num_nodes, num_relations, hidden_channels, **projected_rotate(
            self, num_nodes, num_relations, hidden_channels, features, masks, margin, epsilon,
            adversarial_temperature, regularization_weight, projection_layers, fusion,
            mask_missing, loss, use_structure=use_structure))
        self.mask_missing = bool(mask_missing)
        self.use_structure = use_structure
        self.alignment_weight = float(alignment_weight)
        self._init_scale = math.log(1.0 / alignment_temperature)
        self.align_logit_scale = (torch.nn.Parameter(torch.tensor(self._init_scale))
                                  if alignment_weight else None)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        if self.align_logit_scale is not None:
            with torch.no_grad():
                self.align_logit_scale.fill_(self._init_scale)

    # CGuAF in the paper's terms ################################################################

    def _cguaf(self) -> ContextGatedFusion:
        if not isinstance(self.fusion, ContextGatedFusion):
            raise RuntimeError(f"this exists only with fusion='context' (CGuAF), not "
                               f"{type(self.fusion).__name__}")
        return self.fusion

    def modality_weights(self, stack: Tensor, mask: Tensor) -> Tensor:
        r"""The weights :math:`\omega_m(e)` :math:`[*, M]` of Eq. 9 (masked modalities get
        0) for stacks from :meth:`modality_stack`."""
        return self._cguaf().modality_weights(stack, mask)

    def zeta(self, rel_type: Tensor) -> Tensor:
        r"""The structure share :math:`\zeta_r = \sigma(g_r)` of relations :obj:`rel_type`
        (zero with :obj:`use_structure=False`)."""
        return self._cguaf().zeta(rel_type)

    def pair(self, stack: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The structural and fused multi-modal embeddings stacked, :math:`[*, 2, 2d]`, and
        whether the entity has any modality :math:`[*]` (CGuAF's first stage)."""
        return tuple(self._cguaf().pair(stack, mask))

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

    def batch_terms(self, stack: Tensor, mask: Tensor, head_rows: Tensor, tail_rows: Tensor
                    ) -> Dict[str, Tensor]:
        r""":math:`\lambda \mathcal{L}_{\mathrm{CMoA}}` over the distinct entities of the
        batch's positive triples (not its negatives), when :obj:`alignment_weight` is set."""
        if not self.alignment_weight:
            return {}
        rows = torch.unique(torch.cat([head_rows, tail_rows]))
        return {'alignment': self.alignment_weight * self.alignment_loss(stack[rows],
                                                                         mask[rows])}

    def query_terms(self, cache, entity_index: Tensor) -> Dict[str, Tensor]:
        r"""Under the 1-N regime: :math:`\lambda \mathcal{L}_{\mathrm{CMoA}}` over the
        distinct query entities of the batch."""
        if not self.alignment_weight:
            return {}
        stack, mask = self.representation(torch.unique(entity_index))
        return {'alignment': self.alignment_weight * self.alignment_loss(stack, mask)}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, modalities={self.modalities}, '
                f'fusion={type(self.fusion).__name__}'
                f'{"" if self.use_structure else ", use_structure=False"})')
