from typing import Mapping, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.fusion import Fusion, StructureAndFused
from torch_mmkg.nn.fusion.base import check_stack
from torch_mmkg.nn.interactions import TransEInteraction
from torch_mmkg.nn.interactions.weighted_multiview import WeightedMultiViewInteraction
from torch_mmkg.nn.kge.base import KGEModel
from torch_mmkg.nn.loss import MarginRankingLoss
from torch_mmkg.nn.representation import EntityRepresentation
from torch_mmkg.nn.validation import check_sizes, choice, real
from ._modalities import FromDataMixin

__all__ = ['QEB', 'QEB_TERMS', 'QEB_TERM_NAMES', 'ActivatedSumFusion']

_S, _M, _SM = (1, 0), (0, 1), (1, 1)
_R, _RM = (1, 0), (0, 1)
#: QEB's ten energies as (head type, relation, tail type, group) over the entity views
#: (structure :math:`s`, multi-modal :math:`m`) and the relation views
#: (:math:`\mathbf{r}`, :math:`\mathbf{r}_m`), in the order of the authors' ``train.py``:
#: with :math:`\mathbf{r}`: :math:`(s, s), (m, s), (s, m), (m, m), (s + m, s + m)`; with
#: :math:`\mathbf{r}_m`: :math:`(m, m), (s + m, s + m), (s, s), (m, s), (s, m)`.
QEB_TERMS = ((_S, _R, _S, 'unimodal'), (_M, _R, _S, 'crossmodal'),
             (_S, _R, _M, 'crossmodal'), (_M, _R, _M, 'unimodal'),
             (_SM, _R, _SM, 'crossmodal'),
             (_M, _RM, _M, 'unimodal'), (_SM, _RM, _SM, 'crossmodal'),
             (_S, _RM, _S, 'unimodal'), (_M, _RM, _S, 'crossmodal'),
             (_S, _RM, _M, 'crossmodal'))
#: The names of :data:`QEB_TERMS` (head type, relation, tail type; :obj:`"all"` for
#: :math:`(s + m, s + m)`), in order.
QEB_TERM_NAMES = ('ss', 'ms', 'sm', 'mm', 'all', 'mmm', 'all_m', 'sms', 'mms', 'smm')


class ActivatedSumFusion(Fusion):
    r"""The sum of an entity's available representations plus a bias, through an
    activation: QEB's multi-modal embedding :math:`\tanh(\mathbf{W}[\mathbf{x}_1; \ldots;
    \mathbf{x}_M] + \mathbf{b})` of projected features :math:`\mathbf{W}_m \mathbf{x}_m`,
    a dense layer on their concatenation in which a missing one contributes nothing,

    .. math::
        \mathbf{e}^{\mathrm{joint}} = \sigma\Big(\sum_{m \in A_e} \mathbf{e}_m +
        \mathbf{b}\Big),

    with :math:`\sigma` the hyperbolic tangent (:obj:`"tanh"`) or the identity
    (:obj:`"linear"`), :math:`A_e` the available representations (all of them with
    :obj:`mask_missing=False`); an entity with nothing available gets
    :math:`\sigma(\mathbf{b})`, a learned stand-in.

    Args:
        channels (int): Width :math:`D` of each representation.
        activation (str, optional): :obj:`"tanh"` or :obj:`"linear"`. (default:
            :obj:`"tanh"`)
        mask_missing (bool, optional): Leave missing representations out. (default:
            :obj:`True`)

    Shapes:
        - **input:** stack :math:`[*, M, D]`, mask :math:`[*, M]` (optional)
        - **output:** joint embedding :math:`[*, D]`, :obj:`None`
    """
    def __init__(self, channels: int, activation: str = 'tanh', mask_missing: bool = True):
        super().__init__()
        if activation not in ('tanh', 'linear'):
            raise ValueError(f"activation must be 'tanh' or 'linear', got {activation!r}")
        self.channels = int(channels)
        self.activation = activation
        self.mask_missing = bool(mask_missing)
        self.bias = torch.nn.Parameter(torch.empty(self.channels))
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.zeros_(self.bias)  # TensorFlow's dense layer starts at zero

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, None]:
        check_stack(stack, mask, self.channels)
        if mask is not None and self.mask_missing:
            stack = torch.where(mask[..., None], stack, stack.new_zeros(()))
        out = stack.sum(dim=-2) + self.bias
        return (torch.tanh(out) if self.activation == 'tanh' else out), None

    def extra_repr(self) -> str:
        return (f'{self.channels}, activation={self.activation!r}, '
                f'mask_missing={self.mask_missing}')


