import torch
from torch import Tensor

from .base import Interaction, split_complex


class ComplExInteraction(Interaction):
    r"""The ComplEx score function from the `"Complex Embeddings for Simple Link
    Prediction" <https://arxiv.org/abs/1606.06357>`_ paper

    .. math::
        f(\mathbf{h}, \mathbf{r}, \mathbf{t}) = \mathrm{Re}\Big(\sum_k h_k\, r_k\,
        \overline{t_k}\Big), \qquad \mathbf{h}, \mathbf{r}, \mathbf{t} \in \mathbb{C}^d,

    with entities and relations of real width :math:`2d` (real parts, then imaginary parts).
    1-vs-all scoring is one real matrix product of width :math:`2d`.
    """
    entity_width = staticmethod(lambda dim: 2 * dim)
    complex_entities = True
    relation_width = staticmethod(lambda dim: 2 * dim)

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        (a, b), (c, d), (e, f) = split_complex(h), split_complex(r), split_complex(t)
        return ((a * c - b * d) * e + (a * d + b * c) * f).sum(dim=-1)

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        (a, b), (c, d) = split_complex(h), split_complex(r)
        return torch.cat([a * c - b * d, a * d + b * c], dim=-1) @ t_all.t()

    def score_heads(self, h_all: Tensor, r: Tensor, t: Tensor) -> Tensor:
        (c, d), (e, f) = split_complex(r), split_complex(t)
        # Re(h · u) with u = r · conj(t) = (ce + df) + i(de − cf).
        return torch.cat([c * e + d * f, c * f - d * e], dim=-1) @ h_all.t()
