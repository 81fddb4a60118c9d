r"""Multi-modal knowledge graph completion models."""
from .native import NATIVE
from .tbkgc import TBKGC
from .momok import MoMoK
from .lbmkgc import LBMKGC
from .vbkgc import VBKGC

__all__ = [
    'NATIVE',
    'TBKGC',
    'MoMoK',
    'LBMKGC',
    'VBKGC',
]
