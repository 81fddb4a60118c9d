r"""Multi-modal knowledge graph completion models."""
from .native import NATIVE
from .tbkgc import TBKGC

__all__ = [
    'NATIVE',
    'TBKGC',
]
