r"""Readers for knowledge-graph files, each rejecting malformed input with the file and line."""
import os
import os.path as osp
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor


def read_lines(path: str) -> List[str]:
    r"""The lines of a UTF-8 text file (a byte-order mark skipped); bytes that are not UTF-8
    are an error naming the file and line."""
    # Only a newline ends a line ('\r\n' and '\r' are read as '\n'): str.splitlines() would
    # also split at U+0085, U+2028, form feed etc., which can occur inside entity names. A UTF-8
    # byte-order mark is skipped instead of becoming part of the first name.
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        text = raw.decode('utf-8-sig')
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b'\n') + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte {raw[e.start]:#04x} at offset "
                         f"{e.start}); save the file as UTF-8") from None
    lines = text.replace('\r\n', '\n').replace('\r', '\n').split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    return lines


def _count_header(lines: List[str], path: str) -> Tuple[int, List[Tuple[int, str]]]:
    if not lines:
        raise ValueError(f"{path}: the file is empty (expected a count on line 1)")
    head = lines[0].strip()
    if not head.isdigit():
        raise ValueError(f"{path}:1: expected the number of rows on the first line, got "
                         f"{lines[0][:80]!r}")
    count = int(head)
    rows = [(i + 1, line) for i, line in enumerate(lines[1:], start=1) if line.strip()]
    if len(rows) != count:
        raise ValueError(f"{path}: the header says {count} rows but the file has {len(rows)}")
    return count, rows


def _data_rows(path: str, header: bool) -> List[Tuple[int, str]]:
    r"""The non-blank ``(line number, line)`` rows of :obj:`path`, after the count header."""
    lines = read_lines(path)
    if header:
        return _count_header(lines, path)[1]
    return [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]


def _check_order(order: str):
    if sorted(order) != ['h', 'r', 't']:
        raise ValueError(f"order must be a permutation of 'hrt', got {order!r}")


def _labelled_rows(path: str, sep: Optional[str]):
    r"""Yields ``(line number, [three stripped fields])`` of a file of labelled triples."""
    for lineno, line in _data_rows(path, header=False):
        parts = [p.strip() for p in line.split(sep)]
        if len(parts) != 3:
            raise ValueError(f"{path}:{lineno}: expected 3 fields separated by {sep!r}, got "
                             f"{line[:80]!r}")
        yield lineno, parts


def read_openke_dict(path: str, header: bool = True) -> List[str]:
    r"""Reads an OpenKE ``entity2id.txt``/``relation2id.txt`` file.

    Each row is ``name<whitespace>id`` (the name may itself contain spaces; the id is the last
    field). With :obj:`header=True` the first line holds the row count.

    Returns:
        List[str]: the names, indexed by id.

    Raises:
        ValueError: naming the file and line, for a count header that disagrees with the rows, a
            malformed row, a non-integer id, a duplicate id or name, or ids that do not cover
            :math:`0, \dots, n - 1`.
    """
    rows = _data_rows(path, header)
    names: Dict[int, str] = {}
    seen: Dict[str, int] = {}
    for lineno, line in rows:
        parts = line.rstrip('\r\n').rsplit(None, 1)
        if len(parts) != 2 or not parts[0].strip():
            raise ValueError(f"{path}:{lineno}: expected 'name id', got {line[:80]!r}")
        name, idx = parts[0].strip(), parts[1]
        try:
            idx = int(idx)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: id {idx!r} is not an integer") from None
        if idx in names:
            raise ValueError(f"{path}:{lineno}: duplicate id {idx} (also given to "
                             f"{names[idx]!r})")
        if name in seen:
            raise ValueError(f"{path}:{lineno}: duplicate name {name!r} (already id "
                             f"{seen[name]})")
        names[idx] = name
        seen[name] = idx
    n = len(names)
    bad = [i for i in names if i < 0 or i >= n]
    if bad:
        raise ValueError(f"{path}: ids must be exactly 0..{n - 1}, found id {min(bad)} "
                         f"out of range")
    return [names[i] for i in range(n)]


