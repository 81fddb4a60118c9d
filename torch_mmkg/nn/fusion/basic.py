from typing import Optional, Tuple

import torch
from torch import Tensor

from .base import Fusion, check_stack as _check


class _FreeFusion(Fusion):
    def __init__(self, channels: int, mask_missing: bool = True):
        super().__init__()
        self.channels = int(channels)
        self.mask_missing = bool(mask_missing)

    def reset_parameters(self):
        pass

    def extra_repr(self) -> str:
        return f'{self.channels}, mask_missing={self.mask_missing}'


class MeanFusion(_FreeFusion):
    r"""The mean of an entity's available representations (uniform weights; NATIVE's
    ablation "w/o :math:`\omega_m`"),

    .. math::
        \mathbf{e}^{\mathrm{joint}} = \frac{1}{|A_e|} \sum_{m \in A_e} \mathbf{e}_m,

    where :math:`A_e` is the set of available representations (all of them with
    :obj:`mask_missing=False`). An entity with nothing available gets a zero vector.

    Args:
        channels (int): Width :math:`D` of each representation.
        mask_missing (bool, optional): Leave missing representations out. (default:
            :obj:`True`)

    Shapes:
        - **input:** stack :math:`[*, M, D]`, mask :math:`[*, M]` (optional)
        - **output:** joint embedding :math:`[*, D]`, weights :math:`[*, M]`
    """
    def weights(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tensor:
        _check(stack, mask, self.channels)
        if mask is None or not self.mask_missing:
            return stack.new_full(stack.shape[:-1], 1.0 / stack.size(-2))
        w = mask.to(stack.dtype)
        return w / w.sum(dim=-1, keepdim=True).clamp(min=1.0)

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        w = self.weights(stack, mask)
        return (w[..., None] * stack).sum(dim=-2), w


class ConcatFusion(Fusion):
    r"""Concatenation of an entity's representations followed by a linear map back to
    :math:`D` (the concat fusion of TBKGC-style models),

    .. math::
        \mathbf{e}^{\mathrm{joint}} = \mathbf{W}\,[\mathbf{e}_1 \,\|\, \cdots \,\|\,
        \mathbf{e}_M] + \mathbf{b},

    or, with :obj:`projection=False`, the raw concatenation :math:`[\mathbf{e}_1 \,\|\,
    \cdots \,\|\, \mathbf{e}_M]` of width :math:`M D` (NATIVE's ablation "w/ concat" as
    the authors ran it, with relations as wide as the joint entity), missing
    representations being replaced by zeros (so they contribute nothing) when
    :obj:`mask_missing=True`.

    Args:
        channels (int): Width :math:`D` of each representation.
        num_slots (int): Number :math:`M` of stacked representations.
        mask_missing (bool, optional): Zero missing representations. (default: :obj:`True`)
        projection (bool, optional): Map the concatenation back to :math:`D` by
            :math:`\mathbf{W}, \mathbf{b}`. (default: :obj:`True`)

    Shapes:
        - **input:** stack :math:`[*, M, D]`, mask :math:`[*, M]` (optional)
        - **output:** joint embedding :math:`[*, D]` (:math:`[*, M D]` without the
          projection), :obj:`None`
    """
    def __init__(self, channels: int, num_slots: int, mask_missing: bool = True,
                 projection: bool = True):
        super().__init__()
        self.channels, self.num_slots = int(channels), int(num_slots)
        self.mask_missing = bool(mask_missing)
        self.projection = bool(projection)
        self.lin = (torch.nn.Linear(self.num_slots * self.channels, self.channels)
                    if self.projection else None)
        self.reset_parameters()

    @classmethod
    def build(cls, channels: int, num_slots: int, num_relations: Optional[int] = None,
              mask_missing: bool = True, projection: bool = True, **kwargs) -> Fusion:
        return cls(channels, num_slots, mask_missing=mask_missing, projection=projection,
                   **kwargs)

    def output_width(self, channels: int) -> int:
        return channels if self.projection else self.num_slots * channels

    def reset_parameters(self):
        if self.lin is not None:
            self.lin.reset_parameters()

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, None]:
        _check(stack, mask, self.channels, self.num_slots)
        if self.lin is None:
            if mask is not None and self.mask_missing:
                # where, not a product: a masked row never reaches the output (not a NaN)
                stack = torch.where(mask[..., None], stack, stack.new_zeros(()))
            return stack.flatten(-2), None
        if mask is not None and self.mask_missing:
            stack = stack * mask[..., None].to(stack.dtype)
        return self.lin(stack.flatten(-2)), None

    def extra_repr(self) -> str:
        return (f'{self.channels}, num_slots={self.num_slots}, mask_missing={self.mask_missing}'
                f'{"" if self.projection else ", projection=False"}')


class ProductFusion(_FreeFusion):
    r"""The element-wise product of an entity's available representations (the
    "dot-product" fusion of IMF-style models; NATIVE's ablation "w/ product"),

    .. math::
        \mathbf{e}^{\mathrm{joint}} = \bigodot_{m \in A_e} \mathbf{e}_m,

    where missing representations are skipped (they act as ones) when
    :obj:`mask_missing=True`; an entity with nothing available gets a zero vector.

    Args:
        channels (int): Width :math:`D` of each representation.
        mask_missing (bool, optional): Skip missing representations. (default: :obj:`True`)

    Shapes:
        - **input:** stack :math:`[*, M, D]`, mask :math:`[*, M]` (optional)
        - **output:** joint embedding :math:`[*, D]`, :obj:`None`
    """
    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, None]:
        _check(stack, mask, self.channels)
        if mask is None or not self.mask_missing:
            return stack.prod(dim=-2), None
        m = mask[..., None]
        out = torch.where(m, stack, torch.ones_like(stack)).prod(dim=-2)
        return out * mask.any(dim=-1, keepdim=True).to(out.dtype), None


class SumFusion(_FreeFusion):
    r"""The sum of an entity's available representations (TBKGC's multi-modal embedding
    :math:`\sum_{m \,:\, k_m(e)} \mathbf{W}_m \mathbf{x}_m` of projected features, a
    linear map of their concatenation in which a missing one contributes nothing),

    .. math::
        \mathbf{e}^{\mathrm{joint}} = \sum_{m \in A_e} \mathbf{e}_m,

    where :math:`A_e` is the set of available representations (all of them with
    :obj:`mask_missing=False`); an entity with nothing available gets a zero vector.

    Args:
        channels (int): Width :math:`D` of each representation.
        mask_missing (bool, optional): Leave missing representations out. (default:
            :obj:`True`)

    Shapes:
        - **input:** stack :math:`[*, M, D]`, mask :math:`[*, M]` (optional)
        - **output:** joint embedding :math:`[*, D]`, :obj:`None`
    """
    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, None]:
        _check(stack, mask, self.channels)
        if mask is not None and self.mask_missing:
            # where, not a product: a masked row never reaches the sum (not even a NaN)
            stack = torch.where(mask[..., None], stack, stack.new_zeros(()))
        return stack.sum(dim=-2), None
