from typing import Optional, Tuple

import torch
from torch import Tensor

from .base import Fusion


class StructureAndFused(Fusion):
    r"""Two views of an entity for multi-view interactions
    (:class:`~torch_mmkg.nn.interactions.MultiViewInteraction`): its structural embedding
    (slot 0) and the fusion :obj:`inner` of its modalities (slots :math:`1, \ldots, S-1`),

    .. math::
        [\mathbf{e}_s,\ \mathbf{e}_{mm}] = [\mathbf{e}_0,\ \mathrm{fuse}(\mathbf{e}_1,
        \ldots, \mathbf{e}_{S-1})],

    as TBKGC, VBKGC and IKRL-style models score them (e.g. :obj:`inner` a
    :class:`~torch_mmkg.nn.fusion.SumFusion` for TBKGC's :math:`\sum_m \mathbf{W}_m
    \mathbf{x}_m`). Relation-dependent when :obj:`inner` is.

    Args:
        inner (Fusion): The fusion of the modality slots (width-preserving).

    Shapes:
        - **input:** stack :math:`[*, S, D]` (:math:`S \geq 2`), mask :math:`[*, S]`,
          relation ids (if :obj:`inner` needs them)
        - **output:** views :math:`[*, 2, D]`, :obj:`inner`'s weights
    """
    def __init__(self, inner: Fusion):
        super().__init__()
        self.inner = inner

    @property
    def relation_dependent(self) -> bool:
        return self.inner.relation_dependent

    def reset_parameters(self):
        self.inner.reset_parameters()

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
        if stack.size(-2) < 2:
            raise ValueError(f"StructureAndFused needs a structural slot and at least one "
                             f"modality, got a stack of {stack.size(-2)}")
        mm, w = self.inner(stack[..., 1:, :], None if mask is None else mask[..., 1:], rel)
        return torch.stack([stack[..., 0, :], mm], dim=-2), w


class AllSlots(Fusion):
    r"""Every slot of the stack is a view of its own: the stack :math:`[*, S, D]` unchanged,
    for per-view scorer ensembles
    (:class:`~torch_mmkg.nn.interactions.EnsembleInteraction`, e.g. MoMoK), which score each
    view and fuse a joint one themselves.

    Shapes:
        - **input:** stack :math:`[*, S, D]`, mask :math:`[*, S]`
        - **output:** the stack :math:`[*, S, D]`, :obj:`None`
    """
    def __init__(self, channels: int = 0, mask_missing: bool = True):
        super().__init__()

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, None]:
        return stack, None
