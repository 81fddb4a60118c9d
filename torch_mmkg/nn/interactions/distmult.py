from torch import Tensor

from .base import Interaction


class DistMultInteraction(Interaction):
    r"""The DistMult score function from the `"Embedding Entities and Relations for Learning
    and Inference in Knowledge Bases" <https://arxiv.org/abs/1412.6575>`_ paper

    .. math::
        f(\mathbf{h}, \mathbf{r}, \mathbf{t}) = \sum_{k} h_k\, r_k\, t_k

    1-vs-all scoring is one matrix product: :math:`(\mathbf{h} \odot \mathbf{r})
    \mathbf{E}^{\top}`.
    """
    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return (h * r * t).sum(dim=-1)

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        return (h * r) @ t_all.t()

    def score_heads(self, h_all: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return (r * t) @ h_all.t()
