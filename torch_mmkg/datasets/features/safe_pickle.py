r"""Restricted unpicklers for the few raw files that are only published as Python pickles.

:func:`pickle.load` runs whatever callable a pickle names, so a raw file fetched from the web must
never go through it. The loaders here resolve only the globals they are built for and refuse every
other one *before* anything is called.
"""
import pickle
from typing import Any, Callable, Dict, Tuple

import numpy as np

__all__ = ['load_numpy_pickle', 'load_plain_pickle']

# The exact objects numpy pickles name. They are taken from the objects' own ``__reduce__`` so that
# the numpy 1.x names (``numpy.core.multiarray``) resolve without importing that deprecated module.
_RECONSTRUCT = np.ndarray(0).__reduce__()[0]
_SCALAR = np.float32(0).__reduce__()[0]
_NUMPY_GLOBALS: Dict[Tuple[str, str], Callable] = {
    ('numpy.core.multiarray', '_reconstruct'): _RECONSTRUCT,
    ('numpy._core.multiarray', '_reconstruct'): _RECONSTRUCT,
    ('numpy.core.multiarray', 'scalar'): _SCALAR,
    ('numpy._core.multiarray', 'scalar'): _SCALAR,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed: Dict[Tuple[str, str], Callable]):
        super().__init__(file)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        obj = self._allowed.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"refused global '{module}.{name}'")
        return obj


def _load(path: str, allowed: Dict[Tuple[str, str], Callable], kind: str) -> Any:
    with open(path, 'rb') as f:
        try:
            return _RestrictedUnpickler(f, allowed).load()
        except (pickle.UnpicklingError, EOFError) as e:
            raise ValueError(f"{path}: not a pickle of {kind} ({e})") from None


def load_numpy_pickle(path: str) -> Any:
    r"""Loads a pickle of (containers of) numpy arrays without running foreign code.

    Only numpy array and scalar reconstruction (``numpy[._]core.multiarray._reconstruct`` and
    ``.scalar``, ``numpy.ndarray``, ``numpy.dtype``) is admitted, under both the numpy 1.x and 2.x
    module names; builtin containers, strings and numbers need no globals.

    Args:
        path (str): The pickle file.

    Returns:
        The unpickled object.

    Raises:
        ValueError: naming :obj:`path` and the refused global when the pickle references anything
            else (nothing it names is called), or when the file is not a valid pickle.
    """
    return _load(path, _NUMPY_GLOBALS, 'numpy arrays')


def load_plain_pickle(path: str) -> Any:
    r"""Loads a pickle of builtin containers, strings and numbers only (no globals at all).

    Args:
        path (str): The pickle file.

    Returns:
        The unpickled object.

    Raises:
        ValueError: naming :obj:`path` and the refused global when the pickle references any
            global, or when the file is not a valid pickle.
    """
    return _load(path, {}, 'plain Python data')
