r"""Score functions (interactions) of knowledge graph embedding models."""
from .base import Interaction
from .transe import TransEInteraction
from .distmult import DistMultInteraction
from .complex import ComplExInteraction
from .rotate import RotatEInteraction
from .pairre import PairREInteraction
from .tucker import TuckERInteraction

__all__ = [
    'Interaction',
    'TransEInteraction',
    'DistMultInteraction',
    'ComplExInteraction',
    'RotatEInteraction',
    'PairREInteraction',
    'TuckERInteraction',
]
