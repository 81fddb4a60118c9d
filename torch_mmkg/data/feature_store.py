r"""Modality features on disk: :class:`DiskFeatures`, a read-only :obj:`[N, F]` (or
:obj:`[N, K, F]`) :obj:`float32` ``.npy`` file from which a model reads only the rows a batch
touches, and :class:`DiskFeatureStore`, PyG's :class:`~torch_geometric.data.FeatureStore`
over such files.

A graph in the :mod:`torch_mmkg` layout may hold a :class:`DiskFeatures` wherever it holds a
feature tensor, :obj:`data['entity'].x_<modality>` (the masks stay in-memory bool tensors):

.. code-block:: python

    from torch_mmkg.data.feature_store import open_features, write_features

    write_features(data, 'features/')          # <m>.npy (float32) and <m>_mask.npy
    disk = open_features(data, 'features/')    # the same graph, features on disk
    model = NATIVE.from_data(disk, 64)         # the same model code

:class:`~torch_mmkg.datasets.MMKGFolder` with :obj:`mmap=True` opens its :obj:`.npy`
features this way. Since a :class:`~torch_geometric.data.HeteroData` is itself a PyG feature
store, :obj:`data.get_tensor('entity', 'x_image', index=idx)` reads only the rows
:obj:`idx` too.

**What is read.** :meth:`DiskFeatures.rows` reads the distinct requested rows (sorted, runs of
consecutive rows in one positional read each, :func:`os.preadv`) and scatters them back:
nothing else of the file enters the process. The file is memory-mapped (:func:`numpy.load`
with :obj:`mmap_mode="r"`) for its header and where positional reads do not exist, but rows are
not read through the mapping: pages touched through a mapping stay in the process's resident
set until the kernel reclaims them, so that an epoch touching every row would show the whole
file in its peak RSS (:obj:`reader="mmap"` reads through the mapping anyway: about twice as
fast for scattered rows of a cached file, for machines where RSS does not matter).
:meth:`DiskFeatures.chunks` streams the file in blocks of bounded size (16 MiB).
A read of every row at once (:meth:`DiskFeatures.read_all`) is refused above the full-read
limit (:func:`full_read_limit`, 1 GiB by default or :obj:`$TORCH_MMKG_FULL_READ_LIMIT`) with a
:class:`FeaturesTooLargeError`, so that a 16 GB matrix is never materialised by accident.

**Fingerprint.** :meth:`DiskFeatures.fingerprint` is the first 16 hex digits of the SHA-256
of the dtype, shape and bytes of the matrix, exactly
:meth:`~torch_mmkg.nn.KGEModel.feature_fingerprint`'s digest of the same values held in
memory, so that a checkpoint moves between in-memory and disk-backed features. It is computed
once per file version by streaming the file (:meth:`DiskFeatures.scan`, which also checks
finiteness and finds the all-zero rows) and cached in the data home
(:obj:`<home>/feature_digests/`, keyed by the absolute path, size, modification time and
inode; :func:`write_features` caches it while writing). A file changed in place gets a new
size or modification time, hence a new scan; a change that kept both (a restored
modification time) is not seen unless :meth:`DiskFeatures.scan` is called with
:obj:`refresh=True`.
"""
import contextlib
import hashlib
import json
import math
import os
import os.path as osp
import sys
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import FeatureStore, TensorAttr

from torch_mmkg.data.serialization import atomic_write

__all__ = ['DiskFeatures', 'DiskFeatureStore', 'FeatureScan', 'FeaturesTooLargeError',
           'ReadStats', 'is_disk_features', 'full_read_limit', 'get_full_read_limit',
           'set_full_read_limit', 'write_array', 'write_features', 'open_features',
           'load_features', 'DEFAULT_CHUNK_BYTES']

#: The size of one streamed block (:meth:`DiskFeatures.chunks`), in bytes.
DEFAULT_CHUNK_BYTES = 16 << 20
#: The full-read limit when neither :func:`set_full_read_limit` nor
#: :obj:`$TORCH_MMKG_FULL_READ_LIMIT` says otherwise, in bytes.
DEFAULT_FULL_READ_LIMIT = 1 << 30
#: The environment variable of the full-read limit (bytes, or :obj:`"none"`).
ENV_FULL_READ_LIMIT = 'TORCH_MMKG_FULL_READ_LIMIT'

_DIGEST_FORMAT = 'torch_mmkg.feature_digest/1'
_UNSET = object()
_limit: Any = _UNSET


class FeaturesTooLargeError(RuntimeError):
    r"""Reading every row of disk-backed features at once would exceed the full-read limit
    (:func:`full_read_limit`); the message says who asked and what works instead."""


def _human(nbytes: float) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(nbytes) < 1024 or unit == 'TiB':
            return f'{nbytes:.0f} {unit}' if unit == 'B' else f'{nbytes:.1f} {unit}'
        nbytes /= 1024
    return f'{nbytes} B'  # pragma: no cover


