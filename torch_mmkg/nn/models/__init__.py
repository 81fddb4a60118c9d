r"""Multi-modal knowledge graph completion models."""
from .native import NATIVE

__all__ = [
    'NATIVE',
]
