r"""A multi-modal knowledge graph of the user's own, read from a folder of files."""
import hashlib
import json
import os
import os.path as osp
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from torch_mmkg.data import (ENTITY, REL, SPLITS, add_clean_val_split, build_mmkg,
                             collect_names, load_tensor_file, modality_features,
                             read_labelled_triples, read_openke_dict, read_openke_triples,
                             split_key, split_report, warn_split_issues)
from torch_mmkg.data.feature_store import DiskFeatures, write_array
from torch_mmkg.data.serialization import atomic_write
from torch_mmkg.data.io import PICKLE_EXTS, as_feature_matrix, list_feature_files, read_lines
from torch_mmkg.data.mmkg import _MODALITY_RE
from torch_mmkg.datasets.in_memory import SafeInMemoryDataset

__all__ = ['MMKGFolder']

Source = Union[str, 'os.PathLike[str]', Tensor, np.ndarray]

#: The files of the OpenKE layout, in the order ``entities, relations, train, val, test``.
OPENKE_FILES = ('entity2id.txt', 'relation2id.txt', 'train2id.txt', 'valid2id.txt',
                'test2id.txt')
#: The split files of the labelled layout (the validation split may be ``val.txt``).
LABELLED_FILES = ('train.txt', 'valid.txt', 'test.txt')
FEATURE_EXTS = ('.pt', '.pth', '.npy')
FORMATS = ('auto', 'openke', 'labelled')
#: Bumped when :meth:`MMKGFolder.process` changes what it writes, so old caches are not reused.
_PROCESS_VERSION = 2
#: Marks the record of the feature files of a processed folder with :obj:`mmap=True`.
_MMAP_FORMAT = 'torch_mmkg.mmap_features/1'


class _ScatteredRows:
    r"""A source of :func:`~torch_mmkg.data.feature_store.write_array`: the rows of
    :obj:`arr` placed at entity ids :obj:`ids` of an :obj:`[N, F]` matrix, zeros elsewhere,
    produced block by block."""
    def __init__(self, arr, ids: List[int], N: int):
        self.arr, self.shape = arr, (N, ) + tuple(arr.shape[1:])
        self.pos = np.full(N, -1, dtype=np.int64)
        self.pos[np.asarray(ids, dtype=np.int64)] = np.arange(len(ids))

    def __getitem__(self, key: slice) -> np.ndarray:
        pos = self.pos[key]
        out = np.zeros((pos.size, ) + self.shape[1:], dtype=np.float32)
        have = np.flatnonzero(pos >= 0)
        if have.size:
            src = pos[have]
            order = np.argsort(src)
            rows = self.arr[src[order]] if not isinstance(self.arr, Tensor) else \
                self.arr[torch.from_numpy(src[order])].float().numpy()
            out[have[order]] = np.asarray(rows, dtype=np.float32)
        return out


def _read_name_list(path: str) -> List[Tuple[int, str]]:
    r"""Reads one name per non-empty line (surrounding whitespace removed) as
    ``(line number, name)`` pairs; a repeated name is an error naming the file and line."""
    lines = read_lines(path)
    out, seen = [], {}
    for lineno, line in enumerate(lines, start=1):
        name = line.strip()
        if not name:
            continue
        if name in seen:
            raise ValueError(f"{path}:{lineno}: duplicate name {name!r} (already on line "
                             f"{seen[name]})")
        seen[name] = lineno
        out.append((lineno, name))
    return out


def _describe(source: Source, modality: str, kind: str) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"{kind}['{modality}']"


def _load(source: Source, what: str) -> Tensor:
    if isinstance(source, (str, os.PathLike)):
        return load_tensor_file(os.fspath(source))
    if isinstance(source, np.ndarray):
        if source.dtype == object:
            raise ValueError(f"{what}: a numpy array of objects is not a tensor")
        return torch.from_numpy(np.ascontiguousarray(source))
    if isinstance(source, Tensor):
        return source.detach().cpu()
    raise ValueError(f"{what}: expected a file path, a tensor or a numpy array, got "
                     f"{type(source).__name__}")