class QEB(FromDataMixin, KGEModel):
    r"""The Quadruple Embedding Baseline (QEB) from the `"TIVA-KG: A Multimodal Knowledge
    Graph with Text, Image, Video and Audio" <https://doi.org/10.1145/3581783.3612266>`_
    paper, for any number of modalities, some of them missing for some entities.

    Each entity has a structural embedding :math:`\mathbf{s} \in \mathbb{R}^d` and a
    multi-modal one, a dense layer on the concatenation of its modality features (text,
    image, video, audio in TIVA-KG),

    .. math::
        \mathbf{m} = \tanh\Big(\sum_{m \,:\, k_m(e)} \mathbf{W}_m \mathbf{x}_m +
        \mathbf{b}\Big)

    (:class:`ActivatedSumFusion`; a missing modality contributes nothing). Each relation has
    two embeddings, :math:`\mathbf{r}` and :math:`\mathbf{r}_m` (in TIVA-KG the latter is
    built from the relation's own media; here it is a second learned table). The energy adds
    TransE distances :math:`d(a, \rho, b) = \|\mathbf{a}_h + \boldsymbol{\rho} -
    \mathbf{b}_t\|_p` over ten combinations of head type :math:`a`, relation
    :math:`\rho` and tail type :math:`b` (:data:`QEB_TERMS`),

    .. math::
        E(h, r, t) &= d(s, \mathbf{r}, s) + d(m, \mathbf{r}, s) + d(s, \mathbf{r}, m)
        + d(m, \mathbf{r}, m) + d(s{+}m, \mathbf{r}, s{+}m) \\
        &+ d(m, \mathbf{r}_m, m) + d(s{+}m, \mathbf{r}_m, s{+}m)
        + d(s, \mathbf{r}_m, s) + d(m, \mathbf{r}_m, s) + d(s, \mathbf{r}_m, m),

    where :math:`s{+}m` stands for :math:`\mathbf{s} + \mathbf{m}`, the score is
    :math:`f(h, r, t) = -E(h, r, t)`, and training minimises the margin ranking loss
    :math:`\max(0, \gamma + E(h, r, t) - E(h', r, t'))` (the authors' code pairs every
    positive with one tail- and one head-corrupted triple; the head-corrupted energy
    :math:`E(t, -r, h)` equals :math:`E(h, r, t)` under the :math:`L_1` norm).

    Where the authors' TensorFlow code (the original) and the re-implementation behind the
    current comparison tables (zjukg's ``QEB.py``) differ, a switch picks one; the defaults
    follow the original:

    * :obj:`aggregate`: the original sums the ten energies (:obj:`"sum"`); zjukg's version
      averages them and scores :math:`\gamma_s - E/10` (:obj:`"mean"` with
      :obj:`score_margin` :math:`\gamma_s`; the constant only matters to losses of
      absolute scores, not to the margin ranking loss or to ranks);
    * :obj:`activation`: the original's :math:`\tanh` dense layer (:obj:`"tanh"`) or
      zjukg's linear one (:obj:`"linear"`);
    * :obj:`normalize`: zjukg's version :math:`L_2`-normalises every TransE argument
      (OpenKE's :obj:`norm_flag`; the sum :math:`\mathbf{s} + \mathbf{m}` as a whole); the
      original does not;
    * :obj:`trainable_features`: zjukg's version fine-tunes the feature tables.

    Not implemented: the original's structural vectors are pretrained 40-d inputs mapped by
    a :math:`\tanh` dense layer shared with the relations (here, as in zjukg's version, a
    learned table), its audio goes through an LSTM over frames (here every modality is one
    precomputed vector per entity), missing media are filled with trainable padding vectors
    (here they are masked), and the head-corrupted loss gives the energies
    :math:`d(m, \mathbf{r}_m, s)` and :math:`d(s, \mathbf{r}_m, m)` weight 0 (one model
    scores a triple one way, whichever side was corrupted).

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations.
        hidden_channels (int): The embedding size :math:`d` (the original's 100).
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` features.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability (default: all present).
        margin (float, optional): The margin :math:`\gamma > 0` of the default loss (the
            original's). (default: :obj:`10.0`)
        p_norm (float, optional): The norm :math:`p \geq 1` (both versions' :math:`L_1`).
            (default: :obj:`1.0`)
        aggregate (str, optional): :obj:`"sum"` (the original) or :obj:`"mean"` (zjukg's
            version) of the ten energies. (default: :obj:`"sum"`)
        score_margin (float, optional): The constant :math:`\gamma_s` of the score
            :math:`\gamma_s - E` (zjukg's version uses its :obj:`margin`, 6 by default).
            (default: :obj:`0.0`)
        activation (str, optional): :obj:`"tanh"` (the original) or :obj:`"linear"` (zjukg's
            version). (default: :obj:`"tanh"`)
        normalize (bool, optional): :math:`L_2`-normalise the arguments of every TransE term
            (zjukg's version). (default: :obj:`False`)
        trainable_features (bool, optional): Fine-tune the feature tables (zjukg's
            version). (default: :obj:`False`)
        mask_missing (bool, optional): Leave missing modalities out of :math:`\mathbf{m}`;
            :obj:`False` uses every stored row. (default: :obj:`True`)
        regularization (str, optional): :obj:`None`, :obj:`"l2"` or :obj:`"n3"` penalty on
            the batch's embeddings. (default: :obj:`"l2"`)
        regularization_weight (float, optional): Its weight. (default: :obj:`0.0`)
        loss (torch.nn.Module, optional): Replaces the default loss.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`relation` :math:`[*, 2d]` (:math:`[\mathbf{r},
          \mathbf{r}_m]`); :meth:`embed` two :math:`[*, d]` tensors
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 margin: float = 10.0, p_norm: float = 1.0, aggregate: str = 'sum',
                 score_margin: float = 0.0, activation: str = 'tanh', normalize: bool = False,
                 trainable_features: bool = False, mask_missing: bool = True,
                 regularization: Optional[str] = 'l2', regularization_weight: float = 0.0,
                 loss: Optional[torch.nn.Module] = None):
        check_sizes(self, num_nodes, num_relations, hidden_channels)
        margin = real(self, 'margin', margin, 0.0, low_open=True)
        p_norm = real(self, 'p_norm', p_norm, 1.0, finite=False)
        score_margin = real(self, 'score_margin', score_margin)
        choice(self, 'aggregate', aggregate, ('sum', 'mean'))
        choice(self, 'activation', activation, ('tanh', 'linear'))
        for name, value in (('normalize', normalize), ('trainable_features', trainable_features),
                            ('mask_missing', mask_missing)):
            choice(self, name, value, (True, False))
        if not features:
            raise ValueError(f"{type(self).__name__} needs at least one modality (use TransE "
                             f"without any)")
        representation = EntityRepresentation(num_nodes, hidden_channels, features, masks,
                                              projection_layers=1, projection_bias=False,
                                              trainable_features=trainable_features)
        # The constant of gamma - E spread over the terms: sum_k w_k (c - E_k) = gamma - E
        # with c = gamma / sum_k w_k (the weights are 1/10 each under the mean).
        per_term = score_margin if aggregate == 'mean' else score_margin / len(QEB_TERMS)
        interaction = WeightedMultiViewInteraction(
            TransEInteraction(p_norm, margin=per_term, normalize=normalize), QEB_TERMS,
            reduce=aggregate)
        fusion = StructureAndFused(ActivatedSumFusion(hidden_channels, activation,
                                                      mask_missing=mask_missing))
        super().__init__(num_nodes, num_relations, hidden_channels, interaction,
                         loss or MarginRankingLoss(margin), regularization=regularization,
                         regularization_weight=regularization_weight,
                         representation=representation, fusion=fusion)
        self.margin, self.p_norm, self.score_margin = margin, float(p_norm), score_margin
        self.aggregate, self.activation = aggregate, activation
        self.mask_missing = bool(mask_missing)
        self.reset_parameters()

    def embed(self, index: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        r"""The structural and multi-modal embeddings :math:`(\mathbf{s}, \mathbf{m})`, each
        :math:`[*, d]`, of :obj:`index` (all entities if :obj:`None`)."""
        return tuple(self.entity(index).unbind(-2))

    def score_parts(self, head_index: Tensor, rel_type: Tensor,
                    tail_index: Tensor) -> Mapping[str, Tensor]:
        r"""The ten weighted terms of the score of the given triples, keyed by
        :data:`QEB_TERM_NAMES` (they sum to the score), for inspection."""
        h, t = self.entity(head_index), self.entity(tail_index)
        r, f = self.relation(rel_type), self.interaction
        return {name: f(h, r, t, term=k) for k, name in enumerate(QEB_TERM_NAMES)}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, modalities={self.modalities}, '
                f'aggregate={self.aggregate!r})')
