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

    With :obj:`use_structure=False` (the paper's ablation "w/o :math:`\mathbf{e}_s`",
    Table 2) the structural embedding is left out of the joint embedding,
    :math:`\mathbf{h}_{\mathrm{joint}} = \mathbf{h}_{mm}` (:math:`\zeta_r \equiv 0`, so
    there is no gate :math:`g_r` and the fusion no longer depends on the relation). An entity
    without any available modality has no :math:`\mathbf{h}_{mm}`; it keeps its structural
    embedding so that it can still be scored (complete the modalities first, e.g. with
    :class:`~torch_mmkg.transforms.CompleteModality`, for a graph where none is missing).

    Args:
        channels (int): Width :math:`D` of each representation.
        num_relations (int, optional): The number of relations (needed unless
            :obj:`use_structure=False`). (default: :obj:`None`)
        mask_missing (bool, optional): (default: :obj:`True`)
        use_structure (bool, optional): Mix the structural embedding (slot 0) into the
            joint embedding; :obj:`False` is the ablation "w/o :math:`\mathbf{e}_s`".
            (default: :obj:`True`)

    Shapes:
        - **input:** stack :math:`[*, S, D]` (:math:`S \geq 2`), mask :math:`[*, S]`,
          relation ids broadcastable to :math:`[*]`
        - **output:** joint embedding :math:`[*, D]`, weights :math:`(\zeta_r, 1 -
          \zeta_r)` :math:`[*, 2]`
    """
    def __init__(self, channels: int, num_relations: Optional[int] = None,
                 mask_missing: bool = True, use_structure: bool = True):
        super().__init__()
        self.use_structure = bool(use_structure)
        if self.use_structure and num_relations is None:
            raise ValueError("ContextGatedFusion mixes the structural embedding per relation: "
                             "it needs num_relations (or use_structure=False)")
        self.channels = int(channels)
        self.num_relations = None if num_relations is None else int(num_relations)
        self.mask_missing = bool(mask_missing)
        self.modal = AdaptiveFusion(channels, None, mask_missing)
        if self.use_structure:  # modal initialised itself
            self.gate = torch.nn.Parameter(torch.zeros(self.num_relations))
        else:
            self.register_parameter('gate', None)

    @property
    def relation_dependent(self) -> bool:
        r"""Whether the joint embedding depends on the relation (through :math:`\zeta_r`,
        i.e. unless :obj:`use_structure=False`)."""
        return self.use_structure

    @property
    def decomposable(self) -> bool:
        return True

    @classmethod
    def build(cls, channels: int, num_slots: int, num_relations: Optional[int] = None,
              mask_missing: bool = True, use_structure: bool = True, **kwargs) -> Fusion:
        if num_slots < 2 or (use_structure and num_relations is None):
            raise ValueError(f"ContextGatedFusion mixes a structural slot with modalities "
                             f"per relation: it needs num_slots >= 2 (got {num_slots}) and "
                             f"num_relations (got {num_relations})")
        return cls(channels, num_relations, mask_missing, use_structure=use_structure,
                   **kwargs)

    def reset_parameters(self):
        self.modal.reset_parameters()
        if self.gate is not None:
            torch.nn.init.zeros_(self.gate)

    def modality_weights(self, stack: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        r"""The weights :math:`\omega_m(e)` :math:`[*, S - 1]` (masked modalities get 0)."""
        return self.modal.weights(stack[..., 1:, :], None if mask is None else mask[..., 1:])

    def zeta(self, rel: Tensor) -> Tensor:
        r"""The structure share :math:`\zeta_r = \sigma(g_r)` of relations :obj:`rel` (zero
        with :obj:`use_structure=False`)."""
        if self.gate is None:
            return self.modal.v.new_zeros(torch.as_tensor(rel).shape)
        return torch.sigmoid(self.gate[rel])

    def decompose(self, stack: Tensor, mask: Optional[Tensor] = None) -> FusionBasis:
        r"""The pair :math:`(\mathbf{e}_s, \mathbf{h}_{mm})` :math:`[*, 2, D]` and whether
        the entity has any modality :math:`[*]` (:meth:`pair`); with
        :obj:`use_structure=False`, the relation-free joint embedding :math:`[*, 1, D]`."""
        if not self.use_structure:
            return super().decompose(stack, mask)
        return self.pair(stack, mask)

    def pair(self, stack: Tensor, mask: Optional[Tensor] = None) -> FusionBasis:
        r"""The pair :math:`(\mathbf{e}_s, \mathbf{h}_{mm})` :math:`[*, 2, D]` and whether
        the entity has any modality :math:`[*]`."""
        check_stack(stack, mask, self.channels)
        h_mm = (self.modality_weights(stack, mask)[..., None] * stack[..., 1:, :]).sum(-2)
        if mask is not None and self.mask_missing:
            has = mask[..., 1:].any(dim=-1)
        else:
            has = torch.ones(stack.shape[:-2], dtype=torch.bool, device=stack.device)
        return FusionBasis(torch.stack([stack[..., 0, :], h_mm], dim=-2), has)

    def mix(self, state: Any, rel: Optional[Tensor]) -> Tensor:
        r"""The weights :math:`(\zeta_r, 1 - \zeta_r)` :math:`[*, 2]` of the :meth:`pair`,
        :math:`(1, 0)` for entities without any modality (:math:`(0, 1)` for the others
        with :obj:`use_structure=False`, whatever :obj:`rel`)."""
        has = state
        if self.use_structure:
            zeta = self.zeta(rel).expand(has.shape)
        else:
            zeta = self.modal.v.new_zeros(has.shape)
        z = torch.where(has, zeta, torch.ones_like(zeta))
        return torch.stack([z, 1.0 - z], dim=-1)

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        if rel is None and self.use_structure:
            raise ValueError("ContextGatedFusion depends on the relation: pass rel")
        basis, has = self.pair(stack, mask)
        w = self.mix(has, rel)
        return self.combine(basis, w), w

    def extra_repr(self) -> str:
        return (f'{self.channels}, num_relations={self.num_relations}, '
                f'mask_missing={self.mask_missing}, use_structure={self.use_structure}')
