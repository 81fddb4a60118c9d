from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from .adaptive import AdaptiveFusion
from .base import Fusion, FusionBasis, check_stack


class ContextGatedFusion(Fusion):
    r"""Context-guided adaptive fusion (CGuAF) from the `"Large Model-Driven Balanced
    Multimodal Knowledge Graph Completion" <https://github.com/guoynow/LBMKGC>`_ paper
    (LBMKGC, Eqs. 9–11): the modalities (slots :math:`1, \ldots, S-1` of the stack) are
    weighed per entity,

    .. math::
        \omega_m(e) = \mathrm{softmax}_{m \in M}\big(\mathbf{v}^{\top}
        \tanh(\mathbf{e}_m)\big), \qquad \mathbf{h}_{mm} = \sum_{m} \omega_m(e)\,
        \mathbf{e}_m,

    then mixed with the structural embedding (slot 0) in the context of the relation,

    .. math::
        \mathbf{h}_{\mathrm{joint}} = \zeta_r\, \mathbf{e}_s + (1 - \zeta_r)\,
        \mathbf{h}_{mm}, \qquad \zeta_r = \sigma(g_r),

    with one learnable scalar :math:`g_r` per relation (:math:`g_r = 0` at initialisation).
    Missing modalities are left out of :math:`\omega`, and an entity without any modality is
    its structural embedding; :obj:`mask_missing=False` mixes every stored row, as the
    paper's code does.

    It splits into the relation-free basis :math:`(\mathbf{e}_s, \mathbf{h}_{mm})` and the
    relation weights :math:`(\zeta_r, 1 - \zeta_r)` (:meth:`decompose`, :meth:`mix`).

    Args:
        channels (int): Width :math:`D` of each representation.
        num_relations (int): The number of relations.
        mask_missing (bool, optional): (default: :obj:`True`)

    Shapes:
        - **input:** stack :math:`[*, S, D]` (:math:`S \geq 2`), mask :math:`[*, S]`,
          relation ids broadcastable to :math:`[*]`
        - **output:** joint embedding :math:`[*, D]`, weights :math:`(\zeta_r, 1 -
          \zeta_r)` :math:`[*, 2]`
    """
    relation_dependent = True
    decomposable = True

    def __init__(self, channels: int, num_relations: int, mask_missing: bool = True):
        super().__init__()
        self.channels, self.num_relations = int(channels), int(num_relations)
        self.mask_missing = bool(mask_missing)
        self.modal = AdaptiveFusion(channels, None, mask_missing)
        self.gate = torch.nn.Parameter(torch.zeros(num_relations))  # modal initialised itself

    @classmethod
    def build(cls, channels: int, num_slots: int, num_relations: Optional[int] = None,
              mask_missing: bool = True, **kwargs) -> Fusion:
        if num_slots < 2 or num_relations is None:
            raise ValueError(f"ContextGatedFusion mixes a structural slot with modalities "
                             f"per relation: it needs num_slots >= 2 (got {num_slots}) and "
                             f"num_relations (got {num_relations})")
        return cls(channels, num_relations, mask_missing, **kwargs)

    def reset_parameters(self):
        self.modal.reset_parameters()
        torch.nn.init.zeros_(self.gate)

    def modality_weights(self, stack: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        r"""The weights :math:`\omega_m(e)` :math:`[*, S - 1]` (masked modalities get 0)."""
        return self.modal.weights(stack[..., 1:, :], None if mask is None else mask[..., 1:])

    def zeta(self, rel: Tensor) -> Tensor:
        r"""The structure share :math:`\zeta_r = \sigma(g_r)` of relations :obj:`rel`."""
        return torch.sigmoid(self.gate[rel])

    def decompose(self, stack: Tensor, mask: Optional[Tensor] = None) -> FusionBasis:
        r"""The pair :math:`(\mathbf{e}_s, \mathbf{h}_{mm})` :math:`[*, 2, D]` and whether
        the entity has any modality :math:`[*]`."""
        check_stack(stack, mask, self.channels)
        h_mm = (self.modality_weights(stack, mask)[..., None] * stack[..., 1:, :]).sum(-2)
        if mask is not None and self.mask_missing:
            has = mask[..., 1:].any(dim=-1)
        else:
            has = torch.ones(stack.shape[:-2], dtype=torch.bool, device=stack.device)
        return FusionBasis(torch.stack([stack[..., 0, :], h_mm], dim=-2), has)

    def mix(self, state: Any, rel: Tensor) -> Tensor:
        r"""The weights :math:`(\zeta_r, 1 - \zeta_r)` :math:`[*, 2]`, :math:`(1, 0)` for
        entities without any modality."""
        has = state
        zeta = self.zeta(rel).expand(has.shape)
        z = torch.where(has, zeta, torch.ones_like(zeta))
        return torch.stack([z, 1.0 - z], dim=-1)

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        if rel is None:
            raise ValueError("ContextGatedFusion depends on the relation: pass rel")
        basis, has = self.decompose(stack, mask)
        w = self.mix(has, rel)
        return self.combine(basis, w), w

    def extra_repr(self) -> str:
        return (f'{self.channels}, num_relations={self.num_relations}, '
                f'mask_missing={self.mask_missing}')
