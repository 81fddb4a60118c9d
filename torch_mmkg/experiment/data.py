r"""The graph of an experiment config: a registered dataset or the user's own folder, raw
entity texts encoded offline, a list of transforms applied in order, and a fingerprint that
tells whether a saved run was trained on the same data.

.. code-block:: yaml

    dataset: path/to/my_kg          # a registered name (any case) or an MMKGFolder folder
    entity_texts:                   # optional: raw texts, encoded once and cached
      path: path/to/texts.tsv       # entity_name<TAB>text per line, or a JSON {name: text}
      modality: text                # added, or replacing the graph's modality of that name
      encoder: auto                 # TextEncoder: 'auto' (all-MiniLM-L6-v2) or a model folder
      batch_size: 128
    transforms:                     # optional: applied in order, after the entity texts
      - {name: DropModality, rate: 0.4, modalities: [image], seed: 0}
      - {name: CompleteModality, target: image, completer: {name: translator, epochs: 50}}
      - {name: CMoA, out_channels: 128, epochs: 20}
      - SparsifyTriples          # a bare name: default arguments (rate is required here)

:func:`build_data` loads the dataset, adds the entity texts (:func:`add_entity_texts`) and
applies the transforms (:func:`apply_transforms`). Both sections are checked
(:func:`resolve_transforms`, :func:`resolve_entity_texts`) before the dataset is loaded or
anything is encoded or trained, and their canonical forms are what a run records, so that
:func:`~torch_mmkg.experiment.load_run` rebuilds exactly the same graph.
"""
import copy
import difflib
import hashlib
import inspect
import json
import logging
import os
import os.path as osp
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from torch_mmkg.data.mmkg import (_MODALITY_RE, ENTITY, REL, SPLITS, feature_key,
                                  get_modalities, mask_key, split_key, validate_mmkg)

__all__ = ['build_data', 'data_fingerprint', 'fingerprint_mismatch', 'dataset_name',
           'resolve_transforms', 'apply_transforms', 'build_transform', 'resolve_entity_texts',
           'read_entity_texts', 'add_entity_texts', 'resolve_data_config']

log = logging.getLogger(__name__)


def _registered(name: str) -> Optional[str]:
    from torch_mmkg.datasets import DATASETS
    from torch_mmkg.registry import normalize_name
    for key in DATASETS:
        if normalize_name(key) == normalize_name(name):
            return key
    return None


def dataset_name(name: Any) -> str:
    r"""The registered spelling of a dataset name (any case, :obj:`'-'`/:obj:`'_'` ignored:
    :obj:`"mkgw"` is :obj:`"MKG-W"`), or :obj:`name` itself if it is an existing folder.

    Raises:
        ValueError: for neither, listing the registered names.
    """
    from torch_mmkg.datasets import DATASETS
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset must be a registered name or a folder, got {name!r}")
    key = _registered(name)
    if key is not None:
        return key
    if osp.isdir(name):
        return name
    raise ValueError(f"unknown dataset {name!r}: neither a registered dataset "
                     f"({', '.join(sorted(DATASETS))}) nor an existing folder (an MMKGFolder)")