def read_openke_triples(path: str, num_entities: int, num_relations: int,
                        order: str = 'htr', header: bool = True) -> Tensor:
    r"""Reads an OpenKE ``train2id.txt``-style file of integer triples.

    Args:
        path (str): The file.
        num_entities (int): Entity ids must lie in :math:`[0, N)`.
        num_relations (int): Relation ids must lie in :math:`[0, R)`.
        order (str, optional): The column order, a permutation of :obj:`"h"`, :obj:`"r"`,
            :obj:`"t"`. OpenKE files are :obj:`"htr"` (head, tail, relation).
            (default: :obj:`"htr"`)
        header (bool, optional): Whether line 1 holds the row count. (default: :obj:`True`)

    Returns:
        Tensor: a :obj:`[T, 3]` long tensor of ``(head, relation, tail)`` rows, in file order
        (duplicates kept).
    """
    _check_order(order)
    rows = _data_rows(path, header)
    out = np.empty((len(rows), 3), dtype=np.int64)
    col = {c: order.index(c) for c in 'hrt'}
    limits = {'h': num_entities, 'r': num_relations, 't': num_entities}
    what = {'h': 'head entity', 'r': 'relation', 't': 'tail entity'}
    for k, (lineno, line) in enumerate(rows):
        parts = line.split()
        if len(parts) != 3:
            raise ValueError(f"{path}:{lineno}: expected 3 integer fields, got {line[:80]!r}")
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"{path}:{lineno}: non-integer field in {line[:80]!r}") from None
        for j, c in enumerate('hrt'):
            v = vals[col[c]]
            if v < 0 or v >= limits[c]:
                raise ValueError(f"{path}:{lineno}: {what[c]} id {v} is out of range "
                                 f"[0, {limits[c]})")
            out[k, j] = v
    return torch.from_numpy(out)


def read_labelled_triples(path: str, entity_index: Mapping[str, int],
                          relation_index: Mapping[str, int], order: str = 'hrt',
                          sep: Optional[str] = '\t') -> Tensor:
    r"""Reads triples of names (one per line, fields separated by :obj:`sep`).

    Every name must be in :obj:`entity_index`/:obj:`relation_index`; an unknown name is an
    error naming the file and line.

    Returns:
        Tensor: a :obj:`[T, 3]` long tensor of ``(head, relation, tail)`` rows.
    """
    _check_order(order)
    out = []
    for lineno, parts in _labelled_rows(path, sep):
        row = []
        for c in 'hrt':
            name = parts[order.index(c)]
            index = relation_index if c == 'r' else entity_index
            if name not in index:
                kind = 'relation' if c == 'r' else 'entity'
                raise ValueError(f"{path}:{lineno}: unknown {kind} {name!r}")
            row.append(index[name])
        out.append(row)
    return torch.tensor(out, dtype=torch.long).view(-1, 3)


def collect_names(paths: Sequence[str], order: str = 'hrt',
                  sep: Optional[str] = '\t') -> Tuple[List[str], List[str]]:
    r"""Collects entity and relation names, in order of first appearance, from triple files."""
    ents: Dict[str, None] = {}
    rels: Dict[str, None] = {}
    _check_order(order)
    for path in paths:
        for _, parts in _labelled_rows(path, sep):
            ents.setdefault(parts[order.index('h')])
            rels.setdefault(parts[order.index('r')])
            ents.setdefault(parts[order.index('t')])
    return list(ents), list(rels)


#: The file types :func:`load_tensor_file` reads.
TENSOR_EXTS = ('.pt', '.pth', '.npy')
#: Extensions of Python pickles, which are refused: unpickling can run any code.
PICKLE_EXTS = ('.pkl', '.pickle', '.joblib', '.dill')


def check_dense(t: Tensor, where: str) -> Tensor:
    r"""Refuses a tensor that is a view of less memory than it addresses (e.g. saved from
    :meth:`~torch.Tensor.expand`, stride 0): a small file could otherwise expand to gigabytes
    the moment it is used."""
    need = t.numel() * t.element_size()
    have = t.untyped_storage().nbytes()
    if t.numel() and have < need:
        raise ValueError(f"{where}: holds a {list(t.shape)} tensor stored in only {have} bytes "
                         f"(an expanded or overlapping view, strides {list(t.stride())}); as "
                         f"features it would take {need} bytes. Save a dense tensor instead "
                         f"(x.contiguous())")
    return t


