r"""Fusion of an entity's structural and modality representations."""
from .adaptive import AdaptiveFusion
from .projection import ModalityProjection

__all__ = [
    'AdaptiveFusion',
    'ModalityProjection',
]