def get_full_read_limit() -> Optional[int]:
    r"""The largest disk-backed feature matrix (bytes) read whole into memory
    (:meth:`DiskFeatures.read_all`); :obj:`None` for no limit. Set by
    :func:`set_full_read_limit`, else :obj:`$TORCH_MMKG_FULL_READ_LIMIT` (bytes, or
    :obj:`"none"`), else 1 GiB."""
    if _limit is not _UNSET:
        return _limit
    env = os.environ.get(ENV_FULL_READ_LIMIT, '').strip().lower()
    if not env:
        return DEFAULT_FULL_READ_LIMIT
    if env in ('none', 'inf', 'unlimited'):
        return None
    try:
        value = int(float(env))
    except ValueError:
        raise ValueError(f"${ENV_FULL_READ_LIMIT} must be a number of bytes or 'none', got "
                         f"{env!r}") from None
    return max(value, 0)


def set_full_read_limit(nbytes: Optional[int]) -> Optional[int]:
    r"""Sets the full-read limit (bytes; :obj:`None` for no limit) for this process and
    returns the previous one."""
    global _limit
    if nbytes is not None and (isinstance(nbytes, bool) or int(nbytes) != nbytes
                               or nbytes < 0):
        raise ValueError(f"the full-read limit must be a non-negative number of bytes or None, "
                         f"got {nbytes!r}")
    previous = get_full_read_limit()
    _limit = None if nbytes is None else int(nbytes)
    return previous


@contextlib.contextmanager
def full_read_limit(nbytes: Optional[int]) -> Iterator[None]:
    r"""Within the block the full-read limit is :obj:`nbytes` (:obj:`None`: no limit), e.g.
    :obj:`full_read_limit(0)` to check that a computation streams."""
    global _limit
    saved = _limit
    set_full_read_limit(nbytes)
    try:
        yield
    finally:
        _limit = saved


class ReadStats:
    r"""What a :class:`DiskFeatures` has read: :obj:`rows`, :obj:`bytes` and :obj:`calls`
    (positional reads), since it was opened or :meth:`reset`."""
    __slots__ = ('rows', 'bytes', 'calls')

    def __init__(self):
        self.reset()

    def reset(self):
        self.rows, self.bytes, self.calls = 0, 0, 0

    def __repr__(self) -> str:
        return f'ReadStats(rows={self.rows}, bytes={self.bytes}, calls={self.calls})'


class FeatureScan(NamedTuple):
    r"""The result of one streaming pass over a feature file (:meth:`DiskFeatures.scan`)."""
    #: The SHA-256 (hex) of :obj:`"{dtype}|{shape}|"` and the bytes of the matrix.
    sha256: str
    #: Whether every value is finite.
    finite: bool
    #: The index of the first non-finite value and the value, or :obj:`None`.
    nonfinite: Optional[Tuple[Tuple[int, ...], float]]
    #: Per row (:obj:`[N]`, or :obj:`[N, K]` for instances) whether it is not all zeros;
    #: :obj:`None` when the scan came from the digest cache.
    nonzero: Optional[Tensor]


def is_disk_features(x: Any) -> bool:
    r"""Whether :obj:`x` is a :class:`DiskFeatures`."""
    return isinstance(x, DiskFeatures)


def _digest_prefix(shape: Sequence[int]) -> bytes:
    # As KGEModel.feature_fingerprint hashes a float32 tensor of this shape.
    return f'{torch.float32}|{tuple(int(s) for s in shape)}|'.encode('utf-8')


def _cache_dir() -> str:
    from torch_mmkg.home import get_home_dir
    return osp.join(get_home_dir(), 'feature_digests')


def _file_key(path: str) -> Dict[str, Any]:
    st = os.stat(path)
    return {'path': path, 'size': int(st.st_size), 'mtime_ns': int(st.st_mtime_ns),
            'inode': int(getattr(st, 'st_ino', 0))}


def _cache_path(path: str) -> str:
    return osp.join(_cache_dir(), hashlib.sha1(path.encode('utf-8')).hexdigest() + '.json')


def _read_cached_scan(path: str) -> Optional[FeatureScan]:
    try:
        with open(_cache_path(path), encoding='utf-8') as f:
            entry = json.load(f)
        key = _file_key(path)
        if not isinstance(entry, dict) or entry.get('format') != _DIGEST_FORMAT or any(
                entry.get(k) != v for k, v in key.items()):
            return None
        sha, finite, bad = entry['sha256'], entry['finite'], entry.get('nonfinite')
        if not (isinstance(sha, str) and len(sha) == 64 and isinstance(finite, bool)):
            return None
        if bad is not None:
            bad = (tuple(int(i) for i in bad[0]), float(bad[1]))
        return FeatureScan(sha, finite, bad, None)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _write_cached_scan(path: str, scan: FeatureScan, key: Dict[str, Any]):
    try:
        os.makedirs(_cache_dir(), exist_ok=True)
        entry = dict(key, format=_DIGEST_FORMAT, sha256=scan.sha256, finite=scan.finite,
                     nonfinite=None if scan.nonfinite is None else
                     [list(scan.nonfinite[0]), scan.nonfinite[1]])
        with atomic_write(_cache_path(path), encoding='utf-8') as f:
            json.dump(entry, f)
    except OSError:  # a read-only home: the digest is cached in this process only
        pass


