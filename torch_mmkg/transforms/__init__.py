r"""Transforms of multi-modal knowledge graphs in the :mod:`torch_mmkg` layout."""
from .drop_modality import DropModality
from .add_modality_noise import AddModalityNoise
from .sparsify_triples import SparsifyTriples
from .pool_modality import PoolModality
from .complete_modality import CompleteModality
from .random_fill_modality import RandomFillModality

modality_transforms = [
    'DropModality',
    'AddModalityNoise',
    'PoolModality',
    'CompleteModality',
    'RandomFillModality',
]

graph_transforms = [
    'SparsifyTriples',
]

__all__ = modality_transforms + graph_transforms

classes = __all__
