from typing import Optional, Tuple

import torch
from torch import Tensor

from .base import Fusion


class AttentionFusion(Fusion):
    r"""Multi-head attention fusion of a stack of modality embeddings into a joint one: the
    MuJoD fusion of the `"Multiple Heads are Better than One: Mixture of Modality Knowledge
    Experts for Entity Representation Learning" <https://arxiv.org/abs/2405.16869>`_ paper
    (MoMoK, Eq. 3), summed over :math:`H` heads as in the authors' code,

    .. math::
        \hat{\mathbf{e}}_{J} = \sum_{h=1}^{H} \sum_{m \in A} \alpha_{h,m}\,
        \mathcal{P}_{h,m}(\hat{\mathbf{e}}_m), \qquad
        \alpha_{h,m} = \mathrm{softmax}_{m \in A}\big(\mathbf{w}_{\mathrm{attn}}^{\top}
        \mathcal{P}_{h,m}(\hat{\mathbf{e}}_m)\big),

    where :math:`\mathcal{P}_{h,m} = \mathrm{ReLU}(\mathrm{Linear}(\mathrm{Dropout}(\cdot)))`
    is a projection per head and modality, :math:`\mathbf{w}_{\mathrm{attn}}` the attention
    vector shared by all modalities and heads, and :math:`A` the modalities the entity has
    (all of them with :obj:`mask_missing=False`). With :obj:`adaptive=False` the weights are
    uniform over :math:`A` (MoMoK's ablation "w/o adaptive fusion").

    Args:
        in_channels (int): Width :math:`D` of each modality embedding.
        out_channels (int): Width of the joint embedding.
        num_slots (int): Number of modalities :math:`M` in the stack.
        num_heads (int, optional): :math:`H`. (default: :obj:`2`)
        dropout (float, optional): Dropout before each projection. (default: :obj:`0.2`)
        adaptive (bool, optional): Learned (True) or uniform weights. (default: :obj:`True`)
        mask_missing (bool, optional): Leave missing modalities out of the softmax.
            (default: :obj:`True`)

    Shapes:
        - **input:** stack :math:`[*, M, D]`, mask :math:`[*, M]` (optional)
        - **output:** joint embedding :math:`[*, D_{out}]`, weights :math:`[*, H, M]`
    """
    def __init__(self, in_channels: int, out_channels: int, num_slots: int,
                 num_heads: int = 2, dropout: float = 0.2, adaptive: bool = True,
                 mask_missing: bool = True):
        super().__init__()
        if num_heads < 1 or num_slots < 1:
            raise ValueError(f"num_heads and num_slots must be >= 1, got {num_heads} and "
                             f"{num_slots}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.num_slots, self.num_heads = int(num_slots), int(num_heads)
        self.adaptive, self.mask_missing = bool(adaptive), bool(mask_missing)
        self.dropout = torch.nn.Dropout(dropout)
        self.weight = torch.nn.Parameter(
            torch.empty(num_heads, num_slots, in_channels, out_channels))
        self.bias = torch.nn.Parameter(torch.empty(num_heads, num_slots, out_channels))
        self.attention = torch.nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    @classmethod
    def build(cls, channels: int, num_slots: int, num_relations: Optional[int] = None,
              mask_missing: bool = True, out_channels: Optional[int] = None,
              **kwargs) -> Fusion:
        return cls(channels, out_channels or channels, num_slots, mask_missing=mask_missing,
                   **kwargs)

    def output_width(self, channels: int) -> int:
        return self.out_channels

    def reset_parameters(self):
        bound = 1.0 / self.in_channels**0.5  # torch.nn.Linear's initialisation
        torch.nn.init.uniform_(self.weight, -bound, bound)
        torch.nn.init.uniform_(self.bias, -bound, bound)
        torch.nn.init.uniform_(self.attention, -self.out_channels**-0.5,
                               self.out_channels**-0.5)

    def project(self, stack: Tensor) -> Tensor:
        r"""The projections :math:`\mathcal{P}_{h,m}(\hat{\mathbf{e}}_m)`,
        :math:`[*, H, M, D_{out}]`."""
        if stack.shape[-2:] != (self.num_slots, self.in_channels):
            raise ValueError(f"expected a stack [*, {self.num_slots}, {self.in_channels}], "
                             f"got {tuple(stack.shape)}")
        x = torch.einsum('...md,hmdo->...hmo', self.dropout(stack), self.weight)
        return torch.relu(x + self.bias)

    def weights(self, projected: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        r"""The attention weights :math:`\alpha` :math:`[*, H, M]` of projected stacks."""
        use_mask = mask is not None and self.mask_missing
        if use_mask and mask.shape != projected.shape[:-3] + (self.num_slots, ):
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the stack "
                             f"{tuple(projected.shape[:-3]) + (self.num_slots, )}")
        if self.adaptive:
            logits = projected @ self.attention
        else:
            logits = projected.new_zeros(projected.shape[:-1])
        if use_mask:
            logits = logits.masked_fill(~mask.unsqueeze(-2), float('-inf'))
            return torch.softmax(logits, dim=-1).nan_to_num(0.0)  # nothing available: 0
        return torch.softmax(logits, dim=-1)

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        projected = self.project(stack)
        alpha = self.weights(projected, mask)
        return (alpha.unsqueeze(-1) * projected).sum(dim=(-3, -2)), alpha

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, num_slots={self.num_slots}, '
                f'num_heads={self.num_heads}, adaptive={self.adaptive}')
