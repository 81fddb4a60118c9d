r"""Training losses and regularisers of knowledge graph embedding models.

Negative-sampling losses take the scores of the positives :obj:`pos` (shape :obj:`[B]`) and
of their negatives :obj:`neg` (shape :obj:`[B, K]`); higher scores mean more plausible.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_mmkg.nn.validation import probability, real
from torch_mmkg.registry import Registry

__all__ = [
    'KGELoss',
    'SelfAdversarialLoss',
    'MarginRankingLoss',
    'SoftplusLoss',
    'BCELoss',
    'SoftmaxCrossEntropyLoss',
    'symmetric_contrastive_loss',
    'l2_regularization',
    'n3_regularization',
    'LOSSES',
]


def _check(pos: Tensor, neg: Tensor):
    if neg.dim() != 2 or pos.shape != neg.shape[:1]:
        raise ValueError(f"expected pos [B] and neg [B, K] scores, got {tuple(pos.shape)} "
                         f"and {tuple(neg.shape)}")


class KGELoss(torch.nn.Module):
    r"""Base class of the negative-sampling losses :math:`\mathcal{L}(s^+, s^-)`."""
    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        raise NotImplementedError


class SelfAdversarialLoss(KGELoss):
    r"""The self-adversarial negative-sampling loss from the `"RotatE: Knowledge Graph
    Embedding by Relational Rotation in Complex Space" <https://arxiv.org/abs/1902.10197>`_
    paper (Eq. 5)

    .. math::
        \mathcal{L} = \frac{1}{2}\Big(-\log\sigma(s^+) - \sum_{i=1}^{K}
        p_i \log\sigma(-s^-_i)\Big), \qquad
        p_i = \frac{\exp(\alpha\, s^-_i)}{\sum_j \exp(\alpha\, s^-_j)},

    averaged over the batch, where the scores :math:`s = \gamma - d(\mathbf{h},\mathbf{r},
    \mathbf{t})` already contain the margin and the weights :math:`p_i` are constants (no
    gradient flows through them). With :obj:`temperature=0` all negatives weigh
    :math:`1/K` (plain negative sampling).

    Args:
        temperature (float, optional): The sampling temperature :math:`\alpha \geq 0`.
            (default: :obj:`1.0`)
    """
    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = real(self, 'temperature', temperature, 0.0)

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        _check(pos, neg)
        weight = torch.softmax(self.temperature * neg.detach(), dim=-1)
        neg_loss = -(weight * F.logsigmoid(-neg)).sum(dim=-1)
        return 0.5 * (-F.logsigmoid(pos) + neg_loss).mean()

    def extra_repr(self) -> str:
        return f'temperature={self.temperature}'


class MarginRankingLoss(KGELoss):
    r"""The margin ranking loss of TransE, pairwise,

    .. math::
        \mathcal{L} = \frac{1}{BK}\sum_{b,i} \max\big(0,\ \lambda - s^+_b + s^-_{b,i}\big),

    or, with :obj:`aggregate="mean"`, against the mean negative score of each positive, the
    form of VBKGC (Eq. 15),

    .. math::
        \mathcal{L} = \frac{1}{B}\sum_{b} \max\Big(0,\ \lambda - s^+_b +
        \frac{1}{K}\sum_i s^-_{b,i}\Big).

    Args:
        margin (float, optional): The margin :math:`\lambda`, finite. (default: :obj:`1.0`)
        aggregate (str, optional): :obj:`"pairwise"` or :obj:`"mean"`.
            (default: :obj:`"pairwise"`)
    """
    def __init__(self, margin: float = 1.0, aggregate: str = 'pairwise'):
        super().__init__()
        if aggregate not in ('pairwise', 'mean'):
            raise ValueError(f"aggregate must be 'pairwise' or 'mean', got {aggregate!r}")
        self.margin = real(self, 'margin', margin)
        self.aggregate = aggregate

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        _check(pos, neg)
        if self.aggregate == 'mean':
            return F.relu(self.margin - pos + neg.mean(dim=-1)).mean()
        return F.relu(self.margin - pos[:, None] + neg).mean()

    def extra_repr(self) -> str:
        return f'margin={self.margin}, aggregate={self.aggregate!r}'


class SoftplusLoss(KGELoss):
    r"""The logistic (softplus) loss of DistMult/ComplEx

    .. math::
        \mathcal{L} = \frac{1}{2}\Big(\frac{1}{B}\sum_b \log(1 + e^{-s^+_b}) +
        \frac{1}{BK}\sum_{b,i} \log(1 + e^{s^-_{b,i}})\Big).
    """
    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        _check(pos, neg)
        return 0.5 * (F.softplus(-pos).mean() + F.softplus(neg).mean())


def _check_1n(logits: Tensor, target: Tensor):
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(target.shape)} "
                         f"differ in shape")


class BCELoss(torch.nn.Module):
    r"""Binary cross-entropy for 1-N scoring with label smoothing (TuckER, MoMoK)

    .. math::
        \mathcal{L} = -\frac{1}{BN}\sum_{b,n} \Big(\tilde{y}_{bn}\log\sigma(s_{bn}) +
        (1 - \tilde{y}_{bn})\log(1 - \sigma(s_{bn}))\Big), \qquad
        \tilde{y} = (1 - \epsilon)\, y + \frac{1}{N},

    the smoothing of TuckER's and MoMoK's code (:math:`\epsilon` = :obj:`label_smoothing`),
    applied, as there, only for :math:`\epsilon > 0`: with :math:`\epsilon = 0` the targets
    are :math:`y` itself.

    Args:
        label_smoothing (float, optional): :math:`\epsilon \in [0, 1)`. (default: :obj:`0.1`)

    Shapes:
        - **input:** logits :math:`[B, N]`, targets :math:`[B, N]` (0/1 or bool)
        - **output:** scalar
    """
    def __init__(self, label_smoothing: float = 0.1):
        super().__init__()
        self.label_smoothing = probability(self, 'label_smoothing', label_smoothing)

    def forward(self, logits: Tensor, target: Tensor, weight: Optional[Tensor] = None) -> Tensor:
        _check_1n(logits, target)
        return smoothed_bce_with_logits(logits, target, self.label_smoothing, weight)

    def extra_repr(self) -> str:
        return f'label_smoothing={self.label_smoothing}'


class SoftmaxCrossEntropyLoss(torch.nn.Module):
    r"""Softmax cross-entropy for 1-N scoring (the 1-N loss of ConvE-style training in
    PyKEEN, "KvsAll" with a softmax): each query's scores over all entities are a
    distribution, fitted to its normalised targets,

    .. math::
        \mathcal{L} = -\frac{1}{B}\sum_b \sum_n \tilde{y}_{bn} \log
        \mathrm{softmax}_n(s_{b})_n, \qquad \tilde{y}_{b} = (1 - \epsilon)
        \frac{y_b}{\sum_n y_{bn}} + \frac{\epsilon}{N}.

    With :obj:`weight` :math:`[N]` (0 for candidates a scorer cannot judge) the softmax runs
    over the weighted candidates only. A query none of whose
    answers the scorer judges adds nothing (an ensemble's view the query's answers lack).

    Args:
        label_smoothing (float, optional): :math:`\epsilon \in [0, 1)`. (default: :obj:`0.0`)

    Shapes:
        - **input:** logits :math:`[B, N]`, targets :math:`[B, N]` (0/1 or bool, at least one
          positive per row)
        - **output:** scalar
    """
    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = probability(self, 'label_smoothing', label_smoothing)

    def forward(self, logits: Tensor, target: Tensor, weight: Optional[Tensor] = None) -> Tensor:
        _check_1n(logits, target)
        target = target.to(logits.dtype)
        if weight is not None:
            keep = weight.reshape(1, -1) > 0
            logits = logits.masked_fill(~keep, float('-inf'))
            target = target * keep
        count = target.sum(dim=-1, keepdim=True)
        if weight is None and bool((count == 0).any()):
            raise ValueError("every 1-N query needs at least one positive target")
        if weight is not None:  # a query none of whose answers this scorer judges: no term
            judged = count.view(-1) > 0
            if not bool(judged.all()):
                if not bool(judged.any()):
                    return logits.masked_fill(~keep, 0.0).sum() * 0.0
                return self(logits[judged].masked_fill(~keep, 0.0),
                            target[judged], weight)
        y = target / count
        log_p = torch.log_softmax(logits, dim=-1)
        eps = self.label_smoothing
        if eps:
            n = logits.size(-1) if weight is None else int(keep.sum())
            y = (1.0 - eps) * y + eps / n * (keep.to(y.dtype) if weight is not None else 1.0)
        return -(y * log_p.masked_fill(y == 0, 0.0)).sum(dim=-1).mean()

    def extra_repr(self) -> str:
        return f'label_smoothing={self.label_smoothing}'


def smoothed_bce_with_logits(logits: Tensor, target: Tensor, label_smoothing: float = 0.0,
                             weight: Optional[Tensor] = None) -> Tensor:
    r"""The mean binary cross-entropy of :class:`BCELoss`, with the smoothed targets
    :math:`\tilde{y} = (1 - \epsilon)\, y + 1/N` (:math:`y` for :math:`\epsilon = 0`) never
    materialised: per element
    :math:`\mathrm{softplus}(s) - \tilde{y} s`, so one elementwise pass over the
    :math:`[B, N]` logits (and :math:`\sigma(s)` in the backward) does the work. With
    :obj:`weight` :math:`[N]` (e.g. 0 for candidates a scorer cannot judge), the weighted
    mean :math:`\sum_{b,n} w_n \ell_{bn} / (B \sum_n w_n)`."""
    B, N = logits.shape[0], logits.size(-1)
    target = target.to(logits.dtype)
    eps = float(label_smoothing)
    softplus = F.softplus(logits)
    if weight is None:
        total = softplus.sum() - (1.0 - eps) * (target * logits).sum()
        if eps:
            total = total - logits.sum() / N
        return total / logits.numel()
    weight = weight.to(logits.dtype).reshape(N)
    total = (softplus @ weight).sum() - (1.0 - eps) * ((target * logits) @ weight).sum()
    if eps:
        total = total - (logits @ weight).sum() / N
    return total / (weight.sum() * B).clamp(min=1.0)


def symmetric_contrastive_loss(a: Tensor, b: Tensor, temperature) -> Tensor:
    r"""The symmetric contrastive (CLIP) loss between paired rows of :obj:`a` and :obj:`b`,
    the cross-modal alignment objective of the `"Large Model-Driven Balanced Multimodal
    Knowledge Graph Completion" <https://github.com/guoynow/LBMKGC>`_ paper (LBMKGC, Eqs.
    7–8),

    .. math::
        S_{ij} = \frac{\mathbf{a}_i \cdot \mathbf{b}_j}{\|\mathbf{a}_i\|\,
        \|\mathbf{b}_j\|}, \qquad
        \mathcal{L} = -\frac{1}{2}\Big(\frac{1}{n}\sum_{i=1}^{n}
        \log\frac{e^{S_{ii}/\tau}}{\sum_{j} e^{S_{ij}/\tau}} + \frac{1}{n}
        \sum_{i=1}^{n} \log\frac{e^{S_{ii}/\tau}}{\sum_{j} e^{S_{ji}/\tau}}\Big),

    row :math:`i` of both being the same entity; every other row of the batch is a negative.

    Args:
        a (torch.Tensor): :math:`[n, D]` embeddings of one modality.
        b (torch.Tensor): :math:`[n, D]` embeddings of the other, row-aligned.
        temperature (float or torch.Tensor): :math:`\tau > 0` (a scalar tensor keeps it
            learnable).
    """
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"expected two [n, D] tensors of equal shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if a.size(0) == 0:
        raise ValueError("the contrastive loss needs at least one pair")
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t()
    logits = sim / temperature
    target = torch.arange(a.size(0), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def l2_regularization(*tensors: Tensor, weight: float = 1.0) -> Tensor:
    r"""The squared :math:`L_2` penalty :math:`\lambda \sum_x \mathrm{mean}(x^2)` over the
    given embedding tensors (the mean keeps it independent of the batch size)."""
    return weight * sum(x.pow(2).mean() for x in tensors)


def n3_regularization(*tensors: Tensor, weight: float = 1.0,
                      complex_: Optional[bool] = True) -> Tensor:
    r"""The weighted nuclear 3-norm from the `"Canonical Tensor Decomposition for Knowledge
    Base Completion" <https://arxiv.org/abs/1806.07297>`_ paper,
    :math:`\lambda \frac{1}{B}\sum_x \sum_k |x_k|^3`, with :math:`|x_k|` the modulus of
    complex coordinate :math:`k` (real and imaginary halves) when :obj:`complex_` is set,
    else the absolute value."""
    total = 0.0
    for x in tensors:
        if complex_:  # |x|^3 = (re^2 + im^2)^(3/2): a zero gradient at 0, where sqrt has none
            re, im = x.chunk(2, dim=-1)
            cube = (re**2 + im**2).pow(1.5)
        else:
            cube = x.abs().pow(3)
        total = total + cube.sum(dim=-1).mean()
    return weight * total


#: The losses by name (case-insensitive, with aliases).
LOSSES = Registry('loss')
LOSSES.register('self_adversarial', SelfAdversarialLoss, aliases=('nssa', ))
LOSSES.register('margin', MarginRankingLoss, aliases=('margin_ranking', ))
LOSSES.register('softplus', SoftplusLoss, aliases=('logistic', ))
LOSSES.register('bce', BCELoss, aliases=('binary_cross_entropy', ))
LOSSES.register('softmax', SoftmaxCrossEntropyLoss,
                aliases=('softmax_cross_entropy', 'cross_entropy'))

#: Losses of the 1-N regime (called as :obj:`loss(logits, target, weight)`).
ONE_TO_N_LOSSES = (BCELoss, SoftmaxCrossEntropyLoss)
