from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .base import Fusion, FusionBasis, check_stack

__all__ = ['WeightedSumFusion', 'MISSING_POLICIES']

#: What :class:`WeightedSumFusion` does with the weight of a missing slot.
MISSING_POLICIES = ('structure', 'renormalize', 'drop')


class WeightedSumFusion(Fusion):
    r"""A weighted sum of the slots with fixed weights, constant or one row per relation,

    .. math::
        \hat{\mathbf{e}} = \sum_{s} w_s(r)\, \mathbf{e}_s,

    the fusion of RSME (:math:`(1 - \alpha)\mathbf{e}_s + \alpha\,\mathbf{x}_{img}
    \mathbf{W}`, with :math:`\alpha` constant or per relation) and of OTKGE
    (:math:`(1 - \alpha - \gamma)\mathbf{e}_s + \alpha\,\mathbf{X}_{img}\mathbf{T}_{img}
    + \gamma\,\mathbf{X}_{txt}\mathbf{T}_{txt}`). The weights need not sum to one.

    A missing slot (mask False, with :obj:`mask_missing`) never enters the sum; its weight
    goes to the first (structural) slot (:obj:`missing="structure"`: an entity without a
    modality is represented by more of its structure), is spread over the present slots in
    proportion to their weights (:obj:`"renormalize"`, the total weight kept), or is dropped
    (:obj:`"drop"`, for slots that occupy disjoint coordinates, such as a concatenation
    laid out by the representation). :obj:`mask_missing=False` sums every slot with its
    weight, as the papers do with zero-filled features.

    Args:
        channels (int): The slot width :math:`D`.
        weights (torch.Tensor or Sequence[float]): :math:`[S]` weights, or :math:`[R, S]`
            (one row per relation id; a relation-dependent fusion).
        mask_missing (bool, optional): (default: :obj:`True`)
        missing (str, optional): :obj:`"structure"`, :obj:`"renormalize"` or
            :obj:`"drop"`. (default: :obj:`"structure"`)

    Shapes:
        - **input:** stack :math:`[*, S, D]`, mask :math:`[*, S]`, relation ids
          broadcastable to :math:`[*]` (for per-relation weights)
        - **output:** joint :math:`[*, D]`, the effective weights :math:`[*, S]`
    """
    decomposable = True

    def __init__(self, channels: int, weights: Union[Tensor, Sequence[float]],
                 mask_missing: bool = True, missing: str = 'structure'):
        super().__init__()
        if missing not in MISSING_POLICIES:
            raise ValueError(f"WeightedSumFusion: missing must be one of {MISSING_POLICIES}, "
                             f"got {missing!r}")
        weights = torch.as_tensor(weights, dtype=torch.get_default_dtype())
        if weights.dim() not in (1, 2) or weights.size(-1) < 1 or not bool(
                torch.isfinite(weights).all()):
            raise ValueError(f"WeightedSumFusion: weights must be finite, [S] or [R, S], got "
                             f"{tuple(weights.shape)}")
        self.channels = int(channels)
        self.mask_missing = bool(mask_missing)
        self.missing = missing
        self.register_buffer('weights', weights.clone())

    @classmethod
    def build(cls, channels: int, num_slots: int, num_relations: Optional[int] = None,
              mask_missing: bool = True, weights=None, missing: str = 'structure',
              **kwargs) -> 'WeightedSumFusion':
        r"""With :obj:`weights=None` every slot weighs :math:`1/S`; per-relation weights
        need :obj:`num_relations` rows."""
        if weights is None:
            weights = torch.full((num_slots, ), 1.0 / num_slots)
        weights = torch.as_tensor(weights, dtype=torch.get_default_dtype())
        if weights.size(-1) != num_slots:
            raise ValueError(f"WeightedSumFusion: weights have {weights.size(-1)} slots, the "
                             f"stack {num_slots}")
        if weights.dim() == 2 and (num_relations is None or weights.size(0) != num_relations):
            raise ValueError(f"WeightedSumFusion: per-relation weights need num_relations = "
                             f"{weights.size(0)} rows, got num_relations={num_relations}")
        return cls(channels, weights, mask_missing=mask_missing, missing=missing, **kwargs)

    @property
    def relation_dependent(self) -> bool:
        return self.weights.dim() == 2

    @property
    def num_slots(self) -> int:
        return self.weights.size(-1)

    def slot_weights(self, mask: Optional[Tensor], rel: Optional[Tensor] = None,
                     shape: Optional[Tuple[int, ...]] = None) -> Tensor:
        r"""The effective weights :math:`[*, S]` of stacks with mask :obj:`mask` (or of
        leading shape :obj:`shape` without one) in the context of :obj:`rel`."""
        if self.relation_dependent:
            if rel is None:
                raise ValueError("WeightedSumFusion: per-relation weights need rel")
            w = self.weights[rel]
        else:
            w = self.weights
        if mask is None or not self.mask_missing:
            lead = mask.shape[:-1] if mask is not None else shape
            if lead is not None:
                w = w.expand(torch.broadcast_shapes(w.shape[:-1], tuple(lead)) + w.shape[-1:])
            return w
        w, mask = torch.broadcast_tensors(w, mask)
        kept = torch.where(mask, w, w.new_zeros(()))
        if self.missing == 'drop':
            return kept
        if self.missing == 'structure':
            lost = (w - kept)[..., 1:].sum(dim=-1)
            first = torch.where(mask[..., 0], kept[..., 0] + lost, kept.new_zeros(()))
            return torch.cat([first.unsqueeze(-1), kept[..., 1:]], dim=-1)
        total, present = w.sum(dim=-1, keepdim=True), kept.sum(dim=-1, keepdim=True)
        safe = torch.where(present != 0, present, torch.ones_like(present))
        return torch.where(present != 0, kept * (total / safe), kept)

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        check_stack(stack, mask, self.channels, self.num_slots)
        w = self.slot_weights(mask, rel, stack.shape[:-2])
        if mask is not None and self.mask_missing:
            stack = torch.where(mask[..., None], stack, stack.new_zeros(()))
        return (w[..., None] * stack).sum(dim=-2), w

    def decompose(self, stack: Tensor, mask: Optional[Tensor] = None) -> FusionBasis:
        if not self.relation_dependent:
            return super().decompose(stack, mask)
        check_stack(stack, mask, self.channels, self.num_slots)
        if mask is None:
            mask = torch.ones(stack.shape[:-1], dtype=torch.bool, device=stack.device)
        if self.mask_missing:
            stack = torch.where(mask[..., None], stack, stack.new_zeros(()))
        return FusionBasis(stack, mask)

    def mix(self, state: Tensor, rel: Tensor) -> Tensor:
        return self.slot_weights(state, rel)

    def extra_repr(self) -> str:
        return (f'{self.channels}, slots={self.num_slots}, '
                f'per_relation={self.relation_dependent}, missing={self.missing!r}')
