import hashlib
import os
import os.path as osp
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from torch_mmkg.data import (ENTITY, add_clean_val_split, build_mmkg, get_modalities,
                             load_tensor_file, split_issues, split_report, validate_mmkg,
                             warn_split_issues)
from torch_mmkg.data.io import as_feature_matrix, find_file
from torch_mmkg.data.serialization import UnsafeFileError, atomic_torch_save, safe_load
from torch_mmkg.datasets.download import RawFile, ensure
from torch_mmkg.datasets.in_memory import CACHE_FORMAT, SafeInMemoryDataset

Features = Dict[str, Tuple[Tensor, Tensor]]
AUTHOR_EXTS = ('.pth', '.pt', '.npy')

#: The authors' feature-file suffixes (NATIVE / MoMoK releases) and our modality names.
AUTHOR_SUFFIXES = {
    'visual': 'image',
    'textual': 'text',
    'numeric': 'numeric',
    'audio': 'audio',
    'video': 'video',
}


def _short_hash(parts: Sequence[str]) -> str:
    return hashlib.sha1('\x00'.join(parts).encode('utf-8')).hexdigest()[:10]


class MMKGDataset(SafeInMemoryDataset):
    r"""Base class of the multi-modal KG datasets of :mod:`torch_mmkg`.

    A subclass declares its pinned raw files (:meth:`raw_files`), reads the structure
    (:meth:`read_structure`) and builds the modalities that its public raw files allow
    (:meth:`build_features`). The base class downloads (see :mod:`torch_mmkg.datasets.download`
    for the offline mirror), loads the authors' released feature files when the user has put them
    next to the data, validates the graph, adds the cleaned validation split, caches the result
    in ``processed/``, and reports split hygiene on every load.

    Args:
        root (str): Root directory; raw files go to ``root/raw``, the cache to
            ``root/processed``. The authors' feature files (e.g. ``DB15K-visual.pth``) are looked
            for in ``root`` and ``root/raw``.
        text_encoder (str or TextEncoder, optional): How text becomes features.
            :obj:`"auto"` uses the offline all-MiniLM-L6-v2 encoder of the :obj:`text` extra when
            installed (otherwise the text modality is left out, with a warning); :obj:`None`
            leaves text out; any other string is a local sentence-transformers model path.
            (default: :obj:`"auto"`)
        feature_source (str, optional): :obj:`"auto"` (the authors' feature file of a modality
            when present, our built features otherwise), :obj:`"built"` (ignore the authors'
            files) or :obj:`"authors"` (only the authors' files; error if there are none).
            (default: :obj:`"auto"`)
        transform (callable, optional): A transform applied on every access.
            (default: :obj:`None`)
        pre_transform (callable, optional): A transform applied before saving.
            (default: :obj:`None`)
        force_reload (bool, optional): Re-process the dataset. (default: :obj:`False`)
        log (bool, optional): Print progress. (default: :obj:`True`)
    """
    #: Name of the authors' feature files (``<author_name>-visual.pth`` ...).
    author_name: str = ''
    #: Whether text is only built when the user names an encoder explicitly.
    text_needs_explicit_encoder: bool = False
    #: The modalities of the authors' released feature files.
    author_modalities: Tuple[str, ...] = ()

    def __init__(
        self,
        root: str,
        text_encoder: Union[str, object, None] = 'auto',
        feature_source: str = 'auto',
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
        log: bool = True,
    ):
        if feature_source not in ('auto', 'built', 'authors'):
            raise ValueError(f"feature_source must be 'auto', 'built' or 'authors', got "
                             f"{feature_source!r}")
        self.feature_source = feature_source
        self._log = log
        self._root = root
        self._encoder = self._resolve_encoder(text_encoder)
        self.process_seconds: Optional[float] = None
        self._raw_verified = False
        t0 = time.perf_counter()
        super().__init__(root, transform, pre_transform, log=log, force_reload=force_reload)
        self.load(self.processed_paths[0], data_cls=HeteroData)
        self.load_seconds = time.perf_counter() - t0
        data = self._data
        self.split_report = split_report(data)
        warn_split_issues(self.split_report, self.__class__.__name__, stacklevel=2)

    # -- what subclasses provide ---------------------------------------------------------------
    def raw_files(self) -> List[RawFile]:
        raise NotImplementedError

    def read_structure(self) -> dict:
        r"""Returns the keyword arguments of :func:`torch_mmkg.data.build_mmkg` that describe
        the structure: :obj:`num_entities`, :obj:`num_relations`, :obj:`triples`,
        :obj:`entity_names`, :obj:`relation_names`."""
        raise NotImplementedError

    def build_features(self, structure: dict) -> Features:
        r"""Builds ``{modality: (features, mask)}`` from the public raw files."""
        return {}

    def entity_texts(self, structure: dict) -> Optional[List[Optional[str]]]:
        r"""The text of each entity (:obj:`None` where it has none), or :obj:`None` if the
        dataset has no text."""
        return None

    def feature_tag(self) -> str:
        r"""Extra options that change the built features (part of the cache file name)."""
        return ''

    # -- PyG dataset plumbing ------------------------------------------------------------------
    @property
    def raw_dir(self) -> str:
        return osp.join(self.root, 'raw')

    @property
    def processed_dir(self) -> str:
        return osp.join(self.root, 'processed')

    @property
    def raw_file_names(self) -> List[str]:
        return [f.local_name for f in self.raw_files()]

    @property
    def processed_file_names(self) -> List[str]:
        parts = [CACHE_FORMAT, self.feature_source, self.feature_tag(),
                 self._encoder.name if self._encoder is not None else 'no-text']
        for m, path in sorted(self.author_feature_files().items()):
            st = os.stat(path)
            parts += [m, osp.basename(path), str(st.st_size), str(int(st.st_mtime))]
        # The pins of the raw files: a cache is only reused if it was built from raw files
        # verified against the same pins (never from the unverified files of older versions).
        parts += [f'{f.rel_path}>{f.local_name}@{f.sha256}:{f.size}' for f in self.raw_files()]
        return [f'data_{_short_hash(parts)}.pt']

    def download(self):
        r"""Puts every raw file into ``raw/``, verified against its pin: a file already there
        that does not match is reported with a warning, removed and fetched again (see
        :func:`torch_mmkg.datasets.download.ensure`)."""
        for f in self.raw_files():
            ensure(f, self.raw_dir, log=self._log)
        self._raw_verified = True

    def raw(self, name: str) -> str:
        r"""Local path of the raw file called :obj:`name`."""
        return osp.join(self.raw_dir, name)

    # -- text ----------------------------------------------------------------------------------
    def _resolve_encoder(self, text_encoder):
        if text_encoder is None:
            return None
        from torch_mmkg.datasets.features.text import TextEncoder
        if isinstance(text_encoder, str) and text_encoder == 'auto':
            if self.text_needs_explicit_encoder:
                return None
            if not TextEncoder.available():
                warnings.warn(f"{self.__class__.__name__}: the text modality is left out "
                              f"because no sentence encoder is installed (pip install "
                              f"'torch_mmkg[text]')", stacklevel=3)
                return None
            return TextEncoder('auto', progress=self._log)
        if isinstance(text_encoder, str):
            return TextEncoder(text_encoder, progress=self._log)
        if not (hasattr(text_encoder, 'encode') and hasattr(text_encoder, 'name')):
            raise ValueError("text_encoder must be 'auto', None, a model path, or an object "
                             "with .encode(texts) and .name")
        return text_encoder

    def _text_features(self, texts: List[Optional[str]]) -> Tuple[Tensor, Tensor]:
        r"""Encodes :obj:`texts`, cached in ``processed/`` by encoder and text content."""
        from torch_mmkg.datasets.features.text import encode_entity_texts
        key = _short_hash([self._encoder.name] + [t or '' for t in texts])
        path = osp.join(self.processed_dir, f'text_{self._encoder.name}_{key}.pt')
        if osp.exists(path):
            cached = safe_load(path, 'text feature cache')
            if not (isinstance(cached, dict) and isinstance(cached.get('x'), Tensor)
                    and isinstance(cached.get('mask'), Tensor)):
                raise UnsafeFileError(f"{path}: not a text feature cache (expected a dict with "
                                      f"tensors 'x' and 'mask'); delete it to rebuild it")
            return cached['x'], cached['mask']
        x, mask = encode_entity_texts(texts, self._encoder)
        os.makedirs(self.processed_dir, exist_ok=True)
        atomic_torch_save({'x': x, 'mask': mask}, path)
        return x, mask

    # -- the authors' feature files ------------------------------------------------------------
    def author_feature_files(self) -> Dict[str, str]:
        r"""``{modality: path}`` of the authors' feature files present in ``root`` or
        ``root/raw`` (``<author_name>-visual.pth`` → image, ``-textual`` → text, ``-numeric``,
        ``-audio``, ``-video``)."""
        if self.feature_source == 'built' or not self.author_name:
            return {}
        out = {}
        for suffix, modality in AUTHOR_SUFFIXES.items():
            for folder in (self._root, osp.join(self._root, 'raw')):
                path = find_file(folder, f'{self.author_name}-{suffix}', AUTHOR_EXTS)
                if path is not None:
                    out[modality] = path
                    break
        return out

    def _load_author_features(self, num_entities: int) -> Features:
        out = {}
        for modality, path in self.author_feature_files().items():
            x = as_feature_matrix(load_tensor_file(path), path, num_rows=num_entities)
            stem = osp.splitext(osp.basename(path))[0]
            mask_path = find_file(osp.dirname(path), stem + '-mask', AUTHOR_EXTS)
            if mask_path is not None:
                mask = load_tensor_file(mask_path)
                if mask.dtype != torch.bool or mask.shape != (num_entities, ):
                    raise ValueError(f"{mask_path}: expected a bool mask of shape "
                                     f"[{num_entities}], got {mask.dtype} "
                                     f"{tuple(mask.shape)}")
            else:
                mask = (x != 0).any(dim=1)
            out[modality] = (x, mask)
        return out

    def modality_hint(self, modalities: Sequence[str]) -> str:
        r"""What a user must supply for this dataset to have :obj:`modalities` that it lacks
        (those it cannot build from its public raw files): the authors' feature files and
        where to put them, or the text encoder to name. One sentence, for error messages."""
        name = self.__class__.__name__
        by_modality = {m: suffix for suffix, m in AUTHOR_SUFFIXES.items()}
        files = [f'{self.author_name}-{by_modality[m]}.pth' for m in modalities
                 if m in by_modality]
        ways = []
        if files and self.author_name:
            data = getattr(self, '_data', None)
            shape = f'[{data[ENTITY].num_nodes}, F]' if data is not None else '[N, F]'
            way = (f"put the authors' feature files {', '.join(files)} ({shape} tensors or "
                   f"arrays; the authors release them on a cloud drive linked from their "
                   f"repository) into {self._root} or {osp.join(self._root, 'raw')}")
            if self.feature_source == 'built':
                way += " and leave out feature_source='built'"
            ways.append(way)
        if ('text' in modalities and self.text_needs_explicit_encoder
                and self._encoder is None):
            ways.append("build 'text' from the entity names with the dataset argument "
                        "text_encoder=<path to a local multilingual sentence-transformers "
                        "model> (dataset_args: {text_encoder: ...} in a config)")
        if not ways:
            return (f"{name} cannot provide {list(modalities)}: give the graph these "
                    f"modalities (e.g. with a pre_transform) or choose others")
        return f"To give {name} {list(modalities)}: " + '; or '.join(ways) + '.'

    # -- processing ----------------------------------------------------------------------------
    def process(self):
        t0 = time.perf_counter()
        if not getattr(self, '_raw_verified', False):
            self.download()        # PyG skips download() when all raw files exist: verify them
        structure = self.read_structure()
        N = structure['num_entities']
        authors = self._load_author_features(N)
        if self.feature_source == 'authors' and not authors:
            raise FileNotFoundError(
                f"feature_source='authors' but none of {self.author_name}-"
                f"{{{','.join(AUTHOR_SUFFIXES)}}}.pth is in {self._root} or its raw/ folder")
        features: Features = {}
        if self.feature_source != 'authors':
            features.update(self.build_features(structure))
            if self._encoder is not None and 'text' not in authors:
                texts = self.entity_texts(structure)
                if texts is not None:
                    features['text'] = self._text_features(texts)
        features.update(authors)
        data = build_mmkg(
            features={m: x for m, (x, _) in features.items()},
            masks={m: mask for m, (_, mask) in features.items()},
            **structure,
        )
        data.feature_sources = {m: ('authors' if m in authors else 'built') for m in features}
        add_clean_val_split(data, warn=False)
        if self.pre_transform is not None:
            data = self.pre_transform(data)
            validate_mmkg(data)
        self.save([data], self.processed_paths[0])
        self.process_seconds = time.perf_counter() - t0

    # -- reporting -----------------------------------------------------------------------------
    @property
    def modalities(self) -> List[str]:
        return get_modalities(self._data)

    def modality_stats(self) -> Dict[str, Tuple[int, int]]:
        r"""``{modality: (feature dimension, number of entities that have it)}``."""
        ent = self._data[ENTITY]
        return {m: (int(ent[f'x_{m}'].size(1)), int(ent[f'mask_{m}'].sum()))
                for m in self.modalities}

    def summary(self) -> str:
        r"""A multi-line description: sizes, modalities with coverage, and split hygiene."""
        d = self._data
        rep = self.split_report
        lines = [f'{self.__class__.__name__}: {d[ENTITY].num_nodes} entities, '
                 f'{d.num_relations} relations, train/val/test = {rep["rows"]["train"]}/'
                 f'{rep["rows"]["val"]}/{rep["rows"]["test"]} '
                 f'(val_clean {rep["val_clean"]})']
        for m, (dim, count) in self.modality_stats().items():
            src = getattr(d, 'feature_sources', {}).get(m, 'built')
            lines.append(f'  {m:<8} {dim:>5}-d  {count}/{d[ENTITY].num_nodes} entities '
                         f'({src})')
        if not self.modalities:
            lines.append('  (structure only)')
        for issue in split_issues(rep):
            lines.append(f'  split: {issue}')
        return '\n'.join(lines)

    def __repr__(self) -> str:
        d = self._data
        mods = ', '.join(f'{m}({dim}d, {count}/{d[ENTITY].num_nodes})'
                         for m, (dim, count) in self.modality_stats().items())
        rows = self.split_report['rows']
        return (f'{self.__class__.__name__}(entities={d[ENTITY].num_nodes}, '
                f'relations={d.num_relations}, train/val/test={rows["train"]}/{rows["val"]}/'
                f'{rows["test"]}, modalities=[{mods}])')
