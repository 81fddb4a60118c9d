import torch
import torch.nn.functional as F
from torch import Tensor

from torch_mmkg.ops import lp_distance
from .base import Interaction


class PairREInteraction(Interaction):
    r"""The PairRE score function from the `"PairRE: Knowledge Graph Embeddings via Paired
    Relation Vectors" <https://arxiv.org/abs/2011.03798>`_ paper

    .. math::
        f(\mathbf{h}, \mathbf{r}, \mathbf{t}) = \gamma - \big\| \hat{\mathbf{h}} \odot
        \mathbf{r}^{H} - \hat{\mathbf{t}} \odot \mathbf{r}^{T} \big\|_p,
        \qquad \hat{\mathbf{x}} = \mathbf{x} / \|\mathbf{x}\|_2,

    with a relation of width :math:`2d` holding :math:`[\mathbf{r}^H, \mathbf{r}^T]`.
    1-vs-all scoring groups the batch by relation and computes one pairwise distance matrix
    per relation present (the candidates :math:`\hat{\mathbf{E}} \odot \mathbf{r}^T` depend on
    the relation only). When a gradient must reach the relations (1-N training), it scores
    like the base class instead (:meth:`forward` on entity chunks): the grouping by
    :func:`torch.unique` has no derivative.

    Args:
        margin (float, optional): The margin :math:`\gamma`. (default: :obj:`9.0`)
        p_norm (float, optional): The norm :math:`p`. (default: :obj:`1.0`)
    """
    relation_width = staticmethod(lambda dim: 2 * dim)

    def __init__(self, margin: float = 9.0, p_norm: float = 1.0):
        super().__init__()
        self.margin = float(margin)
        self.p_norm = float(p_norm)

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        r_h, r_t = r.chunk(2, dim=-1)
        x = F.normalize(h, dim=-1) * r_h - F.normalize(t, dim=-1) * r_t
        return self.margin - torch.linalg.vector_norm(x, ord=self.p_norm, dim=-1)

    def _grouped(self, q: Tensor, r_cand: Tensor, e_all: Tensor) -> Tensor:
        e_all = F.normalize(e_all, dim=-1)
        out = q.new_empty(q.size(0), e_all.size(0))
        # Rows with identical relation vectors share their candidate matrix.
        uniq, inv = torch.unique(r_cand, dim=0, return_inverse=True)
        for j in range(uniq.size(0)):
            idx = (inv == j).nonzero().view(-1)
            out[idx] = lp_distance(q[idx], e_all * uniq[j], self.p_norm)
        return self.margin - out

    @staticmethod
    def _differentiated(r: Tensor) -> bool:
        return torch.is_grad_enabled() and r.requires_grad

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        if self._differentiated(r):
            return super().score_tails(h, r, t_all)
        r_h, r_t = r.chunk(2, dim=-1)
        return self._grouped(F.normalize(h, dim=-1) * r_h, r_t, t_all)

    def score_heads(self, h_all: Tensor, r: Tensor, t: Tensor) -> Tensor:
        if self._differentiated(r):
            return super().score_heads(h_all, r, t)
        r_h, r_t = r.chunk(2, dim=-1)
        return self._grouped(F.normalize(t, dim=-1) * r_t, r_h, h_all)

    def extra_repr(self) -> str:
        return f'margin={self.margin}, p_norm={self.p_norm}'
