r"""Fused tensor kernels of :mod:`torch_mmkg`: the pairwise distances of 1-vs-all scoring,
the gather-and-score kernels of negative-sampling training, rank counting, and when they are
compiled by :func:`torch.compile`, and batch normalisation over the ranks of a
process group.

The package sits below :mod:`torch_mmkg.nn` and :mod:`torch_mmkg.evaluation` and imports
nothing from :mod:`torch_mmkg` (only :mod:`torch`).
"""
from .batch_norm import global_batch_norm
from .compile import (AUTO_COMPILE_ELEMENTS, AUTO_COMPILE_RANK_ELEMENTS,
                      AUTO_COMPILE_REUSE_ELEMENTS, AUTO_COMPILE_TRAIN_ELEMENTS,
                      CompileUnavailableWarning, compile_notice, compiled_forward, set_compile,
                      will_compile)
from .gather import gather_modulus_sum, weighted_gather_modulus_sum
from .pairwise import complex_modulus_sum, lp_distance
from .rank import rank_counts
from .sinkhorn import sinkhorn

__all__ = [
    'set_compile',
    'will_compile',
    'compile_notice',
    'compiled_forward',
    'CompileUnavailableWarning',
    'complex_modulus_sum',
    'lp_distance',
    'gather_modulus_sum',
    'weighted_gather_modulus_sum',
    'rank_counts',
    'sinkhorn',
    'global_batch_norm',
    'AUTO_COMPILE_ELEMENTS',
    'AUTO_COMPILE_REUSE_ELEMENTS',
    'AUTO_COMPILE_TRAIN_ELEMENTS',
    'AUTO_COMPILE_RANK_ELEMENTS',
]
