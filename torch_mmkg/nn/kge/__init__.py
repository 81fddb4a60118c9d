r"""Knowledge graph embedding models: the base class and the structural baselines."""
from .base import FeatureMismatchWarning, KGEModel
from .embedding import EmbeddingKGEModel
from .transe import TransE
from .distmult import DistMult
from .complex import ComplEx
from .rotate import RotatE
from .pairre import PairRE
from .tucker import TuckER

__all__ = [
    'KGEModel',
    'FeatureMismatchWarning',
    'EmbeddingKGEModel',
    'TransE',
    'DistMult',
    'ComplEx',
    'RotatE',
    'PairRE',
    'TuckER',
]
