r"""Transforms of multi-modal knowledge graphs in the :mod:`torch_mmkg` layout."""
from torch_mmkg.registry import Registry

from .drop_modality import DropModality
from .add_modality_noise import AddModalityNoise
from .sparsify_triples import SparsifyTriples
from .pool_modality import PoolModality
from .complete_modality import CompleteModality
from .random_fill_modality import RandomFillModality
from .align_modalities import AlignModalities

modality_transforms = [
    'DropModality',
    'AddModalityNoise',
    'PoolModality',
    'CompleteModality',
    'RandomFillModality',
    'AlignModalities',
]

graph_transforms = [
    'SparsifyTriples',
]

__all__ = modality_transforms + graph_transforms

classes = __all__

#: The transforms known by name (case-insensitive; :obj:`'-'`, :obj:`'_'` and spaces ignored),
#: as the :obj:`transforms:` list of an experiment config names them
#: (:func:`torch_mmkg.experiment.data.apply_transforms`). :obj:`"CMoA"` is LBMKGC's
#: cross-modal alignment stage (:class:`AlignModalities`), :obj:`"LvMC"` its modality
#: completion (:class:`CompleteModality`).
TRANSFORMS = Registry('transform')
TRANSFORMS.register('DropModality', DropModality)
TRANSFORMS.register('AddModalityNoise', AddModalityNoise)
TRANSFORMS.register('SparsifyTriples', SparsifyTriples)
TRANSFORMS.register('CompleteModality', CompleteModality, aliases=('LvMC', ))
TRANSFORMS.register('PoolModality', PoolModality)
TRANSFORMS.register('RandomFillModality', RandomFillModality)
TRANSFORMS.register('AlignModalities', AlignModalities,
                    aliases=('CMoA', 'CrossModalAlignment'))

__all__ = __all__ + ['TRANSFORMS']