def _hash_source(h: 'hashlib._Hash', source: Source):
    if isinstance(source, (str, os.PathLike)):
        path = osp.abspath(os.fspath(source))
        st = os.stat(path)
        h.update(f'file|{path}|{st.st_size}|{st.st_mtime_ns}\n'.encode('utf-8'))
        return
    t = _load(source, 'override')
    t = t.contiguous()
    h.update(f'tensor|{t.dtype}|{tuple(t.shape)}\n'.encode('utf-8'))
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy())


class MMKGFolder(SafeInMemoryDataset):
    r"""A multi-modal knowledge graph of the user's own, read from a folder and cached in the
    :mod:`torch_mmkg` layout (see :mod:`torch_mmkg.data.mmkg`).

    The files are looked for in :obj:`root/raw/` (the PyG convention); if that folder does not
    exist, in :obj:`root` itself. The processed graph is cached in :obj:`root/processed/`.
    Two layouts are read:

    * **OpenKE**: :obj:`entity2id.txt` and :obj:`relation2id.txt` (a count on line 1, then
      ``name id`` rows; names may contain spaces) and :obj:`train2id.txt`,
      :obj:`valid2id.txt`, :obj:`test2id.txt` (a count on line 1, then ``head tail relation``
      rows of ids).
    * **labelled**: :obj:`train.txt`, :obj:`valid.txt` (or :obj:`val.txt`) and
      :obj:`test.txt`, one ``head<TAB>relation<TAB>tail`` triple of names per line. Entity and
      relation ids follow the order of first appearance in train, then valid, then test, unless
      :obj:`entities.txt`/:obj:`relations.txt` (one name per line, line order = id) exist; then
      these fix the ids and a name missing from them is an error.

    .. code-block:: text

        root/raw/
          train.txt  valid.txt  test.txt            (or the five OpenKE files)
          entities.txt  relations.txt               (optional, labelled layout only)
          features/
            text.pt        [N, F] features of modality 'text' (row i = entity id i)
            text_mask.pt   optional [N] bool mask; without it, the mask is the non-zero rows
            image.npy      [K, F] features whose rows ...
            image_index.txt  ... are the K entity names listed here, one per line

    Features: every :obj:`.pt`/:obj:`.pth`/:obj:`.npy` file :obj:`features/<modality>.<ext>` is
    the :obj:`[N, F]` feature matrix of a modality (a lower-case identifier not ending in
    :obj:`_mask`); integer and :obj:`float64` features are stored as :obj:`float32`.
    :obj:`features/<modality>_mask.<ext>` is its optional availability mask (boolean, or
    integers 0/1); without one, an entity has the modality exactly when its feature row is not
    all zeros. Row :math:`i` belongs to entity id :math:`i`, unless
    :obj:`features/<modality>_index.txt` lists one entity name per line: then row :math:`k`
    (of the features and of the mask) belongs to the entity named on the :math:`k`-th line, an
    entity missing from the list gets a zero row and mask :obj:`False`, and a name that is not
    in the graph is an error. ``.pt`` files are loaded with :obj:`weights_only=True` and ``.npy``
    files without pickle, so no code in a data file runs. A mask or index file for a modality
    without features is an error.

    Processing validates the graph (:func:`~torch_mmkg.data.validate_mmkg`) and adds the cleaned
    validation split :obj:`val_clean_mask` (:func:`~torch_mmkg.data.add_clean_val_split`); the
    published splits are kept row for row. Every load warns if the splits are not clean, and
    :attr:`split_report` holds the counts. The cache file name carries a hash of the names, sizes
    and modification times of the raw files (and of the :obj:`features`/:obj:`masks`
    arguments), so changing, adding or removing a file reprocesses the folder; caches of earlier
    versions of the files stay in :obj:`root/processed/` and may be deleted.

    Args:
        root (str): The folder (files in :obj:`root/raw/` or directly in :obj:`root`).
        format (str, optional): :obj:`"openke"`, :obj:`"labelled"`, or :obj:`"auto"`
            (OpenKE if :obj:`train2id.txt` exists, otherwise labelled).
            (default: :obj:`"auto"`)
        features (Mapping[str, str or Tensor], optional): Per modality a feature file path, a
            tensor or a numpy array, replacing :obj:`features/<modality>.<ext>` or adding a
            modality. (default: :obj:`None`)
        masks (Mapping[str, str or Tensor], optional): Per modality a mask file path, a tensor or
            a numpy array, replacing :obj:`features/<modality>_mask.<ext>`.
            (default: :obj:`None`)
        transform (callable, optional): A function/transform that takes in a
            :class:`~torch_geometric.data.HeteroData` object and returns a transformed version,
            applied on every access. (default: :obj:`None`)
        pre_transform (callable, optional): Like :obj:`transform`, applied once before the graph
            is saved to disk. (default: :obj:`None`)
        force_reload (bool, optional): Whether to re-process the folder. (default: :obj:`False`)
        mmap (bool, optional): Keep the features on disk, memory-mapped and read row by row
            (:class:`~torch_mmkg.data.feature_store.DiskFeatures`) instead of loading them: a
            :obj:`features/<modality>.npy` of little-endian :obj:`float32` :obj:`[N, F]`
            (row :math:`i` = entity :math:`i`) is opened in place; any other feature source
            (another dtype, a :obj:`.pt` file, a row index file, a tensor argument) is
            converted once, block by block, to :obj:`processed/features_<hash>/<modality>.npy`.
            The processed cache then holds the paths of the files (in a JSON file beside it),
            not the features; the masks are loaded as usual. (default: :obj:`False`)
    """
    def __init__(
        self,
        root: str,
        format: str = 'auto',
        features: Optional[Mapping[str, Source]] = None,
        masks: Optional[Mapping[str, Source]] = None,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
        mmap: bool = False,
    ):
        root = osp.expanduser(osp.normpath(os.fspath(root)))
        if not osp.isdir(root):
            raise ValueError(f"{root}: no such folder")
        raw = osp.join(root, 'raw')
        self._raw_dir = raw if osp.isdir(raw) else root
        if format not in FORMATS:
            raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")
        for what, given in (('features', features), ('masks', masks)):
            if given is not None and not isinstance(given, Mapping):
                raise ValueError(f"{what} must be a dict {{modality: path or tensor}}, got "
                                 f"{type(given).__name__}")
        self._feature_args: Dict[str, Source] = dict(features or {})
        self._mask_args: Dict[str, Source] = dict(masks or {})
        self.format, self._files = self._detect_format(format)
        if mmap not in (True, False):
            raise ValueError(f"mmap must be True or False, got {mmap!r}")
        self.mmap = bool(mmap)
        self._fingerprint = self._compute_fingerprint()

        super().__init__(root, transform, pre_transform, force_reload=force_reload)
        self.load(self.processed_paths[0], data_cls=HeteroData)
        if self.mmap:
            self._attach_disk_features()

        report_path = self._report_path
        if osp.exists(report_path):
            with open(report_path, encoding='utf-8') as f:
                self.split_report: Dict[str, Any] = json.load(f)
        else:
            self.split_report = split_report(self._data)
        warn_split_issues(self.split_report, f'{self.__class__.__name__}({self.root})',
                          stacklevel=2)

    # -- layout --------------------------------------------------------------------------------
    @property
    def raw_dir(self) -> str:
        return self._raw_dir

    @property
    def processed_dir(self) -> str:
        return osp.join(self.root, 'processed')

    @property
    def feature_dir(self) -> str:
        r"""The folder of the feature files, :obj:`raw_dir/features`."""
        return osp.join(self._raw_dir, 'features')

    @property
    def raw_file_names(self) -> List[str]:
        return [osp.basename(p) for p in self._files.values()]

    @property
    def processed_file_names(self) -> List[str]:
        names = [f'mmkg_{self.format}_{self._fingerprint}.pt']
        if self.mmap:  # where the features are: paths, not values
            names.append(f'mmkg_{self.format}_{self._fingerprint}_features.json')
        return names

    @property
    def _report_path(self) -> str:
        return osp.splitext(self.processed_paths[0])[0] + '_split_report.json'

    def _detect_format(self, fmt: str) -> Tuple[str, Dict[str, str]]:
        folder = self._raw_dir

        def path(name):
            return osp.join(folder, name)

        looked_for = (f"OpenKE: {', '.join(OPENKE_FILES)}; labelled: train.txt, valid.txt (or "
                      f"val.txt), test.txt")
        if fmt == 'auto':
            if osp.isfile(path('train2id.txt')):
                fmt = 'openke'
            elif osp.isfile(path('train.txt')):
                fmt = 'labelled'
            else:
                raise ValueError(f"{folder}: no knowledge graph found; looked for {looked_for}")
        if fmt == 'openke':
            files = dict(zip(('entities', 'relations') + SPLITS, OPENKE_FILES))
        else:
            valid = [n for n in ('valid.txt', 'val.txt') if osp.isfile(path(n))]
            if len(valid) > 1:
                raise ValueError(f"{folder}: both valid.txt and val.txt exist; keep one")
            files = {'train': 'train.txt', 'val': valid[0] if valid else 'valid.txt',
                     'test': 'test.txt'}
        missing = [n for n in files.values() if not osp.isfile(path(n))]
        if missing:
            if fmt == 'labelled' and 'valid.txt' in missing:
                missing[missing.index('valid.txt')] = 'valid.txt (or val.txt)'
            raise ValueError(f"{folder}: the {fmt} layout needs {', '.join(missing)}, which "
                             f"{'is' if len(missing) == 1 else 'are'} missing (looked for "
                             f"{looked_for})")
        return fmt, {k: path(n) for k, n in files.items()}

    def _compute_fingerprint(self) -> str:
        h = hashlib.sha1(f'v{_PROCESS_VERSION}|{self.format}\n'.encode('utf-8'))
        if self.mmap:
            h.update(b'mmap\n')
        for folder in (self._raw_dir, self.feature_dir):
            if not osp.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                p = osp.join(folder, name)
                if osp.isfile(p):
                    st = os.stat(p)
                    rel = osp.relpath(p, self._raw_dir)
                    h.update(f'{rel}|{st.st_size}|{st.st_mtime_ns}\n'.encode('utf-8'))
        for kind, given in (('features', self._feature_args), ('masks', self._mask_args)):
            for m in sorted(given):
                h.update(f'{kind}|{m}\n'.encode('utf-8'))
                _hash_source(h, given[m])
        return h.hexdigest()[:12]

    # -- reading -------------------------------------------------------------------------------
    def _read_structure(self) -> Dict[str, Any]:
        files = self._files
        if self.format == 'openke':
            ents = read_openke_dict(files['entities'])
            rels = read_openke_dict(files['relations'])
            triples = {s: read_openke_triples(files[s], len(ents), len(rels)) for s in SPLITS}
        else:
            split_files = [files[s] for s in SPLITS]
            ent_file = osp.join(self._raw_dir, 'entities.txt')
            rel_file = osp.join(self._raw_dir, 'relations.txt')
            ents = rels = None
            if osp.isfile(ent_file):
                ents = [n for _, n in _read_name_list(ent_file)]
            if osp.isfile(rel_file):
                rels = [n for _, n in _read_name_list(rel_file)]
            if ents is None or rels is None:
                found_ents, found_rels = collect_names(split_files)
                ents = found_ents if ents is None else ents
                rels = found_rels if rels is None else rels
            ent_index = {n: i for i, n in enumerate(ents)}
            rel_index = {n: i for i, n in enumerate(rels)}
            triples = {s: read_labelled_triples(files[s], ent_index, rel_index) for s in SPLITS}
        if not ents:
            raise ValueError(f"{self._raw_dir}: the graph has no entities")
        if not rels:
            raise ValueError(f"{self._raw_dir}: the graph has no relations")
        return dict(num_entities=len(ents), num_relations=len(rels), triples=triples,
                    entity_names=ents, relation_names=rels)

    def _feature_sources(self) -> Tuple[Dict[str, Source], Dict[str, Source], Dict[str, str]]:
        feats: Dict[str, Source] = {}
        masks: Dict[str, Source] = {}
        for stem, p in list_feature_files(self.feature_dir, FEATURE_EXTS).items():
            if stem.endswith('_mask'):
                masks[stem[:-len('_mask')]] = p
            else:
                feats[stem] = p
        index = {}
        if osp.isdir(self.feature_dir):
            for name in sorted(os.listdir(self.feature_dir)):
                path = osp.join(self.feature_dir, name)
                if name.endswith('_index.txt'):
                    index[name[:-len('_index.txt')]] = path
                elif not (name.startswith('.') or osp.isdir(path) or
                          osp.splitext(name)[1].lower() in FEATURE_EXTS):
                    # Nothing in features/ is silently skipped.
                    ext = osp.splitext(name)[1].lower()
                    why = (f"{ext} files are refused because loading a pickle can run code"
                           if ext in PICKLE_EXTS else "this file type is not read")
                    raise ValueError(
                        f"{path}: {why}. features/ holds <modality>.pt|.pth|.npy (an [N, F] "
                        f"tensor or numeric array), <modality>_mask.pt|.pth|.npy and "
                        f"<modality>_index.txt; convert the file (torch.save / numpy.save) or "
                        f"move it out of {self.feature_dir}")
        feats.update(self._feature_args)
        masks.update(self._mask_args)
        for m, src in masks.items():
            if m not in feats:
                raise ValueError(f"{_describe(src, m, 'masks')}: a mask of modality '{m}', which "
                                 f"has no features (no {m}.pt/.pth/.npy in {self.feature_dir} "
                                 f"and no features['{m}'])")
        for m, p in index.items():
            if m not in feats:
                raise ValueError(f"{p}: a row index of modality '{m}', which has no features "
                                 f"(no {m}.pt/.pth/.npy in {self.feature_dir} and no "
                                 f"features['{m}'])")
        for m, src in feats.items():
            if not isinstance(m, str) or not _MODALITY_RE.match(m) or m.endswith('_mask'):
                raise ValueError(f"{_describe(src, m, 'features')}: modality name {m!r} must be a "
                                 f"lower-case identifier ([a-z][a-z0-9_]*) not ending in '_mask'")
        return feats, masks, index

    def _read_features(self, entity_names: List[str]
                       ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        N = len(entity_names)
        feat_src, mask_src, index_files = self._feature_sources()
        name_to_id = {n: i for i, n in enumerate(entity_names)}
        features, masks = {}, {}
        for m in sorted(feat_src):
            where = _describe(feat_src[m], m, 'features')
            x = _load(feat_src[m], where)
            # The rows are checked before the mask, so that a short feature file is blamed on
            # itself and not on its (correct) mask.
            if m not in index_files and x.dim() == 2 and x.size(0) != N:
                raise ValueError(f"{where}: {x.size(0)} feature rows but the graph has {N} "
                                 f"entities (row i must be entity id i; to key the rows by "
                                 f"entity name add {m}_index.txt to {self.feature_dir})")
            x = as_feature_matrix(x, where)
            mask = self._read_mask(m, mask_src, x.size(0))
            if m in index_files:
                ids = self._read_index(index_files[m], name_to_id)
                if len(ids) != x.size(0):
                    raise ValueError(f"{index_files[m]}: lists {len(ids)} entities but {where} "
                                     f"has {x.size(0)} rows")
                if mask is None:
                    mask = (x != 0).any(dim=1)
                ids_t = torch.tensor(ids, dtype=torch.long)
                full = x.new_zeros(N, x.size(1))
                full[ids_t] = x
                full_mask = torch.zeros(N, dtype=torch.bool)
                full_mask[ids_t] = mask
                x, mask = full, full_mask
            features[m] = x
            if mask is not None:
                masks[m] = mask
        return features, masks

    @staticmethod
    def _read_mask(m: str, mask_src: Mapping[str, Source], rows: int) -> Optional[Tensor]:
        r"""The mask of modality :obj:`m` (one entry per feature row), or :obj:`None`."""
        if m not in mask_src:
            return None
        mwhere = _describe(mask_src[m], m, 'masks')
        mask = _load(mask_src[m], mwhere)
        if mask.dim() != 1 or mask.numel() != rows:
            raise ValueError(f"{mwhere}: the mask of modality '{m}' must have shape "
                             f"[{rows}] (one entry per feature row), got "
                             f"{tuple(mask.shape)}")
        if mask.dtype != torch.bool:
            if mask.is_floating_point() or mask.is_complex() or \
                    bool(((mask != 0) & (mask != 1)).any()):
                raise ValueError(f"{mwhere}: the mask of modality '{m}' must be boolean "
                                 f"(or integers 0/1), got {mask.dtype}")
            mask = mask != 0
        return mask

    # -- disk-backed features (mmap=True) ------------------------------------------------------
    def _map_features(self, entity_names: List[str]) -> Tuple[Dict[str, Any], Dict[str, Tensor]]:
        r"""The features as :class:`DiskFeatures` (opened in place, or converted once to
        :obj:`processed/features_<hash>/`) and the masks, in memory."""
        N = len(entity_names)
        feat_src, mask_src, index_files = self._feature_sources()
        name_to_id = {n: i for i, n in enumerate(entity_names)}
        features, masks = {}, {}
        for m in sorted(feat_src):
            src, where = feat_src[m], _describe(feat_src[m], m, 'features')
            x = None
            if (isinstance(src, (str, os.PathLike)) and m not in index_files
                    and os.fspath(src).lower().endswith('.npy')):
                try:
                    x = DiskFeatures(os.fspath(src))
                except ValueError:  # another dtype or layout: converted below
                    x = None
                if x is not None and (x.dim() != 2 or x.size(0) != N):
                    x = None  # the conversion names what is wrong
            ids = None
            if m in index_files:
                ids = self._read_index(index_files[m], name_to_id)
            if x is None:
                x, rows = self._convert_features(m, src, where, N, ids, index_files.get(m))
            else:
                rows = N
            mask = self._read_mask(m, mask_src, rows)
            if ids is not None and mask is not None:
                full_mask = torch.zeros(N, dtype=torch.bool)
                full_mask[torch.tensor(ids, dtype=torch.long)] = mask
                mask = full_mask
            features[m] = x
            if mask is not None:
                masks[m] = mask
        return features, masks

    def _convert_features(self, m: str, src: Source, where: str, N: int,
                          ids: Optional[List[int]], index_file: Optional[str]
                          ) -> Tuple[DiskFeatures, int]:
        r"""Writes a feature source as a float32 [N, F] ``.npy`` (rows placed by the index
        file, if any), block by block; returns it and the number of source rows."""
        if isinstance(src, (str, os.PathLike)) and os.fspath(src).lower().endswith('.npy'):
            try:
                arr = np.load(os.fspath(src), mmap_mode='r', allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise ValueError(f"{where}: not a plain numpy array ({e})") from None
            if arr.dtype.kind not in 'biufc':
                raise ValueError(f"{where}: expected a numeric numpy array, found dtype "
                                 f"{arr.dtype}")
            shape, kind = tuple(arr.shape), arr.dtype.kind
        else:
            arr = _load(src, where)
            shape, kind = tuple(arr.shape), 'c' if arr.is_complex() else 'f'
        if ids is None and len(shape) == 2 and shape[0] != N:
            raise ValueError(f"{where}: {shape[0]} feature rows but the graph has {N} "
                             f"entities (row i must be entity id i; to key the rows by "
                             f"entity name add {m}_index.txt to {self.feature_dir})")
        if len(shape) != 2:
            raise ValueError(f"{where}: features must be a 2-d [num_entities, num_features] "
                             f"tensor, got shape {shape}")
        if shape[1] == 0:
            raise ValueError(f"{where}: features have shape {shape}, i.e. no feature "
                             f"columns; leave the modality out instead")
        if kind == 'c':
            raise ValueError(f"{where}: complex features are not supported; store the real "
                             f"and imaginary parts as separate columns")
        if ids is not None and len(ids) != shape[0]:
            raise ValueError(f"{index_file}: lists {len(ids)} entities but {where} has "
                             f"{shape[0]} rows")
        source = arr if ids is None else _ScatteredRows(arr, ids, N)
        folder = osp.join(self.processed_dir, f'features_{self._fingerprint}')
        os.makedirs(folder, exist_ok=True)
        path = osp.join(folder, f'{m}.npy')
        x = write_array(source, path)
        scan = x.scan()
        if not scan.finite:
            (row, col), value = scan.nonfinite
            if ids is not None:  # the row of the source file
                row = ids.index(row)
            os.remove(path)
            raise ValueError(f"{where}: row {row}, feature {col} holds {value}; features must "
                             f"be finite (leave a missing row out of the mask instead)")
        return x, shape[0]

    def _detach_disk_features(self, data: HeteroData) -> Tuple[HeteroData, Dict[str, Any]]:
        r"""The graph without its disk-backed features (what the cache saves) and where they
        are (paths relative to the root when inside it)."""
        import copy
        data = copy.copy(data)
        ent = data[ENTITY]
        files = {}
        for m in list(getattr(data, 'modalities', None) or []):
            key = f'x_{m}'
            x = ent[key]
            if isinstance(x, DiskFeatures):
                rel = osp.relpath(x.path, self.root)
                inside = not rel.startswith(os.pardir + os.sep) and rel != os.pardir
                files[m] = {'path': rel if inside else x.path, 'shape': list(x.shape)}
                del ent[key]
        return data, files

    def _attach_disk_features(self):
        path = self.processed_paths[1]
        with open(path, encoding='utf-8') as f:
            record = json.load(f)
        if not isinstance(record, dict) or record.get('format') != _MMAP_FORMAT or \
                not isinstance(record.get('features'), dict):
            raise ValueError(f"{path}: not a record of memory-mapped features written by "
                             f"this version of torch_mmkg; delete it (or pass "
                             f"force_reload=True)")
        ent = self._data[ENTITY]
        for m, info in record['features'].items():
            file = info['path'] if osp.isabs(info['path']) else osp.join(self.root,
                                                                         info['path'])
            try:
                x = DiskFeatures(file)
            except ValueError as e:
                raise ValueError(f"{e} (the features of '{m}' recorded in {path}; pass "
                                 f"force_reload=True to process the folder again)") from None
            if list(x.shape) != list(info['shape']):
                raise ValueError(f"{file}: shape {list(x.shape)} but {path} recorded "
                                 f"{info['shape']}; pass force_reload=True")
            ent[f'x_{m}'] = x

    @staticmethod
    def _read_index(path: str, name_to_id: Mapping[str, int]) -> List[int]:
        ids = []
        for lineno, name in _read_name_list(path):
            if name not in name_to_id:
                raise ValueError(f"{path}:{lineno}: entity {name!r} is not in the graph")
            ids.append(name_to_id[name])
        return ids

    def process(self):
        structure = self._read_structure()
        if self.mmap:
            features, masks = self._map_features(structure['entity_names'])
        else:
            features, masks = self._read_features(structure['entity_names'])
        data = build_mmkg(features=features, masks=masks, **structure)
        report = add_clean_val_split(data, warn=False)  # the warning is given on every load
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        if self.mmap:  # the cache holds where the features are, never their values
            data, files = self._detach_disk_features(data)
            with atomic_write(self.processed_paths[1], encoding='utf-8') as f:
                json.dump({'format': _MMAP_FORMAT, 'features': files}, f, indent=1)
        # the report first and the cache last, each renamed into place: a process that finds
        # the cache (another job processing the same folder) finds every file whole
        with atomic_write(self._report_path, encoding='utf-8') as f:
            json.dump(report, f, indent=1)
        self.save([data], self.processed_paths[0])  # atomic (SafeInMemoryDataset.save)

    # -- summary -------------------------------------------------------------------------------
    @property
    def num_entities(self) -> int:
        r"""Number of entities :math:`N`."""
        return int(self._data[ENTITY].num_nodes)

    @property
    def num_relations(self) -> int:
        r"""Number of relations :math:`R`."""
        return int(self._data.num_relations)

    @property
    def modalities(self) -> List[str]:
        r"""The feature modalities, in order."""
        return list(getattr(self._data, 'modalities', None) or [])

    def __repr__(self) -> str:
        data = self._data
        store = data[REL]
        sizes = '/'.join(str(int(store[split_key(s)].sum())) for s in SPLITS)
        N = self.num_entities
        mods = ', '.join(f'{m}({x.size(1)}d, {int(mask.sum())}/{N})'
                         for m, (x, mask) in modality_features(data).items())
        return (f'{self.__class__.__name__}(entities={N}, relations={self.num_relations}, '
                f'train/val/test={sizes}, modalities=[{mods}])')
