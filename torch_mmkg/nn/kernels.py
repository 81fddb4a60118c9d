r"""Kept for compatibility: the fused kernels moved to :mod:`torch_mmkg.ops`.

This module only re-exports :mod:`torch_mmkg.ops` (the same function objects, so
:func:`set_compile` here sets the one compile mode) and defines nothing itself; import from
:mod:`torch_mmkg.ops` in new code. Its private state (the compile mode, the compiled kernels,
the tile budgets) lives in :mod:`torch_mmkg.ops.compile` and :mod:`torch_mmkg.ops.pairwise`.
"""
from torch_mmkg.ops import *  # noqa: F401,F403
from torch_mmkg.ops import __all__  # noqa: F401
