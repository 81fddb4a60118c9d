from typing import Mapping, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.interactions import Interaction
from torch_mmkg.nn.kge.base import KGEModel
from torch_mmkg.nn.loss import BCELoss
from torch_mmkg.nn.validation import IndexSpec, check_indices, check_sizes, choice, probability
from ._literals import LITERAL_PRESENCE, NORMALIZE, LiteralRepresentation, QueryDropout
from ._modalities import FromDataMixin

__all__ = ['KBLN', 'KBLNInteraction', 'rbf_statistics', 'rbf_scores']

#: Added to the variance of every attribute, as the LiteralE repository's
#: :obj:`main_kbln.py` does ("to avoid degenerate case").
VARIANCE_EPS = 1e-6
#: The least elements of one block of the one-vs-all RBF term.
MIN_BLOCK_ELEMENTS = 1 << 16


def rbf_statistics(values: Tensor, present: Optional[Tensor], head_index: Tensor,
                   tail_index: Tensor, chunk: int = 1 << 15) -> Tuple[Tensor, Tensor]:
    r"""The fixed RBF parameters of KBLN from training triples: per attribute :math:`i`, the
    mean :math:`c_i` and the population variance :math:`\sigma_i^2` (plus
    :math:`10^{-6}`) of the differences :math:`n_{h,i} - n_{t,i}` over the training triples
    :math:`(h, r, t)`,

    .. math::
        c_i = \frac{1}{|T_i|} \sum_{(h, t) \in T_i} (n_{h,i} - n_{t,i}), \qquad
        \sigma_i^2 = \frac{1}{|T_i|} \sum_{(h, t) \in T_i} (n_{h,i} - n_{t,i} - c_i)^2 +
        10^{-6},

    :math:`T_i` being all training triples (:obj:`present` is :obj:`None`: the LiteralE
    repository's :obj:`main_kbln.py`, :obj:`np.mean` and :obj:`np.var` of the differences of
    its zero-filled literal matrix), or those whose head and tail both have attribute
    :math:`i` (:obj:`present` :obj:`[N, A]`). An attribute without any such triple gets
    :math:`c_i = 0`, :math:`\sigma_i^2 = 1`. Accumulated in float64, :obj:`chunk` triples at a
    time (two passes).

    Returns:
        (Tensor, Tensor): :math:`\mathbf{c}` and :math:`\boldsymbol{\sigma}^2`, :obj:`[A]`
        float64.
    """
    n = values.detach().double()
    A = n.size(1)
    total = n.new_zeros(A)
    count = n.new_zeros(A)

    def blocks():
        for s in range(0, head_index.numel(), chunk):
            h, t = head_index[s:s + chunk], tail_index[s:s + chunk]
            diff = n[h] - n[t]
            if present is None:
                yield diff, None
            else:
                yield diff, (present[h] & present[t]).double()

    for diff, both in blocks():
        if both is None:
            total += diff.sum(0)
            count += diff.size(0)
        else:
            total += (diff * both).sum(0)
            count += both.sum(0)
    has = count > 0
    center = torch.where(has, total / count.clamp(min=1), n.new_zeros(A))
    squares = n.new_zeros(A)
    for diff, both in blocks():
        dev = (diff - center) ** 2
        squares += (dev if both is None else dev * both).sum(0)
    variance = torch.where(has, squares / count.clamp(min=1) + VARIANCE_EPS, n.new_ones(A))
    return center, variance


