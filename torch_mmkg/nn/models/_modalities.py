import math
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.kge.rotate import embedding_range_terms
from torch_mmkg.nn.representation import register_modalities  # noqa: F401 (re-exported)
from torch_mmkg.nn.validation import check_sizes, choice, positive_int, real


def features_from_data(data, modalities: Optional[Sequence[str]] = None
                       ) -> Tuple[int, int, Dict[str, Tensor], Dict[str, Tensor]]:
    r""":obj:`(num_nodes, num_relations, features, masks)` of a :mod:`torch_mmkg` graph, with
    all its modalities or the subset :obj:`modalities` (in that order)."""
    from torch_mmkg.data.mmkg import ENTITY, modality_features
    feats = modality_features(data)
    if modalities is not None:
        unknown = [m for m in modalities if m not in feats]
        if unknown:
            raise ValueError(f"modalities {unknown} are not in the graph (it has "
                             f"{list(feats)})")
        feats = {m: feats[m] for m in modalities}
    return (data[ENTITY].num_nodes, data.num_relations, {m: x for m, (x, _) in feats.items()},
            {m: k for m, (_, k) in feats.items()})


class FromDataMixin:
    r"""Adds :meth:`from_data` to a model whose constructor takes
    :obj:`(num_nodes, num_relations, hidden_channels, features, masks, **kwargs)`."""
    @classmethod
    def from_data(cls, data, hidden_channels: int,
                  modalities: Optional[Sequence[str]] = None, **kwargs):
        r"""Builds the model for a :mod:`torch_mmkg` graph with all its modalities, or the
        subset :obj:`modalities` (in that order)."""
        N, R, features, masks = features_from_data(data, modalities)
        return cls(N, R, hidden_channels, features, masks, **kwargs)


def check_projected_stack_args(owner, num_nodes: int, num_relations: int,
                               hidden_channels: int, margin: float, epsilon: float,
                               adversarial_temperature: float, projection_layers: int
                               ) -> Tuple[float, float, float, int]:
    r"""Checks the arguments of a RotatE model over projected features (NATIVE, LBMKGC)
    before anything is computed from them: the sizes, the RotatE margin and initialisation
    range (:math:`\gamma + \epsilon > 0`), the self-adversarial temperature (:math:`\geq 0`)
    and the projection depth (1 or 2); returns :obj:`(margin, epsilon,
    adversarial_temperature, projection_layers)`."""
    check_sizes(owner, num_nodes, num_relations, hidden_channels)
    margin, epsilon = embedding_range_terms(owner, margin, epsilon)
    temperature = real(owner, 'adversarial_temperature', adversarial_temperature, 0.0)
    layers = choice(owner, 'projection_layers',
                    positive_int(owner, 'projection_layers', projection_layers), (1, 2))
    return margin, epsilon, temperature, layers


def uniform_init(bound: float):
    r"""An in-place initialisation uniform in :math:`\pm` :obj:`bound` (RotatE's
    :math:`\pm(\gamma + \epsilon)/d`)."""
    def init(weight: Tensor):
        torch.nn.init.uniform_(weight, -bound, bound)
    return init


def build_fusion(owner, fusion, channels: int, num_slots: int, num_relations: int,
                 mask_missing: bool, **kwargs):
    r"""A registered fusion by name (any case or alias), or a given
    :class:`~torch_mmkg.nn.fusion.Fusion` module unchanged; :obj:`kwargs` go to the
    fusions that take them (e.g. :obj:`relation_temperature` of the adaptive fusion)."""
    import inspect

    from torch_mmkg.nn.fusion import FUSIONS, Fusion
    if isinstance(fusion, Fusion):
        return fusion
    if not isinstance(fusion, str) or fusion not in FUSIONS:
        raise ValueError(f"{type(owner).__name__}: fusion must be a registered fusion "
                         f"{sorted(FUSIONS)} (any case) or a Fusion module, got {fusion!r}")
    cls = FUSIONS[fusion]
    params = inspect.signature(cls.build).parameters
    taken = {k: v for k, v in kwargs.items() if k in params}
    return cls.build(channels, num_slots, num_relations, mask_missing, **taken)


def projected_rotate(owner, num_nodes: int, num_relations: int, hidden_channels: int,
                     features, masks, margin: float, epsilon: float,
                     adversarial_temperature: float, regularization_weight: float,
                     projection_layers: int, fusion, mask_missing: bool, loss=None,
                     entity_range: Optional[float] = None, trainable_features: bool = False,
                     **fusion_kwargs) -> dict:
    r"""The parts NATIVE and LBMKGC share, as keyword arguments of
    :class:`~torch_mmkg.nn.KGEModel`: complex structural embeddings and projected features
    (the structural table uniform in :math:`\pm` :obj:`entity_range`, by default
    :math:`\pm(\gamma + \epsilon)/d`, which it sets as :obj:`owner.embedding_range`), the
    fusion, RotatE with relation phases :math:`\pi \mathbf{r} /` :obj:`embedding_range`,
    the self-adversarial loss and the :math:`L_2` penalty on the raw embeddings; the feature
    tables are parameters with :obj:`trainable_features`."""
    from torch_mmkg.nn.interactions import RotatEInteraction
    from torch_mmkg.nn.loss import SelfAdversarialLoss
    from torch_mmkg.nn.representation import EntityRepresentation
    width = 2 * hidden_channels
    owner.embedding_range = (margin + epsilon) / hidden_channels
    representation = EntityRepresentation(
        num_nodes, width, features, masks, projection_layers=projection_layers,
        trainable_features=trainable_features,
        init=uniform_init(owner.embedding_range if entity_range is None else entity_range))
    fusion = build_fusion(owner, fusion, width, representation.num_slots, num_relations,
                          mask_missing, **fusion_kwargs)
    return dict(interaction=RotatEInteraction(margin),
                loss=loss or SelfAdversarialLoss(adversarial_temperature),
                regularization='l2', regularization_weight=regularization_weight,
                representation=representation, fusion=fusion,
                relation_scale=math.pi / owner.embedding_range, regularize='raw')