class _Scanner:
    r"""Accumulates a :class:`FeatureScan` over consecutive blocks of a matrix."""
    def __init__(self, shape: Sequence[int]):
        self.hash = hashlib.sha256(_digest_prefix(shape))
        self.nonfinite: Optional[Tuple[Tuple[int, ...], float]] = None
        self.nonzero: List[np.ndarray] = []

    def update(self, start: int, block: np.ndarray):
        self.hash.update(memoryview(np.ascontiguousarray(block)).cast('B'))
        if self.nonfinite is None:
            finite = np.isfinite(block)
            if not finite.all():
                idx = np.argwhere(~finite)[0]
                self.nonfinite = ((start + int(idx[0]), ) + tuple(int(i) for i in idx[1:]),
                                  float(block[tuple(idx)]))
        self.nonzero.append((block != 0).any(axis=-1))

    def result(self, rows_shape: Sequence[int]) -> FeatureScan:
        nonzero = (np.concatenate(self.nonzero) if self.nonzero else
                   np.zeros(tuple(rows_shape), dtype=bool))
        return FeatureScan(self.hash.hexdigest(), self.nonfinite is None, self.nonfinite,
                           torch.from_numpy(nonzero.reshape(tuple(rows_shape))))


def _read_into(fd: int, buf: memoryview, offset: int, path: str):
    done, total = 0, len(buf)
    while done < total:
        if hasattr(os, 'preadv'):
            n = os.preadv(fd, [buf[done:]], offset + done)
        else:
            data = os.pread(fd, total - done, offset + done)
            n = len(data)
            buf[done:done + n] = data
        if n <= 0:
            raise OSError(f"{path}: the file ends early (read {done} of {total} bytes at "
                          f"offset {offset}); was it truncated after it was opened?")
        done += n