def load_tensor_file(path: str) -> Tensor:
    r"""Loads a feature or mask tensor from a ``.pt``/``.pth`` file (through
    :func:`~torch_mmkg.data.serialization.safe_load`: no code in the file runs) or a ``.npy``
    file (without pickle).

    Raises:
        ValueError: naming :obj:`path`, for another file type (pickles are refused), a file that
            does not hold exactly one tensor or numeric array, a truncated or corrupt file, or an
            expanded (stride-0) tensor that addresses more memory than the file holds.
    """
    from torch_mmkg.data.serialization import safe_load
    ext = osp.splitext(path)[1].lower()
    if ext in ('.pt', '.pth'):
        obj = safe_load(path, 'tensor file')
        if not isinstance(obj, Tensor):
            raise ValueError(f"{path}: expected a tensor, found {type(obj).__name__}")
        return check_dense(obj, path)
    if ext == '.npy':
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{path}: not a plain numpy array ({e})") from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in 'biufc':
            raise ValueError(f"{path}: expected a numeric numpy array, found dtype "
                             f"{getattr(arr, 'dtype', type(arr).__name__)}")
        return torch.from_numpy(np.ascontiguousarray(arr))
    if ext in PICKLE_EXTS:
        raise ValueError(f"{path}: {ext} files are refused because loading a pickle can run "
                         f"code; save the tensor with torch.save (.pt/.pth) or numpy.save (.npy)")
    raise ValueError(f"{path}: unsupported feature file type {ext!r} (use .pt, .pth or .npy)")


def as_feature_matrix(x: Tensor, where: str, num_rows: Optional[int] = None) -> Tensor:
    r"""Checks a loaded feature matrix and returns it as :obj:`float32`.

    Integer, boolean and :obj:`float64` features become :obj:`float32`; :obj:`float16` and
    :obj:`bfloat16` too.

    Raises:
        ValueError: naming :obj:`where`, for a tensor that is not 2-d, has no columns, has a row
            count other than :obj:`num_rows`, is complex, or holds NaN/Inf (the first offending
            row and column).
    """
    if x.dim() != 2:
        raise ValueError(f"{where}: features must be a 2-d [num_entities, num_features] "
                         f"tensor, got shape {tuple(x.shape)}")
    if num_rows is not None and x.size(0) != num_rows:
        raise ValueError(f"{where}: {x.size(0)} feature rows but the graph has {num_rows} "
                         f"entities (row i must be entity id i)")
    if x.size(1) == 0:
        raise ValueError(f"{where}: features have shape {tuple(x.shape)}, i.e. no feature "
                         f"columns; leave the modality out instead")
    if x.is_complex():
        raise ValueError(f"{where}: complex features ({x.dtype}) are not supported; store the "
                         f"real and imaginary parts as separate columns")
    if x.dtype != torch.float32:
        x = x.float()
    nonfinite = ~torch.isfinite(x)
    if nonfinite.any():
        row, col = (int(i) for i in nonfinite.nonzero()[0])
        raise ValueError(f"{where}: row {row}, feature {col} holds {x[row, col].item()}; "
                         f"features must be finite (leave a missing row out of the mask "
                         f"instead)")
    return x


def find_file(folder: str, stem: str, exts: Sequence[str] = ('.pt', '.pth', '.npy')
              ) -> Optional[str]:
    r"""Returns :obj:`folder/stem<ext>` for the first extension that exists, else
    :obj:`None`."""
    for ext in exts:
        path = osp.join(folder, stem + ext)
        if osp.exists(path):
            return path
    return None


def list_feature_files(folder: str, exts: Sequence[str] = ('.pt', '.pth', '.npy')
                       ) -> Dict[str, str]:
    r"""Maps ``stem -> path`` for the feature files directly inside :obj:`folder`."""
    out = {}
    if not osp.isdir(folder):
        return out
    for fname in sorted(os.listdir(folder)):
        stem, ext = osp.splitext(fname)
        if ext.lower() in exts:
            if stem in out:
                raise ValueError(f"{folder}: both {osp.basename(out[stem])} and {fname} "
                                 f"define '{stem}'")
            out[stem] = osp.join(folder, fname)
    return out
