from typing import Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.validation import positive_int, probability

from .base import Fusion, check_stack

__all__ = ['MutanFusion']


class MutanFusion(Fusion):
    r"""The Mutan-style interactive fusion of the `"IMF: Interactive Multimodal Fusion Model
    for Link Prediction" <https://arxiv.org/abs/2303.10816>`_ paper (IMF's multimodal fusion
    module, a bilinear pooling in the style of Mutan's Tucker decomposition): every slot
    :math:`m` (structure, image, text, ...) is projected by :math:`K` heads and the heads'
    products over the slots are summed,

    .. math::
        \mathbf{e}_{mm} = \mathrm{ReLU}\Big(\sum_{k=1}^{K} \prod_{m \in A}
        \mathrm{ReLU}\big(\mathbf{W}_{mk}\, \mathrm{Drop}(\mathbf{e}_m) +
        \mathbf{b}_{mk}\big)\Big),

    with :math:`\prod` the element-wise product and :math:`A` the slots the entity has
    (all of them with :obj:`mask_missing=False`, the paper's behaviour): a missing slot's
    factor is skipped, never multiplied in as the projection of a zero row. A row without any
    slot is zero.

    Args:
        channels (int): Width :math:`D` of each slot and of the output.
        num_slots (int): Number of slots :math:`S`.
        num_heads (int, optional): :math:`K`. (default: :obj:`2`, IMF's)
        dropout (float, optional): Dropout before each projection. (default: :obj:`0.2`)
        mask_missing (bool, optional): Skip the factors of missing slots.
            (default: :obj:`True`)

    Shapes:
        - **input:** stack :math:`[*, S, D]`, mask :math:`[*, S]` (optional)
        - **output:** joint embedding :math:`[*, D]`, :obj:`None`
    """
    def __init__(self, channels: int, num_slots: int, num_heads: int = 2,
                 dropout: float = 0.2, mask_missing: bool = True):
        super().__init__()
        self.channels = positive_int(self, 'channels', channels)
        self.num_slots = positive_int(self, 'num_slots', num_slots)
        self.num_heads = positive_int(self, 'num_heads', num_heads)
        self.mask_missing = bool(mask_missing)
        self.dropout = torch.nn.Dropout(probability(self, 'dropout', dropout))
        D, S, K = self.channels, self.num_slots, self.num_heads
        self.weight = torch.nn.Parameter(torch.empty(K, S, D, D))
        self.bias = torch.nn.Parameter(torch.empty(K, S, D))
        self.reset_parameters()

    @classmethod
    def build(cls, channels: int, num_slots: int, num_relations: Optional[int] = None,
              mask_missing: bool = True, **kwargs) -> Fusion:
        return cls(channels, num_slots, mask_missing=mask_missing, **kwargs)

    def reset_parameters(self):
        bound = 1.0 / self.channels**0.5  # torch.nn.Linear's initialisation (the authors')
        torch.nn.init.uniform_(self.weight, -bound, bound)
        torch.nn.init.uniform_(self.bias, -bound, bound)

    def project(self, stack: Tensor) -> Tensor:
        r"""The factors :math:`\mathrm{ReLU}(\mathbf{W}_{mk} \mathrm{Drop}(\mathbf{e}_m) +
        \mathbf{b}_{mk})`, :math:`[*, K, S, D]`."""
        x = torch.einsum('...si,ksio->...kso', self.dropout(stack), self.weight)
        return torch.relu(x + self.bias)

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, None]:
        check_stack(stack, mask, self.channels, self.num_slots)
        factors = self.project(stack)
        if mask is not None and self.mask_missing:
            # A missing slot contributes the neutral factor 1 (its factor is skipped).
            keep = mask[..., None, :, None]
            factors = torch.where(keep, factors, torch.ones_like(factors))
            joint = torch.relu(factors.prod(dim=-2).sum(dim=-2))
            return joint * mask.any(dim=-1, keepdim=True).to(joint.dtype), None
        return torch.relu(factors.prod(dim=-2).sum(dim=-2)), None

    def extra_repr(self) -> str:
        return (f'{self.channels}, num_slots={self.num_slots}, num_heads={self.num_heads}, '
                f'mask_missing={self.mask_missing}')
