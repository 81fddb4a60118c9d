r"""Score functions (interactions) of knowledge graph embedding models."""
from torch_mmkg.registry import Registry

from .base import Interaction
from .transe import TransEInteraction
from .distmult import DistMultInteraction
from .complex import ComplExInteraction
from .rotate import RotatEInteraction
from .pairre import PairREInteraction
from .tucker import TuckERInteraction
from .multiview import MultiViewInteraction, TBKGC_TERMS
from .weighted_multiview import WeightedMultiViewInteraction
from .ensemble import EnsembleInteraction
from .rsme import GatedSimilarityComplExInteraction

#: The interactions by name (case-insensitive).
INTERACTIONS = Registry('interaction')
INTERACTIONS.register('transe', TransEInteraction)
INTERACTIONS.register('distmult', DistMultInteraction)
INTERACTIONS.register('complex', ComplExInteraction)
INTERACTIONS.register('rotate', RotatEInteraction)
INTERACTIONS.register('pairre', PairREInteraction)
INTERACTIONS.register('tucker', TuckERInteraction)
INTERACTIONS.register('multiview', MultiViewInteraction, aliases=('multi_view', ))
INTERACTIONS.register('ensemble', EnsembleInteraction)

__all__ = [
    'INTERACTIONS',
    'Interaction',
    'TransEInteraction',
    'DistMultInteraction',
    'ComplExInteraction',
    'RotatEInteraction',
    'PairREInteraction',
    'TuckERInteraction',
    'MultiViewInteraction',
    'TBKGC_TERMS',
    'WeightedMultiViewInteraction',
    'EnsembleInteraction',
    'GatedSimilarityComplExInteraction',
]
