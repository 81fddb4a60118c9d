r"""Multi-modal knowledge graph completion models."""
from .native import NATIVE
from .tbkgc import TBKGC
from .momok import MoMoK

__all__ = [
    'NATIVE',
    'TBKGC',
    'MoMoK',
]
