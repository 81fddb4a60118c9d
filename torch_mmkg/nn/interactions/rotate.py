from typing import Union

import torch
from torch import Tensor

from torch_mmkg.ops.pairwise import TINY
from torch_mmkg.ops import (complex_modulus_sum, gather_modulus_sum,
                            weighted_gather_modulus_sum)
from .base import Interaction, split_complex


class RotatEInteraction(Interaction):
    r"""The RotatE score function from the `"RotatE: Knowledge Graph Embedding by Relational
    Rotation in Complex Space" <https://arxiv.org/abs/1902.10197>`_ paper

    .. math::
        f(\mathbf{h}, \boldsymbol{\theta}, \mathbf{t}) = \gamma - \sum_{k=1}^{d}
        \big| h_k\, e^{i\theta_k} - t_k \big|,
        \qquad \mathbf{h}, \mathbf{t} \in \mathbb{C}^d,\ \boldsymbol{\theta} \in
        \mathbb{R}^d,

    the paper's sum of complex moduli (:class:`torch_geometric.nn.kge.RotatE` uses the
    Euclidean norm of the whole complex difference instead). Relations are phases; entities
    have real width :math:`2d`. Since :math:`|e^{i\theta}| = 1`, the head side uses
    :math:`|h_k e^{i\theta_k} - t_k| = |h_k - t_k e^{-i\theta_k}|`, so both sides are one
    fused pairwise kernel (:func:`torch_mmkg.ops.complex_modulus_sum`).

    Args:
        margin (float, optional): The margin :math:`\gamma`. (default: :obj:`9.0`)
    """
    entity_width = staticmethod(lambda dim: 2 * dim)
    complex_entities = True

    def __init__(self, margin: float = 9.0):
        super().__init__()
        self.margin = float(margin)

    @staticmethod
    def rotate(x: Tensor, phase: Tensor, conjugate: Union[bool, Tensor] = False):
        r"""Real and imaginary parts of :math:`x \odot e^{i\theta}` (of
        :math:`x \odot e^{-i\theta}` where :obj:`conjugate`, a bool or a per-row bool
        tensor)."""
        re, im = split_complex(x)
        cos, sin = torch.cos(phase), torch.sin(phase)
        if isinstance(conjugate, Tensor):
            sin = torch.where(conjugate[..., None], -sin, sin)
        elif conjugate:
            sin = -sin
        return re * cos - im * sin, re * sin + im * cos

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        q_re, q_im = self.rotate(h, r)
        t_re, t_im = split_complex(t)
        # The floor keeps the gradient finite where q = t exactly (sqrt'(0) is infinite, and
        # inf * 0 is NaN); it changes no square above 1e-30.
        return self.margin - torch.sqrt(((q_re - t_re)**2 + (q_im - t_im)**2).clamp_min(TINY)
                                        ).sum(dim=-1)

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        q_re, q_im = self.rotate(h, r)
        e_re, e_im = split_complex(t_all)
        return self.margin - complex_modulus_sum(q_re.contiguous(), q_im.contiguous(),
                                                 e_re.contiguous(), e_im.contiguous())

    def score_heads(self, h_all: Tensor, r: Tensor, t: Tensor) -> Tensor:
        q_re, q_im = self.rotate(t, r, conjugate=True)
        e_re, e_im = split_complex(h_all)
        return self.margin - complex_modulus_sum(q_re.contiguous(), q_im.contiguous(),
                                                 e_re.contiguous(), e_im.contiguous())

    def score_candidates(self, anchor: Tensor, r: Tensor, table: Tensor, index: Tensor,
                         corrupt_head: Union[bool, Tensor] = False) -> Tensor:
        r"""Scores of :math:`(a_b, \theta_b, e)` for the candidate tails
        :math:`e = \mathrm{index}[b, k]` (or of :math:`(e, \theta_b, a_b)` for candidate heads
        where :obj:`corrupt_head`, a bool or a :obj:`[B]` bool tensor, using
        :math:`|e\, e^{i\theta} - a| = |e - a\, e^{-i\theta}|`), read from the entity
        :obj:`table` by the fused
        :func:`~torch_mmkg.ops.gather_modulus_sum`; equal to :meth:`forward` on the
        gathered candidates.

        Shapes:
            - **input:** :obj:`anchor` :math:`[B, 2d]`, :obj:`r` :math:`[B, d]`,
              :obj:`table` :math:`[N, 2d]`, :obj:`index` :math:`[B, K]`
            - **output:** :math:`[B, K]`
        """
        q_re, q_im = self.rotate(anchor, r, conjugate=corrupt_head)
        return self.margin - gather_modulus_sum(q_re.contiguous(), q_im.contiguous(), table,
                                                index)

    def score_weighted_candidates(self, anchor: Tensor, r: Tensor, stack: Tensor,
                                  weights: Tensor, index: Tensor,
                                  corrupt_head: Union[bool, Tensor] = False) -> Tensor:
        r"""Like :meth:`score_candidates`, each candidate being the weighted sum
        :math:`\sum_s w_{bks}\, \mathbf{S}_{e, s}` of its stacked representations, by the
        fused :func:`~torch_mmkg.ops.weighted_gather_modulus_sum`.

        Shapes:
            - **input:** :obj:`anchor` :math:`[B, 2d]`, :obj:`r` :math:`[B, d]`,
              :obj:`stack` :math:`[N, S, 2d]`, :obj:`weights` :math:`[B, K, S]`,
              :obj:`index` :math:`[B, K]`
            - **output:** :math:`[B, K]`
        """
        q_re, q_im = self.rotate(anchor, r, conjugate=corrupt_head)
        return self.margin - weighted_gather_modulus_sum(q_re.contiguous(), q_im.contiguous(),
                                                         stack, weights, index)

    def extra_repr(self) -> str:
        return f'margin={self.margin}'
