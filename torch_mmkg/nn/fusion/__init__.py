r"""Fusion of an entity's structural and modality representations.

Every fusion (a :class:`Fusion`) maps a stack :math:`[*, S, D]` with its availability mask
:math:`[*, S]` (and, for relation-guided fusions, the relation ids) to a joint representation
plus the slot weights where it has any; :attr:`Fusion.relation_dependent` says whether the
relation is used, and :meth:`Fusion.build` gives all of them one constructor signature, so
that every model builds any registered fusion by name (:data:`FUSIONS`).
"""
from torch_mmkg.registry import Registry

from .base import Fusion, FusionBasis, SingleSlot
from .adaptive import AdaptiveFusion
from .attention import AttentionFusion
from .experts import ModalityExperts
from .basic import ConcatFusion, MeanFusion, ProductFusion, SumFusion
from .gated import ContextGatedFusion
from .projection import ModalityProjection
from .views import AllSlots, StructureAndFused
from .mutan import MutanFusion
from .weighted import WeightedSumFusion

#: The fusions known by name (case-insensitive), built with :meth:`Fusion.build`.
FUSIONS = Registry('fusion')
FUSIONS.register('adaptive', AdaptiveFusion, aliases=('redaf', ))
FUSIONS.register('mean', MeanFusion)
FUSIONS.register('concat', ConcatFusion)
FUSIONS.register('product', ProductFusion)
FUSIONS.register('sum', SumFusion)
FUSIONS.register('context', ContextGatedFusion, aliases=('cguaf', ))
FUSIONS.register('attention', AttentionFusion)
FUSIONS.register('mutan', MutanFusion)

__all__ = [
    'Fusion',
    'FusionBasis',
    'SingleSlot',
    'AdaptiveFusion',
    'MeanFusion',
    'ConcatFusion',
    'ProductFusion',
    'SumFusion',
    'ContextGatedFusion',
    'AttentionFusion',
    'StructureAndFused',
    'AllSlots',
    'ModalityExperts',
    'ModalityProjection',
    'MutanFusion',
    'WeightedSumFusion',
    'FUSIONS',
]
