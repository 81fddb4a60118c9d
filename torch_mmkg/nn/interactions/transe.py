import torch
from torch import Tensor

from torch_mmkg.ops import lp_distance
from .base import Interaction


class TransEInteraction(Interaction):
    r"""The TransE score function from the `"Translating Embeddings for Modeling
    Multi-relational Data" <https://proceedings.neurips.cc/paper/2013/file/
    1cecc7a77928ca8133fa24680a88d2f9-Paper.pdf>`_ paper

    .. math::
        f(\mathbf{h}, \mathbf{r}, \mathbf{t}) = -\| \mathbf{h} + \mathbf{r} - \mathbf{t} \|_p

    (plus an optional margin :math:`\gamma`, as in the OpenKE/RotatE code bases).

    Args:
        p_norm (float, optional): The norm :math:`p`. (default: :obj:`1.0`)
        margin (float, optional): The constant :math:`\gamma` added to the score.
            (default: :obj:`0.0`)
    """
    def __init__(self, p_norm: float = 1.0, margin: float = 0.0):
        super().__init__()
        self.p_norm = float(p_norm)
        self.margin = float(margin)

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return self.margin - torch.linalg.vector_norm(h + r - t, ord=self.p_norm, dim=-1)

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        return self.margin - lp_distance(h + r, t_all, self.p_norm)

    def score_heads(self, h_all: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return self.margin - lp_distance(t - r, h_all, self.p_norm)

    def extra_repr(self) -> str:
        return f'p_norm={self.p_norm}, margin={self.margin}'
