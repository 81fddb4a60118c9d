r"""Reading :func:`torch.save` files without running code in them.

:func:`torch.load` with :obj:`weights_only=False` (what PyG's dataset caches fall back to, and
what a plain checkpoint load uses) unpickles arbitrary objects, so a file planted in a data or
run folder could run any command. Every ``.pt`` file :mod:`torch_mmkg` reads goes through
:func:`safe_load` instead:

1. PyTorch's restricted unpickler (:obj:`weights_only=True`) refuses, *before calling
   anything*, every global outside its allowlist (tensors, storages, plain containers);
2. the loaded object is then walked and must consist of tensors and plain Python data only
   (:data:`PLAIN_TYPES`, plus the types a caller admits explicitly), so that classes other
   libraries added to PyTorch's process-wide allowlist are refused too;
3. every failure is a :class:`UnsafeFileError` (a :class:`ValueError`) naming the file, what
   kind of file it should have been, and what is wrong: a refused global, a type outside the
   allowlist, an empty, truncated or garbled file.

Files :mod:`torch_mmkg` writes itself (processed datasets, text caches, checkpoints,
``best_model.pt``) hold tensors and plain containers only, so they need no allowlist at all.
"""
import contextlib
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import IO, Any, Iterable, Iterator, Sequence, Tuple

import torch
from torch import Tensor

__all__ = ['UnsafeFileError', 'PLAIN_TYPES', 'safe_load', 'check_plain', 'numpy_globals',
           'atomic_torch_save']

#: The types a file read by :func:`safe_load` may contain, besides those a caller admits.
PLAIN_TYPES: Tuple[type, ...] = (
    type(None), bool, int, float, complex, str, bytes, dict, OrderedDict, list, tuple, set,
    frozenset, Tensor, torch.nn.Parameter, torch.Size, torch.dtype, torch.device,
)

_GLOBAL_RE = re.compile(r'GLOBAL ([\w.]+)')
_REASON_RE = re.compile(r'WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)', re.S)


class UnsafeFileError(ValueError):
    r"""A file could not be loaded safely: it is not a :func:`torch.save` file, it is
    truncated or corrupt, or it holds objects other than tensors and plain Python data. The
    message names the file; nothing the file holds was run."""


def _describe_unpickling_error(e: BaseException) -> str:
    text = str(e)
    found = _GLOBAL_RE.search(text)
    if found:
        return (f"it refers to the Python object '{found.group(1)}', which is not a tensor or "
                f"plain data (nothing in the file was run)")
    reason = _REASON_RE.search(text)
    if reason:
        return f"it is not a valid torch.save file ({reason.group(1).strip()})"
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return f"it is not a valid torch.save file ({first})"


def check_plain(obj: Any, where: str, allowed: Sequence[type] = ()) -> Any:
    r"""Checks that :obj:`obj` consists of tensors and plain Python data only.

    Args:
        obj (Any): The object, e.g. what :func:`torch.load` returned.
        where (str): What to name in the error (a file path).
        allowed (Sequence[type], optional): Further types admitted (exact types, no
            subclasses). (default: :obj:`()`)

    Returns:
        :obj:`obj` itself.

    Raises:
        UnsafeFileError: naming :obj:`where`, the path inside :obj:`obj` and the type found.
    """
    types = set(PLAIN_TYPES) | set(allowed)
    stack = [(obj, '')]
    while stack:
        item, path = stack.pop()
        if type(item).__module__ == 'numpy' and getattr(item, 'dtype', None) is not None \
                and item.dtype.hasobject:
            raise UnsafeFileError(f"{where}: holds a numpy array of Python objects at "
                                  f"{path or 'the top level'}; only numeric arrays are read")
        if type(item) not in types:
            what = (f"the class {item.__module__}.{item.__qualname__}"
                    if isinstance(item, type) else
                    f"an object of type {type(item).__module__}.{type(item).__qualname__}")
            raise UnsafeFileError(f"{where}: holds {what} at {path or 'the top level'}; only "
                                  f"tensors and plain Python data (dict, list, tuple, str, "
                                  f"numbers) are read")
        if isinstance(item, dict):
            for k, v in item.items():
                stack.append((k, f'{path}[key {k!r}]'))
                stack.append((v, f'{path}[{k!r}]'))
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((v, f'{path}[{i}]') for i, v in enumerate(item))
    return obj


def safe_load(path: str, what: str = 'file', map_location: Any = 'cpu',
              allowed: Iterable[type] = (), allowed_globals: Sequence[Any] = ()) -> Any:
    r"""Loads a :func:`torch.save` file without running code in it.

    Args:
        path (str): The file.
        what (str, optional): What the file is, for error messages (e.g.
            :obj:`"checkpoint"`). (default: :obj:`"file"`)
        map_location (optional): As in :func:`torch.load`. (default: :obj:`"cpu"`)
        allowed (Iterable[type], optional): Types admitted besides :data:`PLAIN_TYPES`.
            (default: :obj:`()`)
        allowed_globals (Sequence, optional): Functions or classes the unpickler may resolve
            besides PyTorch's allowlist (e.g. numpy's array reconstruction). Only pass objects
            that cannot run foreign code. (default: :obj:`()`)

    Returns:
        The loaded object.

    Raises:
        FileNotFoundError: if :obj:`path` does not exist.
        UnsafeFileError: naming :obj:`path`, for an empty, truncated or garbled file, a
            refused global, or an object outside the admitted types.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f"{path}: no such {what}")
    if osp.getsize(path) == 0:
        raise UnsafeFileError(f"{path}: the {what} is empty (0 bytes)")
    try:
        if allowed_globals:
            with torch.serialization.safe_globals(list(allowed_globals)):
                obj = torch.load(path, map_location=map_location, weights_only=True)
        else:
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes one message naming the file
        import pickle
        if isinstance(e, pickle.UnpicklingError):
            reason = _describe_unpickling_error(e)
        elif isinstance(e, EOFError):
            reason = "it ends early (truncated)"
        else:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ''
            reason = f"it is truncated or corrupt ({type(e).__name__}: {msg[:200]})"
        raise UnsafeFileError(f"{path}: cannot read the {what}: {reason}") from None
    return check_plain(obj, path, tuple(allowed))


def numpy_globals() -> list:
    r"""The globals numpy arrays of numeric dtypes are pickled with (:class:`numpy.ndarray`,
    :class:`numpy.dtype` and its numeric subclasses, and the array reconstruction function),
    for files written with numpy arrays inside.
    Reconstructing an array runs no foreign code; object arrays are refused by
    :func:`check_plain` unless a caller admits them."""
    import numpy as np
    out = [np.ndarray, np.dtype, np.ndarray(0).__reduce__()[0]]
    # numpy >= 2 pickles a dtype through its class (e.g. numpy.dtypes.UInt32DType).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in sorted(dir(dtypes))
                if n.endswith('DType') and n not in ('ObjectDType', 'VoidDType')
                and isinstance(getattr(dtypes, n), type)]
    return out


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'w', **kwargs) -> Iterator[IO]:
    r"""Opens a temporary file next to :obj:`path` (with :func:`open`'s :obj:`mode` and
    keywords) and renames it over :obj:`path` when the block ends without an error, so that
    an interruption never leaves a torn file; on an error the temporary file is removed."""
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def atomic_torch_save(obj, path: str):
    r""":func:`torch.save` through :func:`atomic_write`: an interruption never leaves a
    torn file."""
    with atomic_write(path, 'wb') as f:
        torch.save(obj, f)
