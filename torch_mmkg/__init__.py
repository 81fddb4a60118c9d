r"""torch_mmkg: multi-modal knowledge graph completion for PyTorch Geometric."""
import torch_mmkg.data  # noqa: F401

__version__ = '0.1.0'

__all__ = [
    'torch_mmkg',
    '__version__',
]
