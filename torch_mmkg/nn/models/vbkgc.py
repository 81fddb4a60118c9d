from typing import Mapping, Optional

import torch
from torch import Tensor

from torch_mmkg.nn.loss import MarginRankingLoss
from torch_mmkg.nn.validation import check_sizes, choice, real
from .tbkgc import TBKGC


class VBKGC(TBKGC):
    r"""The VBKGC model from the `"Knowledge Graph Completion with Pre-trained Multimodal
    Transformer and Twins Negative Sampling" <https://arxiv.org/abs/2209.07084>`_ paper.

    Each entity has a learnable structural embedding :math:`\mathbf{e}_s \in \mathbb{R}^d`
    and a multi-modal embedding, the linear projection (Eq. 3) of a frozen multi-modal
    feature :math:`\mathbf{h}` (in the paper the [CLS] state of VisualBERT over the entity's
    description and image tokens, see
    :class:`~torch_mmkg.datasets.features.VisualBertEncoder`; any precomputed feature works),

    .. math::
        \mathbf{e}_m = \mathbf{W}\mathbf{h}.

    Several feature modalities may be given: :math:`\mathbf{e}_m = \sum_{m \,:\, k_m(e)}
    \mathbf{W}_m \mathbf{h}_m`, a projection of their concatenation in which a missing one
    contributes nothing. The score adds five TransE scores :math:`f(h, r, t) = -\|\hat{h} +
    \hat{r} - \hat{t}\|_p` (Eqs. 4–10), with :math:`\hat{x} = x / \|x\|_2` as in the
    authors' OpenKE-based code (:obj:`norm_flag=True`; the paper does not say,
    :obj:`normalize=False` scores the raw embeddings),

    .. math::
        \mathcal{F}(h, r, t) = \underbrace{f(\mathbf{h}_s, \mathbf{r}, \mathbf{t}_s) +
        f(\mathbf{h}_m, \mathbf{r}, \mathbf{t}_m)}_{\text{unimodal}} +
        \underbrace{f(\mathbf{h}_s, \mathbf{r}, \mathbf{t}_m) + f(\mathbf{h}_m, \mathbf{r},
        \mathbf{t}_s) + f(\mathbf{h}_s + \mathbf{h}_m, \mathbf{r}, \mathbf{t}_s +
        \mathbf{t}_m)}_{\text{cross-modal}},

    trained with the margin ranking loss against the mean of the :math:`k` negatives of each
    positive (Eq. 15),

    .. math::
        \mathcal{L} = \sum_{(h, r, t)} \max\Big(0,\ \gamma - \mathcal{F}(h, r, t) +
        \frac{1}{k}\sum_{(h', r, t')} \mathcal{F}(h', r, t')\Big).

    With *twins* negative sampling (:obj:`model.loader(..., twins=True)` or
    :obj:`TrainConfig(twins=True)`) the unimodal terms score the corrupted entity
    :math:`(\mathbf{e}'_s, \mathbf{e}'_m)` as usual, but the cross-modal terms score
    :math:`(\mathbf{e}_s, \mathbf{e}'_m)`: only the multi-modal embedding is replaced, so
    the model learns to align each entity's structural and multi-modal embeddings.

    The negatives of Eq. 14 are *filtered*: corrupted triples that are training triples are
    never drawn (twins negatives included). :class:`~torch_mmkg.training.Trainer` does so by
    default for this model (:attr:`default_filter_negatives`, taken by
    :obj:`TrainConfig(filter_negatives=None)`; configs may state :obj:`filter_negatives:
    true`); with :meth:`loader` pass
    :obj:`known=KnownTriples(head_index, rel_type, tail_index, N, R)` of the training triples.

    The score is TBKGC's (:class:`~torch_mmkg.nn.TBKGC`, of which this is a subclass); the
    methods differ in the feature (VisualBERT's fused [CLS] instead of separate image and
    text vectors), the loss, and the sampling.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations.
        hidden_channels (int): The embedding size :math:`d` (the paper uses 128).
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` features (usually
            one, the multi-modal feature).
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability (default: all present).
        margin (float, optional): :math:`\gamma > 0` (the paper tunes it in 4–10).
            (default: :obj:`6.0`)
        p_norm (float, optional): The norm :math:`p \geq 1`. (default: :obj:`1.0`)
        mask_missing (bool, optional): Leave missing modalities out of
            :math:`\mathbf{e}_m`. (default: :obj:`True`)
        regularization (str, optional): Penalty on the batch's embeddings.
            (default: :obj:`None`)
        regularization_weight (float, optional): Its weight. (default: :obj:`0.0`)
        loss_aggregate (str, optional): :obj:`"mean"` for Eq. 15 (the hinge on the mean
            negative score) or :obj:`"pairwise"` for one hinge per negative (the margin
            loss of OpenKE-style code). Eq. 15 is zero as soon as the *mean* negative is
            beyond the margin, which random negatives reach early: on WN9-IMG it stalls far
            below the pairwise loss (see the README). (default: :obj:`"mean"`)
        loss (torch.nn.Module, optional): Replaces the default loss.
        fusion (str or Fusion, optional): The fusion of several feature modalities into
            :math:`\mathbf{e}_m` (see :class:`~torch_mmkg.nn.TBKGC`). (default: :obj:`"sum"`)
        normalize (bool, optional): :math:`L_2`-normalise the arguments of every TransE
            term (the sums :math:`\mathbf{h}_s + \mathbf{h}_m` of :math:`\mathcal{F}_{all}`
            as a whole), as the authors' OpenKE-based code does. (default: :obj:`True`)

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 margin: float = 6.0, p_norm: float = 1.0, mask_missing: bool = True,
                 regularization: Optional[str] = None, regularization_weight: float = 0.0,
                 loss_aggregate: str = 'mean', loss: Optional[torch.nn.Module] = None,
                 fusion='sum', normalize: bool = True):
        check_sizes(self, num_nodes, num_relations, hidden_channels)
        margin = real(self, 'margin', margin, 0.0, low_open=True)
        choice(self, 'loss_aggregate', loss_aggregate, ('mean', 'pairwise'))
        super().__init__(num_nodes, num_relations, hidden_channels, features, masks,
                         margin=margin, p_norm=p_norm, mask_missing=mask_missing,
                         regularization=regularization,
                         regularization_weight=regularization_weight,
                         loss=loss or MarginRankingLoss(margin, aggregate=loss_aggregate),
                         fusion=fusion, normalize=normalize)

    #: Eq. 14 of the paper filters the negatives.
    default_filter_negatives = True

    def score_parts(self, head_index: Tensor, rel_type: Tensor,
                    tail_index: Tensor) -> Mapping[str, Tensor]:
        r"""The five terms :math:`\mathcal{F}_{ss}, \mathcal{F}_{mm}, \mathcal{F}_{sm},
        \mathcal{F}_{ms}, \mathcal{F}_{all}` of the score (Eqs. 4–8) of the given triples,
        for inspection and ablations."""
        h, t = self.entity(head_index), self.entity(tail_index)
        r, f = self.relation(rel_type), self.interaction
        return {name: f(h, r, t, term=i) for i, name in enumerate(('ss', 'mm', 'sm', 'ms',
                                                                   'all'))}