class DiskFeatures:
    r"""A read-only matrix of entity features in a :obj:`float32` ``.npy`` file, read row by
    row: :obj:`[N, F]` (one vector per entity) or :obj:`[N, K, F]` (:math:`K` instances per
    entity). It answers the shape questions of a tensor (:attr:`shape`, :meth:`size`,
    :meth:`dim`, :attr:`dtype`, :obj:`len`) but has no tensor arithmetic: rows are read
    explicitly, by :meth:`rows` (or indexing with a tensor of ids), :meth:`chunks` or
    :meth:`read_all`.

    The file is opened with :func:`numpy.load` (:obj:`mmap_mode="r"`, no pickle: an object
    array is refused); it must be C-ordered little-endian :obj:`float32` (convert other files
    with :func:`write_array`). Copies of a :class:`DiskFeatures` (:func:`copy.deepcopy`,
    pickling) share the file.

    Args:
        path (str): The ``.npy`` file.
        reader (str, optional): How rows are read: :obj:`"pread"`, positional reads into
            fresh buffers (nothing of the file stays in the process's resident set), or
            :obj:`"mmap"`, through the memory mapping (fewer system calls, several times
            faster for scattered rows when the file is in the page cache, but the pages
            touched count in the resident set until the kernel reclaims them: an epoch shows
            the whole file in its peak RSS). (default: :obj:`"pread"`)

    Raises:
        ValueError: naming the file, for a missing or malformed file, another dtype or
            layout, fewer than two dimensions or an empty dimension.
    """
    def __init__(self, path: Union[str, 'os.PathLike[str]'], reader: str = 'pread'):
        if reader not in ('pread', 'mmap'):
            raise ValueError(f"reader must be 'pread' or 'mmap', got {reader!r}")
        self.reader = reader if hasattr(os, 'pread') else 'mmap'
        path = osp.abspath(os.fspath(path))
        if not osp.isfile(path):
            raise ValueError(f"{path}: no such feature file")
        try:
            arr = np.load(path, mmap_mode='r', allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{path}: not a plain numpy array that can be memory-mapped "
                             f"({e})") from None
        if not isinstance(arr, np.memmap):
            raise ValueError(f"{path}: not a memory-mappable .npy array")
        if arr.dtype.str != '<f4' or sys.byteorder != 'little':
            raise ValueError(f"{path}: disk-backed features must be little-endian float32, "
                             f"found {arr.dtype.str}; convert the file with "
                             f"torch_mmkg.data.feature_store.write_array")
        if arr.ndim < 2 or 0 in arr.shape:
            raise ValueError(f"{path}: features must be [N, F] (or [N, K, F]) with no empty "
                             f"dimension, got shape {tuple(arr.shape)}")
        if not arr.flags.c_contiguous:
            raise ValueError(f"{path}: the array is stored in Fortran order; rows must be "
                             f"contiguous (save numpy.ascontiguousarray(x))")
        self.path = path
        self._offset = int(arr.offset)
        self._shape = torch.Size(int(s) for s in arr.shape)
        self._key = _file_key(path)
        self._mmap: Optional[np.memmap] = arr
        self._init_state()

    def _init_state(self):
        self._fd: Optional[int] = None
        self._fd_pid: Optional[int] = None
        self._scan: Optional[FeatureScan] = None
        self.stats = ReadStats()

    # -- tensor-like shape questions -----------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self._shape

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device('cpu')

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def dim(self) -> int:
        return len(self._shape)

    def size(self, dim: Optional[int] = None) -> Union[torch.Size, int]:
        return self._shape if dim is None else self._shape[dim]

    def numel(self) -> int:
        return int(math.prod(self._shape))

    def element_size(self) -> int:
        return 4

    def is_floating_point(self) -> bool:
        return True

    def __len__(self) -> int:
        return self._shape[0]

    @property
    def row_shape(self) -> torch.Size:
        r"""The shape of one entity's row, :obj:`[F]` or :obj:`[K, F]`."""
        return self._shape[1:]

    @property
    def row_bytes(self) -> int:
        return int(math.prod(self._shape[1:])) * 4

    @property
    def nbytes(self) -> int:
        r"""The size of the matrix in bytes (what :meth:`read_all` would allocate)."""
        return self.numel() * 4

    @property
    def array(self) -> np.memmap:
        r"""The read-only :class:`numpy.memmap` of the file (pages read through it count in
        the process's resident set)."""
        if self._mmap is None:
            self._mmap = np.load(self.path, mmap_mode='r', allow_pickle=False)
        return self._mmap

    def __repr__(self) -> str:
        return f'DiskFeatures({list(self._shape)}, path={self.path!r})'

    def __getattr__(self, name: str):
        if not name.startswith('__') and hasattr(Tensor, name):
            raise AttributeError(
                f"DiskFeatures has no tensor method .{name}(): it is a read-only view of "
                f"{self.__dict__.get('path', 'a .npy file')}; read rows with .rows(index), "
                f"stream them with .chunks() or load the matrix with .read_all() (or "
                f"torch_mmkg.data.feature_store.load_features(data))")
        raise AttributeError(name)

    def __iter__(self):
        raise TypeError("DiskFeatures is not iterated row by row; use .chunks()")

    # -- copies --------------------------------------------------------------------------------
    def __copy__(self) -> 'DiskFeatures':
        return self

    def __deepcopy__(self, memo) -> 'DiskFeatures':
        return self

    def __getstate__(self) -> Dict[str, Any]:
        return {'path': self.path, 'offset': self._offset, 'shape': list(self._shape),
                'key': self._key, 'reader': self.reader}

    def __setstate__(self, state: Dict[str, Any]):
        self.path, self._offset = state['path'], state['offset']
        self.reader = state.get('reader', 'pread')
        self._shape, self._key = torch.Size(state['shape']), state['key']
        self._mmap = None
        self._init_state()

    def __del__(self):
        fd = self.__dict__.get('_fd')
        if fd is not None and self.__dict__.get('_fd_pid') == os.getpid():
            try:
                os.close(fd)
            except OSError:  # pragma: no cover
                pass

    # -- reading -------------------------------------------------------------------------------
    def changed(self) -> bool:
        r"""Whether the file's size, modification time or inode differ from when it was
        opened."""
        try:
            return _file_key(self.path) != self._key
        except OSError:
            return True

    def _check_unchanged(self):
        if self.changed():
            raise RuntimeError(f"{self.path}: the feature file changed since it was opened; "
                               f"open it again (its rows and fingerprint would mix versions)")

    def _fileno(self) -> int:
        if self._fd is None or self._fd_pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, 'O_BINARY', 0))
            self._fd_pid = os.getpid()
        return self._fd

    def _read_runs(self, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        r"""Rows :obj:`starts[i]` to :obj:`starts[i] + lengths[i]`, concatenated."""
        total = int(lengths.sum())
        out = np.empty((total, ) + tuple(self.row_shape), dtype='<f4')
        if total == 0:
            return out
        rb = self.row_bytes
        if self.reader == 'pread':
            fd, mv, pos = self._fileno(), memoryview(out).cast('B'), 0
            for s, n in zip(starts.tolist(), lengths.tolist()):
                _read_into(fd, mv[pos:pos + n * rb], self._offset + s * rb, self.path)
                pos += n * rb
        else:  # through the mapping
            pos = 0
            for s, n in zip(starts.tolist(), lengths.tolist()):
                out[pos:pos + n] = self.array[s:s + n]
                pos += n
        self.stats.rows += total
        self.stats.bytes += total * rb
        self.stats.calls += len(starts)
        return out

    def _read_sorted(self, ids: np.ndarray) -> np.ndarray:
        r"""The rows of sorted distinct ids, consecutive ids in one read."""
        if ids.size == 0:
            return self._read_runs(ids, ids)
        if self.reader == 'mmap' and ids.size > 1:  # one gather through the mapping
            out = np.take(self.array, ids, axis=0)
            self.stats.rows += int(ids.size)
            self.stats.bytes += int(ids.size) * self.row_bytes
            self.stats.calls += 1
            return out
        breaks = np.flatnonzero(np.diff(ids) != 1) + 1
        starts = ids[np.concatenate([[0], breaks])]
        ends = ids[np.concatenate([breaks - 1, [ids.size - 1]])] + 1
        return self._read_runs(starts, ends - starts)

    def rows(self, index: Union[Tensor, Sequence[int], np.ndarray],
             device: Optional[Union[str, torch.device]] = None,
             dtype: Optional[torch.dtype] = None) -> Tensor:
        r"""The rows :obj:`[*, F]` (:obj:`[*, K, F]`) of the entity ids :obj:`index`
        :obj:`[*]`, reading each distinct row once (sorted, consecutive rows together) and
        nothing else.

        Args:
            index (Tensor): Integer entity ids in :math:`[0, N)`, any shape, repeats allowed.
            device (torch.device, optional): Where the result goes. (default: the device of
                :obj:`index`)
            dtype (torch.dtype, optional): The result's dtype. (default: :obj:`float32`)
        """
        if not isinstance(index, Tensor):
            index = torch.as_tensor(np.asarray(index))
        if index.dtype == torch.bool or index.is_floating_point() or index.is_complex():
            raise TypeError(f"DiskFeatures.rows: index must hold integer entity ids, got "
                            f"{index.dtype}")
        device = index.device if device is None else torch.device(device)
        flat = index.reshape(-1).to('cpu', torch.long)
        N = self._shape[0]
        if flat.numel():
            lo, hi = int(flat.min()), int(flat.max())
            if lo < 0 or hi >= N:
                bad = lo if lo < 0 else hi
                raise IndexError(f"{self.path}: row id {bad} is out of range [0, {N})")
        uniq, inv = torch.unique(flat, sorted=True, return_inverse=True)
        block = torch.from_numpy(self._read_sorted(uniq.numpy()))
        out = block if uniq.numel() == flat.numel() and torch.equal(uniq, flat) else \
            block.index_select(0, inv)
        out = out.view(*index.shape, *self.row_shape)
        return out.to(device=device, dtype=dtype or torch.float32)

    def _range(self, start: int, stop: int) -> Tensor:
        start, stop = max(0, start), min(self._shape[0], stop)
        n = max(0, stop - start)
        return torch.from_numpy(self._read_runs(np.array([start]), np.array([n])))

    def chunks(self, size: Optional[int] = None) -> Iterator[Tuple[int, Tensor]]:
        r"""Streams the matrix as :obj:`(start, rows [n, ...])` blocks of :obj:`size` rows
        (default: about 16 MiB each), in order; one block is in memory at a time unless the
        caller keeps them."""
        if size is None:
            size = max(1, DEFAULT_CHUNK_BYTES // self.row_bytes)
        if int(size) < 1:
            raise ValueError(f"chunks: size must be a positive number of rows, got {size}")
        size = int(size)
        for start in range(0, self._shape[0], size):
            yield start, self._range(start, start + size)

    def read_all(self, device: Optional[Union[str, torch.device]] = None,
                 dtype: Optional[torch.dtype] = None, what: Optional[str] = None,
                 hint: Optional[str] = None) -> Tensor:
        r"""The whole matrix, read in blocks into one tensor, if it is within the full-read
        limit (:func:`full_read_limit`).

        Args:
            device, dtype: Of the result. (default: CPU, :obj:`float32`)
            what (str, optional): Who reads everything, for the error message.
            hint (str, optional): What works instead, for the error message.

        Raises:
            FeaturesTooLargeError: above the limit.
        """
        limit = get_full_read_limit()
        if limit is not None and self.nbytes > limit:
            raise FeaturesTooLargeError(
                f"{what or 'reading every row of disk-backed features'}: all "
                f"{self._shape[0]} rows of {self.path} ({_human(self.nbytes)}) would be read "
                f"into memory at once, more than the full-read limit of {_human(limit)}. "
                f"{hint or 'Read the rows a batch needs (DiskFeatures.rows) or stream them '}"
                f"{'' if hint else '(DiskFeatures.chunks)'}; the limit is set by "
                f"torch_mmkg.data.feature_store.set_full_read_limit or "
                f"${ENV_FULL_READ_LIMIT}")
        out = torch.from_numpy(self._read_runs(np.array([0]), np.array([self._shape[0]])))
        return out.to(device=device or 'cpu', dtype=dtype or torch.float32)

    def __getitem__(self, key) -> Tensor:
        r"""Rows by a tensor, array or list of ids, a boolean mask, an int or a slice (then
        the remaining indices of a tuple apply to the rows read)."""
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, slice):
            start, stop, step = key.indices(self._shape[0])
            out = (self._range(start, stop) if step == 1 else
                   self.rows(torch.arange(start, stop, step)))
            lead = 1
        elif isinstance(key, int) and not isinstance(key, bool):
            k = key + self._shape[0] if key < 0 else key
            out, lead = self.rows(torch.tensor([k]))[0], 0
        else:
            if isinstance(key, Tensor) and key.dtype == torch.bool:
                if key.shape != self._shape[:1]:
                    raise IndexError(f"a boolean index must have shape [{self._shape[0]}], "
                                     f"got {tuple(key.shape)}")
                key = key.nonzero().view(-1)
            elif isinstance(key, np.ndarray) and key.dtype == bool:
                key = torch.from_numpy(np.flatnonzero(key))
            out = self.rows(key)
            lead = out.dim() - len(self.row_shape)
        return out[(slice(None), ) * lead + tuple(rest)] if rest else out

    # -- scanning ------------------------------------------------------------------------------
    def scan(self, refresh: bool = False) -> FeatureScan:
        r"""One streaming pass over the file (block by block): the SHA-256 of its values,
        whether they are all finite (and the first value that is not) and which rows are not
        all zeros. Cached on this object, and its digest and finiteness in the data home."""
        self._check_unchanged()
        if self._scan is not None and self._scan.nonzero is not None and not refresh:
            return self._scan
        scanner = _Scanner(self._shape)
        for start, block in self.chunks():
            scanner.update(start, block.numpy())
        self._check_unchanged()  # the file did not change under the pass
        self._scan = scanner.result(self._shape[:-1])
        _write_cached_scan(self.path, self._scan, self._key)
        return self._scan

    def _summary(self) -> FeatureScan:
        r"""The digest and finiteness, from this object, the cache or a scan."""
        self._check_unchanged()
        if self._scan is None:
            cached = _read_cached_scan(self.path)
            if cached is not None and _file_key(self.path) == self._key:
                self._scan = cached
                return cached
            return self.scan()
        return self._scan

    def sha256(self) -> str:
        r"""The SHA-256 (hex) of :obj:`"torch.float32|{shape}|"` and the matrix's bytes."""
        return self._summary().sha256

    def fingerprint(self) -> str:
        r"""The first 16 hex digits of :meth:`sha256`: the
        :meth:`~torch_mmkg.nn.KGEModel.feature_fingerprint` digest of the same values in
        memory."""
        return self.sha256()[:16]

    def is_finite(self) -> bool:
        r"""Whether every value is finite."""
        return self._summary().finite

    def nonzero_rows(self) -> Tensor:
        r"""Per row (:obj:`[N]`, :obj:`[N, K]` for instances) whether it is not all zeros."""
        return self.scan().nonzero

    def update_hash(self, h: 'hashlib._Hash'):
        r"""Feeds :obj:`h` what the in-memory digests of :mod:`torch_mmkg` feed it for this
        matrix as a tensor, :obj:`"{dtype}|{shape}|"` and the bytes, streaming."""
        h.update(_digest_prefix(self._shape))
        for _, block in self.chunks():
            h.update(block.numpy().reshape(-1).view(np.uint8))


# Writing ######################################################################################


def _source_rows(x) -> Tuple[Tuple[int, ...], Any]:
    if isinstance(x, DiskFeatures):
        return tuple(x.shape), x
    if isinstance(x, Tensor):
        if x.is_complex():
            raise ValueError("complex features are not supported")
        return tuple(x.shape), x.detach()
    if not isinstance(x, np.ndarray) and hasattr(x, 'shape') and hasattr(x, '__getitem__'):
        return tuple(int(s) for s in x.shape), x  # produces blocks by slicing
    arr = np.asarray(x)
    if arr.dtype.kind not in 'biuf':
        raise ValueError(f"expected a numeric array, got dtype {arr.dtype}")
    return tuple(arr.shape), arr


def _block(src, start: int, stop: int) -> np.ndarray:
    if isinstance(src, DiskFeatures):
        return src._range(start, stop).numpy()
    if isinstance(src, Tensor):
        # as the in-memory path converts (Tensor.float())
        return src[start:stop].to('cpu', torch.float32).contiguous().numpy()
    return np.ascontiguousarray(src[start:stop], dtype=np.float32)


def write_array(x: Union[Tensor, np.ndarray, DiskFeatures], path: str,
                chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> DiskFeatures:
    r"""Writes a feature matrix as a C-ordered little-endian :obj:`float32` ``.npy`` file
    (written beside :obj:`path` and renamed over it), block by block, and opens it; the digest
    computed on the way is cached (:meth:`DiskFeatures.fingerprint` needs no second pass).

    Args:
        x (Tensor or numpy.ndarray or DiskFeatures): :obj:`[N, F]` or :obj:`[N, K, F]`,
            converted to :obj:`float32` as :meth:`torch.Tensor.float` does.
        path (str): The ``.npy`` file.
        chunk_bytes (int, optional): The size of a written block.
    """
    path = osp.abspath(os.fspath(path))
    shape, src = _source_rows(x)
    if len(shape) < 2 or 0 in shape:
        raise ValueError(f"{path}: features must be [N, F] (or [N, K, F]) with no empty "
                         f"dimension, got shape {shape}")
    row_bytes = int(math.prod(shape[1:])) * 4
    step = max(1, int(chunk_bytes) // row_bytes)
    scanner = _Scanner(shape)
    with atomic_write(path, 'wb') as f:
        np.lib.format.write_array_header_1_0(
            f, {'descr': '<f4', 'fortran_order': False, 'shape': shape})
        for start in range(0, shape[0], step):
            block = _block(src, start, start + step).astype('<f4', copy=False)
            scanner.update(start, block)
            f.write(memoryview(np.ascontiguousarray(block)).cast('B'))
    out = DiskFeatures(path)
    out._scan = scanner.result(shape[:-1])
    _write_cached_scan(path, out._scan, out._key)
    return out


def write_features(data, folder: str, modalities: Optional[Sequence[str]] = None,
                   overwrite: bool = False, chunk_bytes: int = DEFAULT_CHUNK_BYTES
                   ) -> Dict[str, str]:
    r"""Writes the features of a :mod:`torch_mmkg` graph (in memory or on disk) as
    :obj:`folder/<modality>.npy` (:obj:`float32`, row :math:`i` = entity :math:`i`) and
    their masks as :obj:`folder/<modality>_mask.npy` (bool), block by block: the layout of
    the :obj:`features/` folder of :class:`~torch_mmkg.datasets.MMKGFolder`, and what
    :func:`open_features` opens.

    Args:
        data (HeteroData): The graph.
        folder (str): The folder (created if needed).
        modalities (Sequence[str], optional): The modalities written. (default: all)
        overwrite (bool, optional): Replace existing files. (default: :obj:`False`)
        chunk_bytes (int, optional): The size of a written block.

    Returns:
        Dict[str, str]: the feature file of each modality.
    """
    from torch_mmkg.data.mmkg import ENTITY, feature_key, get_modalities, mask_key
    names = get_modalities(data) if modalities is None else list(modalities)
    unknown = [m for m in names if m not in get_modalities(data)]
    if unknown:
        raise ValueError(f"write_features: modalities {unknown} are not in the graph (it has "
                         f"{get_modalities(data)})")
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    ent, out = data[ENTITY], {}
    for m in names:
        path = osp.join(folder, f'{m}.npy')
        mpath = osp.join(folder, f'{m}_mask.npy')
        for p in (path, mpath):
            if osp.exists(p) and not overwrite:
                raise ValueError(f"{p} exists; pass overwrite=True to replace it")
        x = ent[feature_key(m)]
        if isinstance(x, DiskFeatures) and x.path == osp.abspath(path):
            out[m] = path  # already there
        else:
            write_array(x, path, chunk_bytes)
            out[m] = path
        mask = ent[mask_key(m)].detach().to('cpu', torch.bool).numpy()
        with atomic_write(mpath, 'wb') as f:
            np.save(f, mask, allow_pickle=False)
    return out


def open_features(data, folder: str, modalities: Optional[Sequence[str]] = None):
    r"""A shallow copy of :obj:`data` whose modality features are the files
    :obj:`folder/<modality>.npy` (:class:`DiskFeatures`), with the masks of
    :obj:`folder/<modality>_mask.npy` where they exist (else the graph's); the graph itself
    is left as it is. Shapes are checked against the graph.

    Args:
        data (HeteroData): The graph.
        folder (str): Where :func:`write_features` wrote.
        modalities (Sequence[str], optional): The modalities opened. (default: all)
    """
    import copy

    from torch_mmkg.data.mmkg import ENTITY, feature_key, get_modalities, mask_key
    from torch_mmkg.data.io import load_tensor_file
    names = get_modalities(data) if modalities is None else list(modalities)
    out = copy.copy(data)
    ent = out[ENTITY]
    N = int(ent.num_nodes)
    for m in names:
        if m not in get_modalities(data):
            raise ValueError(f"open_features: modality {m!r} is not in the graph")
        x = DiskFeatures(osp.join(folder, f'{m}.npy'))
        if x.dim() != 2 or x.size(0) != N:
            raise ValueError(f"{x.path}: expected [{N}, F] features, got {list(x.shape)}")
        ent[feature_key(m)] = x
        mpath = osp.join(folder, f'{m}_mask.npy')
        if osp.exists(mpath):
            mask = load_tensor_file(mpath)
            if mask.dtype != torch.bool or mask.shape != (N, ):
                raise ValueError(f"{mpath}: expected a bool [{N}] mask, got {mask.dtype} "
                                 f"{tuple(mask.shape)}")
            ent[mask_key(m)] = mask
    return out


def load_features(data, modalities: Optional[Sequence[str]] = None):
    r"""A shallow copy of :obj:`data` with its disk-backed features read into memory
    (within the full-read limit): the inverse of :func:`open_features`."""
    import copy

    from torch_mmkg.data.mmkg import ENTITY, feature_key, get_modalities
    out = copy.copy(data)
    ent = out[ENTITY]
    for m in (get_modalities(data) if modalities is None else modalities):
        x = ent[feature_key(m)]
        if isinstance(x, DiskFeatures):
            ent[feature_key(m)] = x.read_all(what=f"load_features ('{m}')")
    return out


# PyG's FeatureStore ###########################################################################


class DiskFeatureStore(FeatureStore):
    r"""PyG's :class:`~torch_geometric.data.FeatureStore` over :class:`DiskFeatures`: tensors
    are identified by :obj:`(group_name, attr_name)` (e.g. :obj:`("entity", "x_image")`) and
    :meth:`get_tensor` with an :obj:`index` reads only those rows, so the store can be handed
    to PyG's loaders that take a :obj:`(FeatureStore, GraphStore)` pair.

    :meth:`put_tensor` registers a :class:`DiskFeatures`, or writes a tensor to
    :obj:`root/<group_name>/<attr_name>.npy` (:func:`write_array`) and registers the file;
    writing part of a tensor (an :obj:`index`) is not supported (the files are read-only).
    :meth:`remove_tensor` forgets a tensor; its file stays.

    Args:
        root (str, optional): Where :meth:`put_tensor` writes tensors.
            (default: :obj:`None`: only :class:`DiskFeatures` can be put)
    """
    def __init__(self, root: Optional[str] = None):
        super().__init__()
        self.__dict__['root'] = None if root is None else os.fspath(root)
        self.__dict__['_tensors'] = {}

    @classmethod
    def from_data(cls, data, root: Optional[str] = None) -> 'DiskFeatureStore':
        r"""A store of the :class:`DiskFeatures` a graph holds (every node type)."""
        store = cls(root)
        for node_type in data.node_types:
            for key, value in data[node_type].items():
                if isinstance(value, DiskFeatures):
                    store.put_tensor(value, group_name=node_type, attr_name=key, index=None)
        return store

    def _put_tensor(self, tensor, attr: TensorAttr) -> bool:
        if attr.index is not None:
            raise ValueError("DiskFeatureStore: the files are read-only; put whole tensors "
                             "(index=None)")
        key = (attr.group_name, attr.attr_name)
        if not isinstance(tensor, DiskFeatures):
            if self.root is None:
                raise ValueError("DiskFeatureStore: give a root folder to write tensors to, "
                                 "or put a DiskFeatures")
            folder = osp.join(self.root, str(attr.group_name))
            os.makedirs(folder, exist_ok=True)
            tensor = write_array(tensor, osp.join(folder, f'{attr.attr_name}.npy'))
        self._tensors[key] = tensor
        return True

    def _get_tensor(self, attr: TensorAttr) -> Optional[Tensor]:
        x = self._tensors.get((attr.group_name, attr.attr_name))
        if x is None:
            return None
        if attr.index is None:
            return x.read_all(what=f"DiskFeatureStore.get_tensor({attr.group_name!r}, "
                                   f"{attr.attr_name!r}) without an index")
        return x[attr.index]

    def _remove_tensor(self, attr: TensorAttr) -> bool:
        return self._tensors.pop((attr.group_name, attr.attr_name), None) is not None

    def _get_tensor_size(self, attr: TensorAttr) -> Optional[Tuple[int, ...]]:
        x = self._tensors.get((attr.group_name, attr.attr_name))
        return None if x is None else tuple(x.shape)

    def get_all_tensor_attrs(self) -> List[TensorAttr]:
        return [TensorAttr(g, a) for g, a in self._tensors]

    def features(self, group_name: str, attr_name: str) -> DiskFeatures:
        r"""The :class:`DiskFeatures` of a tensor."""
        return self._tensors[(group_name, attr_name)]

    def __repr__(self) -> str:
        items = ', '.join(f'{g}.{a}={list(x.shape)}' for (g, a), x in self._tensors.items())
        return f'{self.__class__.__name__}({items})'
