r"""Score functions (interactions) of knowledge graph embedding models."""
from .base import Interaction
from .transe import TransEInteraction
from .distmult import DistMultInteraction
from .complex import ComplExInteraction
from .rotate import RotatEInteraction
from .pairre import PairREInteraction
from .tucker import TuckERInteraction
from .multiview import MultiViewInteraction, TBKGC_TERMS
from .ensemble import EnsembleInteraction

__all__ = [
    'Interaction',
    'TransEInteraction',
    'DistMultInteraction',
    'ComplExInteraction',
    'RotatEInteraction',
    'PairREInteraction',
    'TuckERInteraction',
    'MultiViewInteraction',
    'TBKGC_TERMS',
    'EnsembleInteraction',
]
