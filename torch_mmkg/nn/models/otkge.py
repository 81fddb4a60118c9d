from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from torch_mmkg.nn.fusion.weighted import WeightedSumFusion
from torch_mmkg.nn.interactions import ComplExInteraction
from torch_mmkg.nn.kge.base import KGEModel
from torch_mmkg.nn.loss import SoftmaxCrossEntropyLoss
from torch_mmkg.nn.representation import STRUCTURE, EntityRepresentation, register_modalities
from torch_mmkg.nn.validation import check_sizes, choice, positive_int, real
from torch_mmkg.ops.sinkhorn import sinkhorn
from ._modalities import FromDataMixin
from .rsme import _normal_init

__all__ = ['OTKGE', 'OptimalTransportRepresentation', 'mean_transport_plan']

#: Elements of one batch of cost matrices in :func:`mean_transport_plan`.
_CHUNK_ELEMENTS = 2**24


@torch.no_grad()
def mean_transport_plan(features: Tensor, structural: Tensor, scale: float = 100.0,
                        epsilon: float = 10.0, max_iter: int = 1000, tol: float = 1e-9
                        ) -> Tensor:
    r"""OTKGE's mean transport plan :math:`\bar{\mathbf{P}} \in \mathbb{R}^{F \times D}`
    between the feature dimensions and the structural dimensions of :math:`n` entities
    (:obj:`features` :math:`[n, F]`, :obj:`structural` :math:`[n, D]`): per entity
    :math:`i` the entropic plan (:func:`~torch_mmkg.ops.sinkhorn.sinkhorn`, log domain)
    between the uniform distributions over its :math:`F` feature and :math:`D` structural
    coordinates for the cost :math:`C_{kj} = \mathrm{scale}\,(x_{ik} - e_{ij})^2`, then the
    mean over the entities. Without gradient; the cost matrices are batched within a
    bounded memory."""
    n, Fm = features.shape
    D = structural.size(1)
    total = features.new_zeros(Fm, D)
    if n == 0:
        return total
    step = max(1, _CHUNK_ELEMENTS // max(Fm * D, 1))
    for i in range(0, n, step):
        x, e = features[i:i + step], structural[i:i + step]
        cost = scale * (x[:, :, None] - e[:, None, :]).pow(2)
        total += sinkhorn(cost, epsilon=epsilon, max_iter=max_iter, tol=tol).sum(dim=0)
    return total / n


class OptimalTransportRepresentation(EntityRepresentation):
    r"""OTKGE's entity representation: a structural complex embedding :math:`\mathbf{e}_s`
    (slot 0) and per modality :math:`m` the features carried to the structural space by a
    transport map,

    .. math::
        \mathbf{x}_m \mathbf{T}_m, \qquad \mathbf{T}_m = \mathrm{scale}\cdot D\cdot
        \bar{\mathbf{P}}_m + \boldsymbol{\Delta}_m,

    :math:`\bar{\mathbf{P}}_m` the :func:`mean_transport_plan` of the current structural
    embeddings and features of the OT entities (computed without gradient at every pass,
    cached while the structural table is unchanged), :math:`\boldsymbol{\Delta}_m
    \in \mathbb{R}^{F_m \times D}` learnable (Xavier-uniform).

    The OT entities: the first :obj:`ot_entities` (the authors' code: entities 0–9), or
    all (:obj:`"all"`), or with :obj:`ot_random` a fresh random subset of that size at
    every pass; with :obj:`mask_missing` only entities that have the modality.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        channels (int): The width :math:`D = 2d`.
        features (Mapping[str, Tensor]): Per modality, :obj:`[N, F_m]`.
        masks (Mapping[str, Tensor], optional): Per modality, :obj:`[N]`.
        scale (float, optional): (default: :obj:`100.0`)
        ot_entities (int or str, optional): (default: :obj:`10`)
        ot_random (bool, optional): (default: :obj:`False`)
        ot_epsilon (float, optional): Sinkhorn's :math:`\epsilon`. (default: :obj:`10.0`)
        ot_max_iter (int, optional): (default: :obj:`1000`)
        ot_tol (float, optional): (default: :obj:`1e-9`)
        mask_missing (bool, optional): (default: :obj:`True`)
        init_scale (float, optional): :math:`\mathcal{N}(0, 1)` times it, or Xavier with
            :obj:`None`. (default: :obj:`1e-3`)

    Shapes:
        - **input:** entity indices :math:`[*]` (all if :obj:`None`)
        - **output:** stack :math:`[*, M + 1, D]`, mask :math:`[*, M + 1]`
    """
    def __init__(self, num_nodes: int, channels: int, features: Mapping[str, Tensor],
                 masks: Optional[Mapping[str, Tensor]] = None, scale: float = 100.0,
                 ot_entities: Union[int, str] = 10, ot_random: bool = False,
                 ot_epsilon: float = 10.0, ot_max_iter: int = 1000, ot_tol: float = 1e-9,
                 mask_missing: bool = True, init_scale: Optional[float] = 1e-3):
        torch.nn.Module.__init__(self)
        self.num_nodes, self.channels = int(num_nodes), int(channels)
        if not features:
            raise ValueError("OTKGE needs at least one modality (ComplEx has none)")
        self.modalities = register_modalities(self, num_nodes, features, masks, (STRUCTURE, ))
        self.node_emb = torch.nn.Embedding(num_nodes, channels)
        self.init = (_normal_init(init_scale) if init_scale is not None
                     else torch.nn.init.xavier_uniform_)
        self.projection = None
        self.delta = torch.nn.ParameterDict({
            m: torch.nn.Parameter(torch.empty(x.size(1), channels))
            for m, x in features.items()})
        self.scale, self.ot_entities, self.ot_random = float(scale), ot_entities, ot_random
        self.ot_epsilon, self.ot_max_iter, self.ot_tol = ot_epsilon, ot_max_iter, ot_tol
        self.mask_missing = bool(mask_missing)
        self._plans: Dict[str, Tuple[tuple, Tensor]] = {}

    @property
    def costly(self) -> bool:
        return True

    @property
    def rowwise(self) -> bool:
        # a random set of OT entities per pass: chunks of one pass would get other plans
        return not self.ot_random

    def reset_encoders(self):
        for p in self.delta.values():
            torch.nn.init.xavier_uniform_(p)
        self._plans = {}

    def present(self, modality: str, index: Optional[Tensor] = None) -> Tensor:
        mask = self.mask(modality, index)
        return mask if self.mask_missing else torch.ones_like(mask)

    def ot_index(self, modality: str) -> Tensor:
        r"""The entities the plan of :obj:`modality` is computed from."""
        device = self.node_emb.weight.device
        ids = (self.present(modality).nonzero().view(-1) if self.mask_missing else
               torch.arange(self.num_nodes, device=device))
        if self.ot_entities == 'all':
            return ids
        if self.ot_random:
            return ids[torch.randperm(ids.numel(), device=device)[:self.ot_entities]]
        return ids[:self.ot_entities]

    def transport_plan(self, modality: str) -> Tensor:
        r""":math:`\bar{\mathbf{P}}_m` :math:`[F_m, D]` of the current structural table."""
        weight = self.node_emb.weight
        key = (weight._version, weight.data_ptr(), weight.device, weight.dtype)
        cached = self._plans.get(modality)
        if cached is not None and cached[0] == key and not self.ot_random:
            return cached[1]
        idx = self.ot_index(modality)
        plan = mean_transport_plan(self.features(modality, idx), weight.detach()[idx],
                                   self.scale, self.ot_epsilon, self.ot_max_iter, self.ot_tol)
        self._plans[modality] = (key, plan)
        return plan

    def transport_map(self, modality: str) -> Tensor:
        r""":math:`\mathbf{T}_m = \mathrm{scale}\cdot D\cdot\bar{\mathbf{P}}_m +
        \boldsymbol{\Delta}_m` :math:`[F_m, D]`."""
        return (self.scale * self.channels * self.transport_plan(modality) +
                self.delta[modality])

    def encode(self, index: Optional[Tensor] = None) -> Dict[str, Tensor]:
        return {m: self.features(m, index) @ self.transport_map(m) for m in self.modalities}

    def forward(self, index: Optional[Tensor] = None,
                rel_type: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        s = self.structural(index)
        enc = self.encode(index)
        ones = torch.ones(s.shape[:-1], dtype=torch.bool, device=s.device)
        return (torch.stack([s] + [enc[m] for m in self.modalities], dim=-2),
                torch.stack([ones] + [self.present(m, index) for m in self.modalities], -1))

    def extra_repr(self) -> str:
        return (f'{self.num_nodes}, {self.channels}, modalities={self.modalities}, '
                f'scale={self.scale}, ot_entities={self.ot_entities!r}, '
                f'ot_epsilon={self.ot_epsilon}')


class OTKGE(FromDataMixin, KGEModel):
    r"""The OTKGE model from the `"OTKGE: Multi-modal Knowledge Graph Embeddings via Optimal
    Transport" <https://openreview.net/forum?id=gbXqMdxsZIP>`_ paper (NeurIPS 2022), for any
    number of modalities (the paper has images and text).

    Each modality's features are carried to the structural space by an optimal-transport
    map (:class:`OptimalTransportRepresentation`) and mixed with the structural embedding,

    .. math::
        \hat{\mathbf{e}} = \Big(1 - \sum_m \alpha_m\Big)\mathbf{e}_s + \sum_m \alpha_m\,
        \mathbf{x}_m \mathbf{T}_m, \qquad \mathbf{T}_m = \mathrm{scale}\cdot D\cdot
        \bar{\mathbf{P}}_m + \boldsymbol{\Delta}_m,

    (:math:`\alpha_{img}, \alpha_{txt} = \alpha, \gamma` in the paper) where
    :math:`\bar{\mathbf{P}}_m` is the mean entropic transport plan, by Sinkhorn iterations,
    between the uniform distributions over the feature and the structural dimensions of
    entities :math:`i` with the cost :math:`C_{kj} = \mathrm{scale}\,(x_{ik} - e_{ij})^2`,

    .. math::
        \mathbf{P}^{(i)} = \operatorname*{arg\,min}_{\mathbf{P}\mathbf{1} = \mathbf{1}/F,\
        \mathbf{P}^{\top}\mathbf{1} = \mathbf{1}/D} \langle \mathbf{P}, \mathbf{C}^{(i)}
        \rangle - \epsilon H(\mathbf{P}), \qquad \bar{\mathbf{P}} = \frac{1}{n}\sum_i
        \mathbf{P}^{(i)},

    recomputed without gradient at every forward pass. The score is ComplEx,
    :math:`f(h, r, t) = \mathrm{Re}\langle \hat{\mathbf{h}}, \mathbf{r},
    \overline{\hat{\mathbf{t}}}\rangle`, trained 1-N with reciprocal relations, softmax
    cross-entropy and the N3 penalty (Adagrad, lr 0.1, in the authors' runs).

    **As a composition**: :class:`OptimalTransportRepresentation`, a
    :class:`~torch_mmkg.nn.fusion.WeightedSumFusion` with the weights
    :math:`[1 - \sum_m \alpha_m, \alpha_1, \ldots]`, ComplEx; the Sinkhorn solver is
    :func:`torch_mmkg.ops.sinkhorn.sinkhorn`.

    **Where sources differ** (switches; defaults follow the authors' code, the paper
    giving no values):

    * :obj:`ot_entities`: the code computes :math:`\bar{\mathbf{P}}` from entities 0–9
      (:obj:`10`); :obj:`"all"` averages over every entity, :obj:`ot_random=True` draws a
      random subset of that size at each pass.
    * :obj:`ot_epsilon`: the code's kernel is :math:`e^{-0.1\,C}` (its :obj:`reg=0.1`
      multiplies the cost), an entropic regularisation :math:`\epsilon = 10` (default);
      :obj:`ot_epsilon=0.1` is :obj:`reg=0.1` as Sinkhorn's :math:`\epsilon` is usually
      meant (:math:`e^{-C/0.1}`, which the log domain solves without underflow).
    * The code iterates in float32 and, on an overflow, returns the previous scalings; the
      log domain here does not overflow.

    **Missing modalities.** With :obj:`mask_missing` an entity without modality :math:`m`
    gives :math:`\alpha_m` to its structural embedding (:obj:`missing="structure"`) or to
    its other modalities in proportion (:obj:`"renormalize"`), and only entities with
    :math:`m` enter its plan; :obj:`mask_missing=False` mixes the zero rows in like the
    authors (:math:`\mathbf{0}\,\mathbf{T}_m = \mathbf{0}`).

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations :math:`R` (inverses are added).
        hidden_channels (int): The complex rank :math:`d` (the authors' 500), :math:`D=2d`.
        features (Mapping[str, Tensor]): Per modality, :obj:`[N, F_m]` features.
        masks (Mapping[str, Tensor], optional): Per modality, :obj:`[N]` availability.
        modality_weights (Mapping[str, float] or Sequence[float], optional): The
            :math:`\alpha_m \geq 0`, by modality name or in order, with :math:`\sum_m
            \alpha_m \leq 1` (the authors: image 0.1, text 0.8 on WN9-IMG, 0.7 on
            FB-IMG). (default: :math:`0.8 / M` each)
        scale (float, optional): :math:`> 0` (WN9-IMG 100, FB-IMG 300).
            (default: :obj:`100.0`)
        ot_entities (int or str, optional): A positive count or :obj:`"all"`.
            (default: :obj:`10`)
        ot_random (bool, optional): (default: :obj:`False`)
        ot_epsilon (float, optional): :math:`\epsilon > 0`. (default: :obj:`10.0`)
        ot_max_iter (int, optional): Sinkhorn iterations at most. (default: :obj:`1000`)
        ot_tol (float, optional): Sinkhorn's tolerance on the squared marginal error.
            (default: :obj:`1e-9`)
        init_scale (float, optional): Entity and relation entries :math:`\mathcal{N}(0,
            1)` times it (the authors' 1e-3); :obj:`None` for Xavier. (default: :obj:`1e-3`)
        mask_missing (bool, optional): (default: :obj:`True`)
        missing (str, optional): :obj:`"structure"` or :obj:`"renormalize"`.
            (default: :obj:`"structure"`)
        regularization (str, optional): (default: :obj:`"n3"`)
        regularization_weight (float, optional): (default: :obj:`1e-3`, FB-IMG)
        regularize (str, optional): (default: :obj:`"scored"`)
        loss (torch.nn.Module, optional): (default:
            :class:`~torch_mmkg.nn.loss.SoftmaxCrossEntropyLoss`)

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`
    """
    one_to_n = True

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 modality_weights: Union[Mapping[str, float], Sequence[float], None] = None,
                 scale: float = 100.0, ot_entities: Union[int, str] = 10,
                 ot_random: bool = False, ot_epsilon: float = 10.0, ot_max_iter: int = 1000,
                 ot_tol: float = 1e-9, init_scale: Optional[float] = 1e-3,
                 mask_missing: bool = True, missing: str = 'structure',
                 regularization: Optional[str] = 'n3', regularization_weight: float = 1e-3,
                 regularize: str = 'scored', loss: Optional[torch.nn.Module] = None):
        N, R, d = check_sizes(self, num_nodes, num_relations, hidden_channels)
        if not features:
            raise ValueError(f"{type(self).__name__} needs at least one modality (use ComplEx "
                             f"without any)")
        names = list(features)
        weights = self._check_weights(modality_weights, names)
        scale = real(self, 'scale', scale, 0.0, low_open=True)
        if not (isinstance(ot_entities, str) and ot_entities == 'all'):
            ot_entities = positive_int(self, 'ot_entities', ot_entities)
        choice(self, 'ot_random', ot_random, (True, False))
        ot_epsilon = real(self, 'ot_epsilon', ot_epsilon, 0.0, low_open=True)
        ot_max_iter = positive_int(self, 'ot_max_iter', ot_max_iter)
        ot_tol = real(self, 'ot_tol', ot_tol, 0.0)
        if init_scale is not None:
            init_scale = real(self, 'init_scale', init_scale, 0.0, low_open=True)
        choice(self, 'mask_missing', mask_missing, (True, False))
        choice(self, 'missing', missing, ('structure', 'renormalize'))
        representation = OptimalTransportRepresentation(
            N, 2 * d, features, masks, scale, ot_entities, ot_random, ot_epsilon, ot_max_iter,
            ot_tol, mask_missing, init_scale)
        fusion = WeightedSumFusion(2 * d, [1.0 - sum(weights)] + weights,
                                   mask_missing=mask_missing, missing=missing)
        super().__init__(N, R, d, ComplExInteraction(), loss or SoftmaxCrossEntropyLoss(),
                         inverse_relations=True, regularization=regularization,
                         regularization_weight=regularization_weight,
                         representation=representation, fusion=fusion, regularize=regularize)
        self.modality_weights = dict(zip(names, weights))
        self.scale, self.ot_entities, self.ot_epsilon = scale, ot_entities, ot_epsilon
        self.mask_missing = bool(mask_missing)
        self.reset_parameters()

    def _check_weights(self, weights, names) -> list:
        M, given = len(names), weights
        if weights is None:
            return [0.8 / M] * M
        what = (f"{type(self).__name__}: modality_weights must be a mapping of the modalities "
                f"{names} or {M} numbers, each >= 0, summing to at most 1 (the structural "
                f"weight is 1 minus their sum), got {given!r}")
        if isinstance(weights, Mapping):
            if sorted(weights) != sorted(names):
                raise ValueError(what)
            weights = [weights[m] for m in names]
        elif isinstance(weights, (str, bytes)) or not hasattr(weights, '__len__') or len(
                weights) != M:
            raise ValueError(what)
        try:
            out = [real(self, 'modality_weights', w, 0.0) for w in weights]
        except ValueError:
            raise ValueError(what) from None
        if sum(out) > 1.0 + 1e-12:
            raise ValueError(what)
        return out

    def transport_maps(self) -> Dict[str, Tensor]:
        r"""The current :math:`\mathbf{T}_m` :math:`[F_m, D]`, by modality."""
        return {m: self.representation.transport_map(m) for m in self.modalities}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, hidden_channels={self.hidden_channels}, '
                f'modality_weights={self.modality_weights}, scale={self.scale})')
