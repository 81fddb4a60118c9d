import torch
import torch.nn.functional as F
from torch import Tensor

from torch_mmkg.ops import lp_distance
from .base import Interaction


class TransEInteraction(Interaction):
    r"""The TransE score function from the `"Translating Embeddings for Modeling
    Multi-relational Data" <https://proceedings.neurips.cc/paper/2013/file/
    1cecc7a77928ca8133fa24680a88d2f9-Paper.pdf>`_ paper

    .. math::
        f(\mathbf{h}, \mathbf{r}, \mathbf{t}) = -\| \mathbf{h} + \mathbf{r} - \mathbf{t} \|_p

    (plus an optional margin :math:`\gamma`, as in the OpenKE/RotatE code bases). With
    :obj:`normalize`, :math:`\mathbf{h}`, :math:`\mathbf{r}` and :math:`\mathbf{t}` are
    first scaled to unit :math:`L_2` norm, :math:`f = -\|\hat{\mathbf{h}} +
    \hat{\mathbf{r}} - \hat{\mathbf{t}}\|_p` with :math:`\hat{\mathbf{x}} =
    \mathbf{x} / \|\mathbf{x}\|_2`, as OpenKE's :obj:`TransE(norm_flag=True)` does in the
    score itself (the parameters are not changed).

    Args:
        p_norm (float, optional): The norm :math:`p`. (default: :obj:`1.0`)
        margin (float, optional): The constant :math:`\gamma` added to the score.
            (default: :obj:`0.0`)
        normalize (bool, optional): :math:`L_2`-normalise :math:`\mathbf{h}`,
            :math:`\mathbf{r}` and :math:`\mathbf{t}` in the score. (default: :obj:`False`)
    """
    def __init__(self, p_norm: float = 1.0, margin: float = 0.0, normalize: bool = False):
        super().__init__()
        self.p_norm = float(p_norm)
        self.margin = float(margin)
        self.normalize = bool(normalize)

    def _unit(self, x: Tensor) -> Tensor:
        return F.normalize(x, p=2.0, dim=-1) if self.normalize else x

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        h, r, t = self._unit(h), self._unit(r), self._unit(t)
        return self.margin - torch.linalg.vector_norm(h + r - t, ord=self.p_norm, dim=-1)

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        return self.margin - lp_distance(self._unit(h) + self._unit(r), self._unit(t_all),
                                         self.p_norm)

    def score_heads(self, h_all: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return self.margin - lp_distance(self._unit(t) - self._unit(r), self._unit(h_all),
                                         self.p_norm)

    def extra_repr(self) -> str:
        return (f'p_norm={self.p_norm}, margin={self.margin}'
                f'{", normalize=True" if self.normalize else ""}')