def _block_size(B: int, N: int, A: int, max_elements: Optional[int]) -> int:
    budget = max_elements or max(B * N, MIN_BLOCK_ELEMENTS)
    return max(1, min(N, budget // max(1, B * A)))


def _rbf_block(a: Tensor, n: Tensor, variance: Tensor, pa: Optional[Tensor],
               pn: Optional[Tensor]) -> Tensor:
    r""":math:`\exp(-(a_{bi} - n_{ei})^2 / \sigma_i^2)` (times the presences) as
    :obj:`[B, n, A]`, in one buffer."""
    phi = a[:, None, :] - n[None, :, :]
    phi.pow_(2).div_(variance).neg_().exp_()
    if pa is not None:
        phi.mul_(pa[:, None, :]).mul_(pn[None, :, :])
    return phi


class _RBFScores(torch.autograd.Function):
    r""":math:`S_{be} = \sum_i w_{bi} \exp(-(a_{bi} - n_{ei})^2 / \sigma_i^2)` in blocks of
    candidates; the backward pass recomputes each block instead of storing it, so that
    neither pass holds more than one :obj:`[B, n, A]` block. Only :math:`\mathbf{w}` gets a
    gradient (the literals and the RBF parameters are constants)."""
    @staticmethod
    def forward(ctx, w, a, n, variance, pa, pn, step):
        B, N = a.size(0), n.size(0)
        out = w.new_empty(B, N)
        for s in range(0, N, step):
            e = min(N, s + step)
            phi = _rbf_block(a, n[s:e], variance, pa, None if pn is None else pn[s:e])
            out[:, s:e] = torch.bmm(phi, w.unsqueeze(-1)).squeeze(-1)
        ctx.save_for_backward(a, n, variance, pa, pn)
        ctx.step = step
        return out

    @staticmethod
    def backward(ctx, grad):
        a, n, variance, pa, pn = ctx.saved_tensors
        grad_w = None
        if ctx.needs_input_grad[0]:
            N = n.size(0)
            grad_w = a.new_zeros(a.shape)
            for s in range(0, N, ctx.step):
                e = min(N, s + ctx.step)
                phi = _rbf_block(a, n[s:e], variance, pa, None if pn is None else pn[s:e])
                grad_w += torch.bmm(grad[:, None, s:e], phi).squeeze(1)
        return grad_w, None, None, None, None, None, None


def rbf_scores(w: Tensor, a: Tensor, n: Tensor, variance: Tensor,
               pa: Optional[Tensor] = None, pn: Optional[Tensor] = None,
               max_elements: Optional[int] = None) -> Tensor:
    r"""The one-vs-all RBF term :math:`S_{be} = \sum_i w_{bi}\, p_{bi}\, p_{ei}
    \exp\!\big(-(a_{bi} - n_{ei})^2 / \sigma_i^2\big)` as :obj:`[B, N]`, without materialising
    :obj:`[B, N, A]`: candidates in blocks of at most :obj:`max_elements` (default
    :math:`\max(B N, 2^{16})`, the size of the score matrix itself) block elements, each
    recomputed in the backward pass. The Gaussian of a difference does not factorise into a
    product of a query and a candidate factor, hence the blocks.

    Args:
        w (Tensor): Per query, the weights :math:`[B, A]` (the only input with a gradient).
        a (Tensor): Per query, :math:`[B, A]`.
        n (Tensor): Per candidate, :math:`[N, A]`.
        variance (Tensor): :math:`\boldsymbol{\sigma}^2`, :math:`[A]`.
        pa (Tensor, optional): Per query, the presence :math:`[B, A]` (0/1).
        pn (Tensor, optional): Per candidate, the presence :math:`[N, A]` (0/1).
        max_elements (int, optional): The block size bound.
    """
    a, n, variance = a.detach(), n.detach(), variance.detach().to(a.dtype)
    if (pa is None) != (pn is None):
        raise ValueError("rbf_scores: give both presences or neither")
    if pa is not None:
        pa, pn = pa.detach().to(a.dtype), pn.detach().to(a.dtype)
    step = _block_size(a.size(0), n.size(0), a.size(1), max_elements)
    return _RBFScores.apply(w, a, n, variance, pa, pn, step)


class KBLNInteraction(Interaction):
    r"""KBLN's score function: DistMult of the structural parts plus a relation-weighted sum
    of radial basis functions of the entities' literal differences,

    .. math::
        f(\mathbf{h}, \mathbf{r}, \mathbf{t}) = \langle \mathbf{h}_e, \mathbf{r}_e,
        \mathbf{t}_e \rangle + \mathbf{w}_r^{\top} \phi(\mathbf{n}_h - \mathbf{n}_t), \qquad
        \phi_i(x) = \exp\!\Big(-\frac{(x_i - c_i)^2}{\sigma_i^2}\Big),

    over entity representations :math:`[\mathbf{h}_e \,\|\, \mathbf{n}_h \,\|\,
    \mathbf{p}_h]` (structure :math:`d`, literals :math:`A`, and with :obj:`mask_missing`
    their 0/1 presence :math:`A`, a term counting only where both entities have the
    attribute: :math:`\phi_i \, p_{h,i}\, p_{t,i}`) and relation representations
    :math:`[\mathbf{r}_e \,\|\, \mathbf{w}_r]` (:math:`d + A`). The literal columns are
    constants (no gradient). :math:`\mathbf{c}` and :math:`\boldsymbol{\sigma}^2` are fixed
    buffers (:func:`rbf_statistics`). One-vs-all scoring is one matrix product for DistMult
    and :func:`rbf_scores` for the RBF term (heads: :math:`\phi_i(n_{e,i} - n_{t,i})` is the
    Gaussian of :math:`(n_{t,i} + c_i) - n_{e,i}`).

    Args:
        channels (int): :math:`d`.
        num_attributes (int): :math:`A`.
        mask_missing (bool, optional): Entity representations carry presences.
            (default: :obj:`True`)
    """
    #: The bound on the elements of one block of the one-vs-all RBF term (:obj:`None`:
    #: :math:`\max(B N, 2^{16})`).
    max_block_elements: Optional[int] = None

    def __init__(self, channels: int, num_attributes: int, mask_missing: bool = True):
        super().__init__()
        self.channels, self.num_attributes = int(channels), int(num_attributes)
        self.mask_missing = bool(mask_missing)
        self.register_buffer('centers', torch.zeros(self.num_attributes))
        self.register_buffer('variances', torch.ones(self.num_attributes))

    def entity_width(self, dim: int) -> int:
        return self.channels + self.num_attributes * (2 if self.mask_missing else 1)

    def relation_width(self, dim: int) -> int:
        return self.channels + self.num_attributes

    def split_entity(self, x: Tensor) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        r""":math:`(\mathbf{e}, \mathbf{n}, \mathbf{p})` of entity representations (the
        presence :obj:`None` without :obj:`mask_missing`)."""
        d, A = self.channels, self.num_attributes
        if x.size(-1) != self.entity_width(d):
            raise ValueError(f"KBLNInteraction: entity representations must have width "
                             f"{self.entity_width(d)}, got {x.size(-1)}")
        p = x[..., d + A:].detach() if self.mask_missing else None
        return x[..., :d], x[..., d:d + A].detach(), p

    def split_relation(self, r: Tensor) -> Tuple[Tensor, Tensor]:
        r""":math:`(\mathbf{r}_e, \mathbf{w}_r)`."""
        return r[..., :self.channels], r[..., self.channels:]

    def phi(self, diff: Tensor) -> Tensor:
        r""":math:`\phi(\mathbf{x})` of literal differences :math:`[*, A]`."""
        return torch.exp(-(diff - self.centers) ** 2 / self.variances)

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        (he, hn, hp), (te, tn, tp) = self.split_entity(h), self.split_entity(t)
        re, w = self.split_relation(r)
        phi = self.phi(hn - tn)
        if self.mask_missing:
            phi = phi * hp * tp
        return (he * re * te).sum(dim=-1) + (w * phi).sum(dim=-1)

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        (he, hn, hp), (te, tn, tp) = self.split_entity(h), self.split_entity(t_all)
        re, w = self.split_relation(r)
        return (he * re) @ te.t() + rbf_scores(w, hn - self.centers, tn, self.variances, hp,
                                               tp, self.max_block_elements)

    def score_heads(self, h_all: Tensor, r: Tensor, t: Tensor) -> Tensor:
        (he, hn, hp), (te, tn, tp) = self.split_entity(h_all), self.split_entity(t)
        re, w = self.split_relation(r)
        return (te * re) @ he.t() + rbf_scores(w, tn + self.centers, hn, self.variances, tp,
                                               hp, self.max_block_elements)

    def extra_repr(self) -> str:
        return (f'{self.channels}, num_attributes={self.num_attributes}, '
                f'mask_missing={self.mask_missing}')


class KBLN(FromDataMixin, KGEModel):
    r"""The KBLN model (the latent and numerical experts of KBLRN) from the `"KBLRN:
    End-to-End Learning of Knowledge Base Representations with Latent, Relational, and
    Numerical Features" <https://arxiv.org/abs/1709.04676>`_ paper (UAI 2018), as implemented
    in the LiteralE repository (SmartDataAnalytics/LiteralE, :obj:`model.py` :obj:`KBLN`,
    :obj:`main_kbln.py`), whose results NATIVE's Table 3 reports as "KBLN":

    .. math::
        f(h, r, t) = \langle \mathbf{e}_h, \mathbf{r}, \mathbf{e}_t \rangle +
        \mathbf{w}_r^{\top} \phi(\mathbf{n}_h - \mathbf{n}_t), \qquad
        \phi_i(x) = \exp\!\Big(-\frac{(x_i - c_i)^2}{\sigma_i^2}\Big),

    where :math:`\mathbf{n}_e \in \mathbb{R}^A` are the entity's numerical literals,
    :math:`\mathbf{w}_r \in \mathbb{R}^A` is learned per relation (initialised
    :math:`\mathcal{N}(0, 1)`, the original's :obj:`nn.Embedding`) and :math:`c_i`,
    :math:`\sigma_i^2` are fixed from the training triples (:func:`rbf_statistics`: the mean
    and the population variance, plus :math:`10^{-6}`, of :math:`n_{h,i} - n_{t,i}` over the
    training triples, as :obj:`main_kbln.py` computes them). Training is 1-N with binary
    cross-entropy on :math:`\sigma(f)` and label smoothing 0.1 (the ConvE framework's default,
    which :obj:`main_kbln.py` applies), input dropout on the query entity and relation
    embeddings (not on :math:`\mathbf{w}_r`). The relational (rule) expert of KBLRN, which
    needs AMIE, is not part of KBLN.

    **Literals** are read as for :class:`LiteralE` (:obj:`literal_presence`); the original
    uses the raw values (:obj:`literal_normalization="none"`; the RBF is invariant to an
    affine rescaling of an attribute whose missing values are masked). With
    :obj:`mask_missing` (default) the term of attribute :math:`i` counts only where both
    entities have it,
    :math:`w_{r,i}\, \phi_i\, p_{h,i}\, p_{t,i}`, and :math:`c_i, \sigma_i` are computed over
    the training triples where both have it; :obj:`mask_missing=False` is the original, whose
    missing literals are 0 (this library's numeric tables store 0 for a missing attribute:
    its mean, after their z-scoring). Pass the numeric table only
    (:obj:`from_data(..., modalities=['numeric'])`): every column of every table given is an
    attribute.

    **RBF parameters.** :meth:`from_data` fits :math:`\mathbf{c}, \boldsymbol{\sigma}^2` on
    the graph's training split; the constructor on :obj:`train_edge_index`; without it they
    are :math:`\mathbf{0}` and :math:`\mathbf{1}` until :meth:`fit_rbf` is called. They are
    buffers of the state dict.

    **Head queries** are scored by the formula, :math:`(e, r, t)`, i.e. :math:`\phi(\mathbf{n}_e
    - \mathbf{n}_t)`; the original ranks heads as tails of :math:`(t, r, ?)` with the same
    relation, :math:`\phi(\mathbf{n}_t - \mathbf{n}_e)`.

    **Memory.** One-vs-all scoring of :math:`B` queries against :math:`N` entities computes the
    RBF term in blocks of candidates (:func:`rbf_scores`) of at most :math:`\max(BN, 2^{16})`
    elements, recomputed in the backward pass: besides the :math:`[B, N]` scores it holds one
    :math:`[B, n, A]` block (:math:`n = \lfloor BN / (BA) \rfloor`), i.e. :math:`O(BN)` per step
    instead of the original's :math:`[B, N, A]` tensor; the compute is :math:`O(BNA)` as in the
    original.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations :math:`R`.
        hidden_channels (int): The embedding size :math:`d`.
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` literal table.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability (default: all present).
        train_edge_index (Tensor, optional): The heads and tails :obj:`[2, E]` of the training
            triples, to fit :math:`\mathbf{c}, \boldsymbol{\sigma}^2`. (default: :obj:`None`)
        input_dropout (float, optional): Dropout of the query entity and relation embeddings
            (the LiteralE repository's command line: 0.2). (default: :obj:`0.2`)
        label_smoothing (float, optional): Of the default :class:`~torch_mmkg.nn.BCELoss`.
            (default: :obj:`0.1`)
        literal_presence (str, optional): :obj:`"auto"`, :obj:`"columns"`, :obj:`"zeros"`
            or :obj:`"entity"`. (default: :obj:`"auto"`)
        literal_normalization (str, optional): :obj:`"none"` (the original) or :obj:`"minmax"`.
            (default: :obj:`"none"`)
        mask_missing (bool, optional): (default: :obj:`True`)
        regularization (str, optional): :obj:`None`, :obj:`"l2"` or :obj:`"n3"` (the
            original has none). (default: :obj:`None`)
        regularization_weight (float, optional): (default: :obj:`0.0`)
        loss (torch.nn.Module, optional): Replaces the default loss.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`
    """
    one_to_n = True

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 train_edge_index: Optional[Tensor] = None, input_dropout: float = 0.2,
                 label_smoothing: float = 0.1, literal_presence: str = 'auto',
                 literal_normalization: str = 'none', mask_missing: bool = True,
                 regularization: Optional[str] = None, regularization_weight: float = 0.0,
                 loss: Optional[torch.nn.Module] = None):
        num_nodes, num_relations, hidden_channels = check_sizes(
            self, num_nodes, num_relations, hidden_channels)
        input_dropout = probability(self, 'input_dropout', input_dropout)
        label_smoothing = probability(self, 'label_smoothing', label_smoothing)
        choice(self, 'literal_presence', literal_presence, LITERAL_PRESENCE)
        choice(self, 'literal_normalization', literal_normalization, NORMALIZE)
        if not features:
            raise ValueError(f"{type(self).__name__} needs at least one literal table "
                             f"(features); without literals use DistMult")
        d = hidden_channels
        representation = LiteralRepresentation(
            num_nodes, d, features, masks, literal_presence, literal_normalization,
            attribute_presence=mask_missing, owner=self)
        rbf = KBLNInteraction(d, representation.num_attributes, mask_missing)
        super().__init__(num_nodes, num_relations, hidden_channels,
                         QueryDropout(rbf, input_dropout, entity_columns=d, relation_columns=d),
                         loss or BCELoss(label_smoothing), regularization=regularization,
                         regularization_weight=regularization_weight,
                         representation=representation)
        self.mask_missing = bool(mask_missing)
        self.input_dropout = input_dropout
        self.rbf_fitted = False
        if train_edge_index is not None:
            self.fit_rbf(train_edge_index)
        self.reset_parameters()

    @classmethod
    def from_data(cls, data, hidden_channels: int, modalities=None, **kwargs):
        r"""Builds the model for a :mod:`torch_mmkg` graph with all its modalities, or the
        subset :obj:`modalities`, its RBF parameters fitted on the training split."""
        if kwargs.get('train_edge_index') is None:
            from torch_mmkg.data import get_triples
            head, _, tail = get_triples(data, 'train')
            kwargs['train_edge_index'] = torch.stack([head, tail])
        return super().from_data(data, hidden_channels, modalities, **kwargs)

    @property
    def rbf(self) -> KBLNInteraction:
        r"""The score function (inside the input dropout)."""
        return self.interaction.base

    def reset_parameters(self):
        r"""The structural and relation embeddings Xavier-normal, :math:`\mathbf{w}_r \sim
        \mathcal{N}(0, 1)` (the original's :obj:`init` and :obj:`nn.Embedding`); the RBF
        parameters are kept."""
        d = self.hidden_channels
        self.representation.reset_structure()
        with torch.no_grad():
            torch.nn.init.xavier_normal_(self.rel_emb.weight[:, :d])
            torch.nn.init.normal_(self.rel_emb.weight[:, d:])

    @torch.no_grad()
    def fit_rbf(self, train_edge_index: Tensor) -> Tuple[Tensor, Tensor]:
        r"""Sets :math:`\mathbf{c}` and :math:`\boldsymbol{\sigma}^2` from the training
        triples' heads and tails :obj:`[2, E]` (:func:`rbf_statistics`) and returns them."""
        if (not isinstance(train_edge_index, Tensor) or train_edge_index.dim() != 2
                or train_edge_index.size(0) != 2):
            got = (tuple(train_edge_index.shape) if isinstance(train_edge_index, Tensor)
                   else repr(train_edge_index))
            raise ValueError(f"{type(self).__name__}: train_edge_index must be a [2, E] tensor "
                             f"of head and tail ids, got {got}")
        index, = check_indices(type(self).__name__, IndexSpec(
            'train_edge_index', train_edge_index, self.num_nodes, 'entity'))
        rep = self.representation
        index = index.to(rep.literals.device)
        A = rep.num_attributes
        center, variance = rbf_statistics(rep.literals[:, :A],
                                          rep.present if self.mask_missing else None,
                                          index[0], index[1])
        self.rbf.centers.copy_(center)
        self.rbf.variances.copy_(variance)
        self.rbf_fitted = True
        return self.rbf.centers, self.rbf.variances

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, modalities={self.modalities})')