def build_data(cfg: Dict[str, Any], root: str = 'data', *,
               text_encoder: Any = None) -> Tuple[Any, HeteroData]:
    r"""The dataset and graph of a config.

    :obj:`cfg['dataset']` is a registered name (processed under :obj:`root/<name>`) or the
    path of a folder read by :class:`~torch_mmkg.datasets.MMKGFolder`;
    :obj:`cfg['dataset_args']` are the dataset's constructor keywords. Then
    :obj:`cfg['entity_texts']` (optional) adds the encoded entity texts
    (:func:`add_entity_texts`, cached under the dataset's :obj:`processed_dir`), and
    :obj:`cfg['transforms']` (optional) are applied in order (:func:`apply_transforms`).
    Both sections are validated before the dataset is loaded.

    Args:
        cfg (Dict[str, Any]): The config.
        root (str, optional): Where registered datasets are processed. (default:
            :obj:`"data"`)
        text_encoder (optional): An encoder object (:obj:`encode(list_of_str)` and
            :obj:`dim`) used instead of :class:`~torch_mmkg.datasets.features.TextEncoder`
            for the entity texts (for tests, or an encoder already in memory).
            (default: :obj:`None`)

    Returns:
        (dataset, HeteroData): The dataset object and its graph, with the entity texts and
        the transforms applied (:obj:`dataset[0]` stays the graph as loaded).

    Raises:
        ValueError: for an unknown dataset or bad :obj:`dataset_args`, a bad entity-text
            section or file, or a bad transform, naming them.
    """
    from torch_mmkg.datasets import DATASETS, MMKGFolder
    transforms = resolve_transforms(cfg.get('transforms'))
    texts = resolve_entity_texts(cfg.get('entity_texts'))
    if texts is not None and not osp.isfile(texts['path']):
        raise ValueError(f"entity_texts.path: no such file {texts['path']!r}")
    name = dataset_name(cfg.get('dataset'))
    args = dict(cfg.get('dataset_args') or {})
    try:
        if name in DATASETS:
            dataset = DATASETS[name](osp.join(root, name), **args)
        else:
            dataset = MMKGFolder(name, **args)
    except TypeError as e:
        raise ValueError(f"bad dataset_args for {name}: {e}") from None
    data = dataset[0]
    if texts is not None:
        cache_dir = texts['cache_dir']
        if cache_dir is None and texts['cache']:
            base = getattr(dataset, 'processed_dir', None)
            cache_dir = osp.join(base if isinstance(base, str) else osp.join(root, name),
                                 'entity_texts')
        data = add_entity_texts(data, texts, cache_dir=cache_dir, encoder=text_encoder)
    if transforms:
        data = apply_transforms(data, transforms)
    return dataset, data


def resolve_data_config(cfg: Dict[str, Any]) -> Dict[str, Any]:
    r"""A copy of :obj:`cfg` whose :obj:`transforms` and :obj:`entity_texts` sections are in
    their canonical form (:func:`resolve_transforms`, :func:`resolve_entity_texts`; empty
    sections removed): what a run directory records. Nothing is loaded."""
    out = dict(cfg)
    for key, resolve in (('transforms', resolve_transforms),
                         ('entity_texts', resolve_entity_texts)):
        value = resolve(cfg.get(key))
        if value:
            out[key] = value
        else:
            out.pop(key, None)
    return out


# Transforms ##################################################################################

def _transforms_registry():
    from torch_mmkg.transforms import TRANSFORMS
    return TRANSFORMS


def _completers_registry():
    from torch_mmkg.completion import COMPLETERS
    return COMPLETERS


#: Keyword arguments of transforms that name another component: (transform, argument) ->
#: the registry the component's name is looked up in.
_NESTED: Dict[Tuple[str, str], Callable[[], Any]] = {
    ('CompleteModality', 'completer'): _completers_registry,
}


