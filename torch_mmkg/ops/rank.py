r"""Rank counting over score matrices, fused into one pass when compiled."""
from typing import Tuple

import torch
from torch import Tensor

from .compile import AUTO_COMPILE_RANK_ELEMENTS, kernel

__all__ = ['rank_counts']


def _rank_counts_eager(scores: Tensor, true: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    t = true[:, None]
    return (scores > t).sum(1), (scores >= t).sum(1), torch.isnan(scores).sum(1)


def rank_counts(scores: Tensor, true: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Per row :math:`b` of a score matrix, the number of entries greater than
    :obj:`true[b]`, greater or equal, and NaN, in one fused pass when compiled (on CPU when
    the matrix has more than :obj:`AUTO_COMPILE_RANK_ELEMENTS` entries, in :obj:`"auto"`
    mode).

    Args:
        scores (Tensor): The score matrix.
        true (Tensor): The score each row is compared with.

    Shapes:
        - **input:** :obj:`scores` :math:`[B, N]`, :obj:`true` :math:`[B]`
        - **output:** three :math:`[B]` long tensors
    """
    fn = kernel('ranks', _rank_counts_eager, scores, scores.numel(), AUTO_COMPILE_RANK_ELEMENTS)
    return fn(scores, true)
