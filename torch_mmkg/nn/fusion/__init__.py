r"""Fusion of an entity's structural and modality representations.

Every fusion maps a stack :math:`[*, M, D]` with its availability mask :math:`[*, M]` (and,
for relation-guided fusions, the relation ids :math:`[*]`) to a joint embedding
:math:`[*, D]` plus the modality weights where it has any; :attr:`relation_dependent` says
whether the relation is used.
"""
from .adaptive import AdaptiveFusion
from .attention import AttentionFusion
from .experts import ModalityExperts
from .basic import ConcatFusion, MeanFusion, ProductFusion
from .projection import ModalityProjection

#: The fusions known by name (NATIVE's :obj:`fusion` argument).
FUSIONS = {
    'adaptive': AdaptiveFusion,
    'mean': MeanFusion,
    'concat': ConcatFusion,
    'product': ProductFusion,
}

__all__ = [
    'AdaptiveFusion',
    'MeanFusion',
    'ConcatFusion',
    'ProductFusion',
    'AttentionFusion',
    'ModalityExperts',
    'ModalityProjection',
    'FUSIONS',
]