def _plain(value: Any) -> Any:
    r"""Tuples as lists, recursively, so that a canonical entry survives a YAML/JSON round
    trip unchanged."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _split_entry(entry: Any, where: str, kind: str) -> Tuple[str, Dict[str, Any]]:
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping):
        kwargs = dict(entry)
        if 'name' not in kwargs:
            raise ValueError(f"{where}: a {kind} given as a mapping needs a 'name' key, got "
                             f"{sorted(map(str, kwargs))}")
        name = kwargs.pop('name')
        if not isinstance(name, str):
            raise ValueError(f"{where}: the {kind} name must be a string, got "
                             f"{type(name).__name__} {name!r}")
        bad = [k for k in kwargs if not isinstance(k, str)]
        if bad:
            raise ValueError(f"{where}: argument names must be strings, got {bad!r}")
        return name, kwargs
    raise ValueError(f"{where} must be a {kind} name or a mapping {{name: ..., <arguments>}}, "
                     f"got {type(entry).__name__} {entry!r}")


def _bind(factory: Callable, canonical: str, kwargs: Dict[str, Any],
          where: str) -> Dict[str, Any]:
    r"""The keyword arguments of :obj:`factory` with every default filled in, or a
    :class:`ValueError` naming an unknown or missing argument."""
    sig = inspect.signature(factory)
    params = {n: p for n, p in sig.parameters.items()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    var_kw = next((n for n, p in sig.parameters.items() if p.kind == p.VAR_KEYWORD), None)
    if var_kw is None:
        unknown = [k for k in kwargs if k not in params]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(params), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ''
            raise ValueError(f"{where} ({canonical}): unknown argument"
                             f"{'s' if len(unknown) > 1 else ''} {unknown}; its arguments "
                             f"are {list(params)}{hint}")
    missing = [n for n, p in params.items() if p.default is p.empty and n not in kwargs]
    if missing:
        raise ValueError(f"{where} ({canonical}): missing required argument"
                         f"{'s' if len(missing) > 1 else ''} {missing}")
    out = {n: kwargs[n] if n in kwargs else p.default for n, p in params.items()}
    out.update({k: v for k, v in kwargs.items() if k not in params})  # into **kwargs
    return out


def _resolve_component(entry: Any, registry, where: str,
                       default_seed: Optional[int] = None) -> Dict[str, Any]:
    name, kwargs = _split_entry(entry, where, registry.kind)
    try:
        canonical = registry.canonical(name)
    except KeyError as e:  # UnknownComponentError
        raise ValueError(f"{where}: {e}") from None
    factory = registry[canonical]
    if (default_seed is not None and kwargs.get('seed') is None
            and 'seed' in inspect.signature(factory).parameters):
        kwargs['seed'] = default_seed
    return {'name': canonical, **_plain(_bind(factory, canonical, kwargs, where))}


def resolve_transforms(entries: Optional[Sequence[Any]]) -> List[Dict[str, Any]]:
    r"""Checks a :obj:`transforms:` list and returns its canonical form, without touching any
    graph.

    Each entry is a transform name or a mapping :obj:`{name: ..., <arguments>}`. Names are
    looked up case-insensitively in :data:`torch_mmkg.transforms.TRANSFORMS`
    (:obj:`"dropmodality"`, :obj:`"drop_modality"`, ...; :obj:`"CMoA"` is
    :class:`~torch_mmkg.transforms.AlignModalities`, :obj:`"LvMC"`
    :class:`~torch_mmkg.transforms.CompleteModality`). The :obj:`completer` of
    :class:`~torch_mmkg.transforms.CompleteModality` is a name or mapping too, looked up in
    :data:`torch_mmkg.completion.COMPLETERS` (:obj:`"translator"`, :obj:`"diffusion"`).

    The canonical entry is :obj:`{'name': <registered name>, **arguments}` with **every**
    argument, defaults included (so that a run keeps meaning the same if a default changes).

    **Seeds.** A run is rebuilt by :func:`~torch_mmkg.experiment.load_run` and checked against
    a fingerprint of its graph, so every transform must be deterministic. A transform that
    draws random numbers has a :obj:`seed` argument; where an entry leaves it out (or sets it
    to :obj:`null`) it gets **its position in the list** (:obj:`0` for the first entry,
    ...), recorded explicitly in the canonical entry: two random transforms of one list never
    share a seed by accident, and the seed of a drop does not depend on the training seed.
    Give :obj:`seed:` to choose another draw. Completers carry their own :obj:`seed`
    (default :obj:`0`).

    Resolving is idempotent: a canonical list resolves to itself.

    Args:
        entries (Sequence, optional): The list (:obj:`None` is empty).

    Returns:
        List[dict]: The canonical entries.

    Raises:
        ValueError: naming the entry (:obj:`transforms[i]`) and the transform, for an entry
            that is neither a name nor a mapping with a :obj:`name`, an unknown name (with the
            closest registered one), an unknown or missing argument, or a bad value (the
            transform's own check, run by constructing it: this is cheap, and heavy work such
            as fitting or loading models only happens when it is applied).
    """
    if entries is None:
        return []
    if isinstance(entries, (str, Mapping)) or not isinstance(entries, Sequence):
        raise ValueError(f"transforms must be a list of transform names or mappings, got "
                         f"{type(entries).__name__} {entries!r}")
    registry = _transforms_registry()
    out = []
    for i, entry in enumerate(entries):
        where = f"transforms[{i}]"
        resolved = _resolve_component(entry, registry, where, default_seed=i)
        canonical = resolved['name']
        if 'seed' in resolved:
            seed = resolved['seed']
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ValueError(f"{where} ({canonical}): 'seed' must be an integer, got "
                                 f"{seed!r}")
        for (owner, arg), nested in _NESTED.items():
            value = resolved.get(arg) if owner == canonical else None
            if isinstance(value, (str, Mapping)):
                resolved[arg] = _resolve_component(value, nested(), f"{where}.{arg}")
        build_transform(resolved, where, check=True)
        out.append(resolved)
    return out


def _build_nested(value: Any, registry, where: str, check: bool) -> Any:
    if not isinstance(value, Mapping):
        return value  # a ready-made object (Python API)
    kwargs = dict(value)
    name = kwargs.pop('name')
    factory = registry[name]
    if 'torch_dtype' in kwargs and isinstance(kwargs['torch_dtype'], str):
        dtype = getattr(torch, kwargs['torch_dtype'].replace('torch.', ''), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{where}: unknown torch_dtype {kwargs['torch_dtype']!r}")
        kwargs['torch_dtype'] = dtype
    if check and not isinstance(factory, type):
        return None  # e.g. a from_pretrained loader: checked by its signature only
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where} ({name}): {e}") from None


def build_transform(entry: Dict[str, Any], where: str = 'transform', check: bool = False):
    r"""The transform object of a canonical entry (see :func:`resolve_transforms`).

    Args:
        entry (dict): A canonical entry :obj:`{'name': ..., **arguments}`.
        where (str, optional): How errors name the entry. (default: :obj:`"transform"`)
        check (bool, optional): Only validate: nested components that would load models
            (a :obj:`"diffusion"` completer) are not built. (default: :obj:`False`)

    Raises:
        ValueError: for a bad argument value, naming :obj:`where` and the transform.
    """
    registry = _transforms_registry()
    kwargs = dict(entry)
    name = kwargs.pop('name')
    cls = registry[name]
    for (owner, arg), nested in _NESTED.items():
        if owner == name and arg in kwargs:
            built = _build_nested(kwargs[arg], nested(), f"{where}.{arg}", check)
            if built is None and check:
                from torch_mmkg.completion import ModalityCompleter
                built = ModalityCompleter()  # a placeholder to check the other arguments
            kwargs[arg] = built
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where} ({name}): {e}") from None


def apply_transforms(data: HeteroData, entries: Optional[Sequence[Any]]) -> HeteroData:
    r"""Applies a :obj:`transforms:` list to :obj:`data`, in order.

    The entries are resolved first (:func:`resolve_transforms`: every entry is checked before
    the first one runs, and random transforms without a seed get their position in the list),
    then each is built and applied to the output of the previous one. The transforms run
    inside :func:`torch.random.fork_rng`, so the global random state is the same afterwards
    (fitting a completer or an alignment does not shift the seeds of model initialisation).
    The result is checked with :func:`~torch_mmkg.data.validate_mmkg`; :obj:`data` itself is
    not modified.

    Args:
        data (HeteroData): A graph in the :mod:`torch_mmkg` layout.
        entries (Sequence, optional): Transform names or mappings (see
            :func:`resolve_transforms`).

    Returns:
        HeteroData: The transformed graph.

    Raises:
        ValueError: for a bad entry, or a transform that fails on this graph (an unknown
            modality, ...), naming the entry (:obj:`transforms[i]`) and the transform.
    """
    resolved = resolve_transforms(entries)
    out = copy.copy(data)
    with torch.random.fork_rng(devices=[]):
        for i, entry in enumerate(resolved):
            where = f"transforms[{i}]"
            transform = build_transform(entry, where)
            try:
                result = transform(out)
            except ValueError as e:
                raise ValueError(f"{where} ({entry['name']}): {e}") from e
            out = out if result is None else result
            log.info('%s: applied %r', where, transform)
    try:
        return validate_mmkg(out)
    except ValueError as e:
        raise ValueError(f"the graph after the transforms is not valid: {e}") from e


# Entity texts ################################################################################

ENTITY_TEXT_FORMATS = ('auto', 'tsv', 'json')

#: The keys of the :obj:`entity_texts:` section and their defaults (:obj:`path` is required).
ENTITY_TEXT_DEFAULTS: Dict[str, Any] = {
    'path': None, 'modality': 'text', 'encoder': 'auto', 'batch_size': 128, 'device': None,
    'format': 'auto', 'cache': True, 'cache_dir': None,
}

#: Bumped when what the entity-text cache holds changes, so that old files are not reused.
_TEXT_CACHE_VERSION = 1


def resolve_entity_texts(spec: Optional[Mapping]) -> Optional[Dict[str, Any]]:
    r"""Checks an :obj:`entity_texts:` section and returns it with every key (see
    :data:`ENTITY_TEXT_DEFAULTS`), without reading the file; :obj:`None` for an empty one.

    Keys: :obj:`path` (required; a TSV file of :obj:`entity_name<TAB>text` lines, or a JSON
    object :obj:`{"entity_name": "text"}`), :obj:`modality` (the modality to add or replace,
    default :obj:`"text"`), :obj:`encoder` (:class:`~torch_mmkg.datasets.features.TextEncoder`'s
    :obj:`model`: :obj:`"auto"` for all-MiniLM-L6-v2 offline, or a local model folder),
    :obj:`batch_size` (default :obj:`128`), :obj:`device` (default :obj:`None`), :obj:`format`
    (:obj:`"auto"` reads :obj:`.json` files as JSON and others as TSV; :obj:`"tsv"`,
    :obj:`"json"`), :obj:`cache` (default :obj:`True`) and :obj:`cache_dir` (default: the
    dataset's :obj:`processed_dir/entity_texts`).

    Raises:
        ValueError: naming the key, for an unknown key (with the closest one), a missing
            :obj:`path` or a bad value.
    """
    if spec is None or (isinstance(spec, Mapping) and not spec):
        return None
    if not isinstance(spec, Mapping):
        raise ValueError(f"entity_texts must be a mapping {{path: FILE, modality: text, ...}}, "
                         f"got {type(spec).__name__} {spec!r}")
    unknown = [k for k in spec if k not in ENTITY_TEXT_DEFAULTS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(ENTITY_TEXT_DEFAULTS), n=1)
        raise ValueError(f"entity_texts: unknown key{'s' if len(unknown) > 1 else ''} "
                         f"{unknown}; expected {list(ENTITY_TEXT_DEFAULTS)}"
                         f"{f'; did you mean {close[0]!r}?' if close else ''}")
    out = {**ENTITY_TEXT_DEFAULTS, **spec}
    path = out['path']
    if isinstance(path, os.PathLike):
        path = out['path'] = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise ValueError(f"entity_texts.path must be the path of a TSV or JSON file, got "
                         f"{path!r}")
    m = out['modality']
    if not isinstance(m, str) or not _MODALITY_RE.match(m):
        raise ValueError(f"entity_texts.modality must be a lower-case identifier "
                         f"([a-z][a-z0-9_]*), got {m!r}")
    if not isinstance(out['encoder'], str) or not out['encoder']:
        raise ValueError(f"entity_texts.encoder must be 'auto' or a model folder, got "
                         f"{out['encoder']!r}")
    bs = out['batch_size']
    if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
        raise ValueError(f"entity_texts.batch_size must be a positive integer, got {bs!r}")
    if out['device'] is not None and not isinstance(out['device'], str):
        raise ValueError(f"entity_texts.device must be a device name or null, got "
                         f"{out['device']!r}")
    if out['format'] not in ENTITY_TEXT_FORMATS:
        raise ValueError(f"entity_texts.format must be one of {list(ENTITY_TEXT_FORMATS)}, "
                         f"got {out['format']!r}")
    if out['format'] == 'auto':
        out['format'] = 'json' if path.lower().endswith('.json') else 'tsv'
    if not isinstance(out['cache'], bool):
        raise ValueError(f"entity_texts.cache must be true or false, got {out['cache']!r}")
    if out['cache_dir'] is not None and not isinstance(out['cache_dir'], str):
        raise ValueError(f"entity_texts.cache_dir must be a folder or null, got "
                         f"{out['cache_dir']!r}")
    return out


def _parse_entity_texts(raw: bytes, path: str, fmt: str) -> Dict[str, Optional[str]]:
    try:
        text = raw.decode('utf-8-sig')
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from None
    out: Dict[str, Optional[str]] = {}
    if fmt == 'json':
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a JSON object {{\"entity name\": \"text\"}}, "
                             f"got {type(obj).__name__}")
        for name, value in obj.items():
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{path}: the text of {name!r} must be a string or null, got "
                                 f"{type(value).__name__}")
            if not name.strip():
                raise ValueError(f"{path}: an empty entity name")
            if name.strip() in out:
                raise ValueError(f"{path}: entity {name.strip()!r} is given twice")
            out[name.strip()] = value
        return out
    lines: Dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if '\t' not in line:
            raise ValueError(f"{path}:{lineno}: expected 'entity_name<TAB>text', got "
                             f"{line.strip()[:80]!r} (no tab)")
        name, value = line.split('\t', 1)
        name = name.strip()
        if not name:
            raise ValueError(f"{path}:{lineno}: an empty entity name")
        if name in out:
            raise ValueError(f"{path}:{lineno}: entity {name!r} is given twice (first on line "
                             f"{lines[name]})")
        lines[name] = lineno
        out[name] = value
    return out


def read_entity_texts(path: str, format: str = 'auto') -> Dict[str, Optional[str]]:
    r"""Reads an entity-text file into :obj:`{entity name: text or None}`, without running
    code: a TSV file (UTF-8, one :obj:`entity_name<TAB>text` per line; blank lines are
    skipped, the text is everything after the first tab) or a JSON object of strings (or
    :obj:`null`). Names are stripped of surrounding whitespace, as
    :class:`~torch_mmkg.datasets.MMKGFolder` reads them; a blank text means no text.

    Args:
        path (str): The file.
        format (str, optional): :obj:`"tsv"`, :obj:`"json"`, or :obj:`"auto"` (JSON for
            :obj:`.json` files). (default: :obj:`"auto"`)

    Raises:
        ValueError: naming the file and line, for a line without a tab, an empty or
            repeated name, invalid JSON or a value that is not a string.
    """
    if format not in ENTITY_TEXT_FORMATS:
        raise ValueError(f"format must be one of {list(ENTITY_TEXT_FORMATS)}, got {format!r}")
    if format == 'auto':
        format = 'json' if path.lower().endswith('.json') else 'tsv'
    with open(path, 'rb') as f:
        return _parse_entity_texts(f.read(), path, format)


def _match_names(texts: Dict[str, Optional[str]], data: HeteroData,
                 path: str) -> List[Optional[str]]:
    names = data[ENTITY].get('name') if ENTITY in data.node_types else None
    if names is None:
        raise ValueError(f"entity_texts: the graph has no entity names (data['{ENTITY}'].name) "
                         f"to match the names of {path} against")
    index = {str(n).strip(): i for i, n in enumerate(names)}
    unknown = [n for n in texts if n not in index]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(index), n=1)
        raise ValueError(f"{path}: {len(unknown)} of {len(texts)} entity names are not in the "
                         f"graph, e.g. {unknown[:5]}"
                         f"{f' (did you mean {close[0]!r} for {unknown[0]!r}?)' if close else ''}")
    out: List[Optional[str]] = [None] * len(names)
    for name, text in texts.items():
        out[index[name]] = text
    return out


def _encoder_key(spec: Dict[str, Any], encoder: Any) -> str:
    if encoder is None:
        return spec['encoder']
    name = getattr(encoder, 'name', None)
    return name if isinstance(name, str) else (f"{type(encoder).__module__}."
                                               f"{type(encoder).__qualname__}")


def _load_cached(path: str, num_entities: int, mask: Tensor) -> Optional[Tuple[Tensor, Tensor]]:
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # a torn or foreign file: encode again
        log.warning('ignoring the unreadable entity-text cache %s (%s)', path, e)
        return None
    x, m = (obj.get('x'), obj.get('mask')) if isinstance(obj, dict) else (None, None)
    if (not isinstance(x, Tensor) or not isinstance(m, Tensor) or x.dim() != 2
            or x.size(0) != num_entities or not x.is_floating_point()
            or m.dtype != torch.bool or not torch.equal(m, mask)
            or not torch.isfinite(x).all()):
        log.warning('ignoring the entity-text cache %s: it does not match the graph', path)
        return None
    return x, m


def add_entity_texts(data: HeteroData, spec: Mapping, *, cache_dir: Optional[str] = None,
                     encoder: Any = None) -> HeteroData:
    r"""Encodes raw entity texts (see :func:`resolve_entity_texts`) and adds them to a copy of
    :obj:`data` as the modality :obj:`spec['modality']` (replacing it, and the flags of earlier
    transforms on it, if the graph has it).

    The texts are matched to :obj:`data['entity'].name`: a name of the file that is not in
    the graph is an error listing a few; an entity without text (absent from the file, blank or
    :obj:`null`) gets a zero row and **mask** :obj:`False`. The texts are encoded by
    :func:`~torch_mmkg.datasets.features.encode_entity_texts` with
    :class:`~torch_mmkg.datasets.features.TextEncoder` (:obj:`spec['encoder']`, offline), or
    :obj:`encoder`. The raw texts are kept as :obj:`data['entity'].text` (one string or
    :obj:`None` per entity), e.g. for the prompts of
    :class:`~torch_mmkg.completion.DiffusionImageCompleter`.

    The encoded :obj:`[N, F]` matrix and mask are cached in :obj:`cache_dir` as
    :obj:`entity_texts_<modality>_<key>.pt`, where the key hashes the file's bytes, the
    encoder's name (:obj:`spec['encoder']`, or the :obj:`name` of an :obj:`encoder` given) and
    the graph's entity names, so that a rebuilt run (:func:`~torch_mmkg.experiment.load_run`)
    does not encode again. The cache holds tensors only and is read with
    :obj:`weights_only=True` (no code runs); an unreadable or mismatching cache is encoded
    again. (With :obj:`encoder` a model folder, changing the model in place keeps the key:
    delete the cache then.)

    Args:
        data (HeteroData): A graph with entity names.
        spec (Mapping): The :obj:`entity_texts:` section.
        cache_dir (str, optional): Where to cache; :obj:`None` for no cache (the
            section's :obj:`cache_dir` wins if set, and :obj:`cache: false` disables it).
            (default: :obj:`None`)
        encoder (optional): An object with :obj:`encode(list_of_str)` and :obj:`dim` used
            instead of :class:`~torch_mmkg.datasets.features.TextEncoder`.
            (default: :obj:`None`)

    Returns:
        HeteroData: A copy of :obj:`data` with the modality, validated.

    Raises:
        ValueError: for a bad section or file, names not in the graph, or a graph without
            entity names.
    """
    from torch_mmkg.datasets.features.text import TextEncoder, encode_entity_texts
    spec = resolve_entity_texts(spec)
    if spec is None:
        return data
    path, m = spec['path'], spec['modality']
    if not osp.isfile(path):
        raise ValueError(f"entity_texts.path: no such file {path!r}")
    with open(path, 'rb') as f:
        raw = f.read()
    texts = _match_names(_parse_entity_texts(raw, path, spec['format']), data, path)
    num_entities = len(texts)
    mask = torch.tensor([bool(t and t.strip()) for t in texts], dtype=torch.bool)

    cache_dir = spec['cache_dir'] if spec['cache_dir'] is not None else cache_dir
    cache_file = None
    if spec['cache'] and cache_dir is not None:
        h = hashlib.sha256()
        h.update(f'v{_TEXT_CACHE_VERSION}|{_encoder_key(spec, encoder)}|'.encode('utf-8'))
        h.update(hashlib.sha256(raw).hexdigest().encode('ascii'))
        h.update(json.dumps([str(n) for n in data[ENTITY].name]).encode('utf-8'))
        cache_file = osp.join(cache_dir, f'entity_texts_{m}_{h.hexdigest()[:16]}.pt')
    cached = (_load_cached(cache_file, num_entities, mask)
              if cache_file is not None and osp.isfile(cache_file) else None)
    if cached is not None:
        x, mask = cached
        log.info('entity texts of %s: read the encoded %s from %s', path, m, cache_file)
    else:
        if encoder is None:
            encoder = TextEncoder(spec['encoder'], device=spec['device'],
                                  batch_size=spec['batch_size'], progress=False)
        x, mask = encode_entity_texts(texts, encoder)
        log.info('entity texts of %s: encoded %d of %d entities', path, int(mask.sum()),
                 num_entities)
        if cache_file is not None:
            from torch_mmkg.data.serialization import atomic_torch_save
            os.makedirs(cache_dir, exist_ok=True)
            atomic_torch_save({'x': x, 'mask': mask, 'version': _TEXT_CACHE_VERSION,
                               'encoder': _encoder_key(spec, encoder)}, cache_file)

    out = copy.copy(data)
    ent = out[ENTITY]
    for key in (f'completed_{m}', f'filled_{m}', f'dropped_{m}', f'noised_{m}'):
        if key in ent:  # flags of the modality being replaced
            del ent[key]
    ent[feature_key(m)] = x
    ent[mask_key(m)] = mask
    ent.text = list(texts)
    modalities = get_modalities(out)
    if m not in modalities:
        out.modalities = modalities + [m]
    return validate_mmkg(out)


def _digest(*tensors: Tensor) -> str:
    from torch_mmkg.data.feature_store import is_disk_features
    h = hashlib.sha256()
    for t in tensors:
        if is_disk_features(t):  # streamed: the digest of the same values in memory
            t.update_hash(h)
            continue
        t = t.detach().contiguous().cpu()
        h.update(f'{t.dtype}|{tuple(t.shape)}|'.encode('utf-8'))
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]


def data_fingerprint(data: HeteroData) -> Dict[str, Any]:
    r"""A digest of everything a trained model depends on in :obj:`data`: the sizes, the
    triples of each split, and the features and masks of each modality (the first 16 hex
    digits of SHA-256 over dtype, shape and bytes). Two graphs with the same fingerprint hold
    the same values."""
    store = data[REL]
    out: Dict[str, Any] = {'num_entities': int(data[ENTITY].num_nodes),
                           'num_relations': int(data.num_relations),
                           'triples': _digest(store.edge_index, store.edge_type), 'splits': {}}
    for split in SPLITS + ('val_clean', ):
        key = split_key(split)
        if key in store:
            out['splits'][split] = _digest(store[key])
    out['modalities'] = {m: _digest(data[ENTITY][feature_key(m)], data[ENTITY][mask_key(m)])
                         for m in get_modalities(data)}
    return out


def fingerprint_mismatch(saved: Dict[str, Any], now: Dict[str, Any]) -> str:
    r"""What differs between two :func:`data_fingerprint` results, in words (empty if
    nothing)."""
    diffs = []
    for key in ('num_entities', 'num_relations', 'triples'):
        if saved.get(key) != now.get(key):
            diffs.append(f"{key}: {saved.get(key)} then, {now.get(key)} now")
    for group in ('splits', 'modalities'):
        a, b = saved.get(group) or {}, now.get(group) or {}
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                what = ('absent' if k not in b else 'added' if k not in a else 'changed')
                diffs.append(f"{'split' if group == 'splits' else 'modality'} {k!r} {what}")
    return '; '.join(diffs)
