r"""The multi-modal knowledge graph layout used throughout :mod:`torch_mmkg`.

A multi-modal KG is one :class:`torch_geometric.data.HeteroData` object:

.. code-block:: text

    HeteroData(
      modalities=['numeric', 'text'],          # graph level: feature modalities, in order
      num_relations=279,                        # graph level
      relation_names=[...],                     # graph level, optional, length R
      entity={
        num_nodes=12842,
        name=[...],                             # optional, length N, unique
        x_numeric=[12842, 450],                 # float, one row per entity
        mask_numeric=[12842],                   # bool, True = the entity has this modality
        x_text=[12842, 384],
        mask_text=[12842],
      },
      (entity, relation, entity)={
        edge_index=[2, E],                      # long, row 0 = head, row 1 = tail
        edge_type=[E],                          # long, relation id in [0, R)
        train_mask=[E], val_mask=[E], test_mask=[E],   # bool, every row in exactly one
        val_clean_mask=[E],                     # optional bool, subset of val_mask
      })

Conventions:

* **The mask is the truth.** A row whose mask is :obj:`False` carries no information about
  the entity. Loaders of :mod:`torch_mmkg` fill such rows with zeros; user-supplied features may
  hold anything finite there (e.g. the random vectors of the authors' releases). A row whose mask is
  :obj:`True` must be finite and not all zeros.
* **Splits are row masks** over one edge list (PyG's ``train_mask``/``val_mask``/``test_mask``
  convention). Published splits are kept row for row, duplicates included;
  ``val_clean_mask`` marks a cleaned validation split for model selection
  (see :func:`torch_mmkg.data.split_report`).
* **Features may live on disk.** ``x_<modality>`` may be a
  :class:`~torch_mmkg.data.feature_store.DiskFeatures` (a read-only ``float32`` ``.npy`` file
  read row by row) instead of a tensor; masks are always in-memory bool tensors.
* Triples are ``(head, relation, tail)``; :func:`get_triples` returns them as three index tensors.
"""
import operator
import re
import warnings
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from torch_mmkg.data.feature_store import is_disk_features

ENTITY = 'entity'
REL = ('entity', 'relation', 'entity')
SPLITS = ('train', 'val', 'test')

_MODALITY_RE = re.compile(r'^[a-z][a-z0-9_]*$')

Triples = Union[Tensor, Tuple[Tensor, Tensor, Tensor]]


def feature_key(modality: str) -> str:
    r"""The entity-store key of the features of :obj:`modality`."""
    return f'x_{modality}'


def mask_key(modality: str) -> str:
    r"""The entity-store key of the availability mask of :obj:`modality`."""
    return f'mask_{modality}'


def split_key(split: str) -> str:
    r"""The edge-store key of the row mask of :obj:`split`."""
    return f'{split}_mask'


def _count(name: str, value) -> int:
    r"""A positive integer count, or a :class:`ValueError` naming it (never truncates 10.7 or
    reads True as 1)."""
    out = None
    if not isinstance(value, bool):
        try:
            out = operator.index(value)
        except TypeError:
            pass
    if out is None or out < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return out


def _as_triple_tensor(triples: Triples, what: str) -> Tensor:
    # A tuple is (head, relation, tail); so is a list of three tensors. Any other list is a
    # list of (head, relation, tail) rows: a list of three rows must not be read as columns.
    if isinstance(triples, list) and not (len(triples) == 3 and
                                          all(isinstance(t, Tensor) for t in triples)):
        rows = torch.as_tensor(triples) if triples else torch.empty(0, 3, dtype=torch.long)
        triples = rows
    if isinstance(triples, (tuple, list)):
        if len(triples) != 3:
            raise ValueError(f"{what}: expected a (head, relation, tail) tuple of three "
                             f"tensors, got {len(triples)} items")
        parts = [torch.as_tensor(t) for t in triples]
        if not all(p.dim() == 1 for p in parts) or len({p.numel() for p in parts}) != 1:
            raise ValueError(f"{what}: head, relation and tail must be 1-d tensors of equal "
                             f"length, got shapes {[tuple(p.shape) for p in parts]}")
        triples = torch.stack(parts, dim=1)
    triples = torch.as_tensor(triples)
    if triples.dim() != 2 or triples.size(1) != 3:
        raise ValueError(f"{what}: expected a [T, 3] tensor of (head, relation, tail) rows, "
                         f"got shape {tuple(triples.shape)}")
    if triples.is_floating_point() or triples.dtype == torch.bool:
        raise ValueError(f"{what}: triple ids must be integers, got {triples.dtype}")
    return triples.long()


def build_mmkg(
    num_entities: int,
    num_relations: int,
    triples: Mapping[str, Triples],
    features: Optional[Mapping[str, Tensor]] = None,
    masks: Optional[Mapping[str, Tensor]] = None,
    entity_names: Optional[Sequence[str]] = None,
    relation_names: Optional[Sequence[str]] = None,
    infer_masks: bool = True,
) -> HeteroData:
    r"""Builds a validated multi-modal KG in the :mod:`torch_mmkg` layout.

    Args:
        num_entities (int): Number of entities :math:`N`.
        num_relations (int): Number of relations :math:`R`.
        triples (Mapping[str, Tensor or tuple]): The triples of each split, keyed by
            :obj:`"train"`, :obj:`"val"` and :obj:`"test"` (missing splits are empty), each a
            :obj:`[T, 3]` tensor of ``(head, relation, tail)`` rows or a tuple of three index
            tensors.
        features (Mapping[str, Tensor], optional): Per modality a :obj:`[N, F_m]` float tensor,
            or a disk-backed :class:`~torch_mmkg.data.feature_store.DiskFeatures` (kept as it
            is; a mask to infer comes from one streamed pass). (default: :obj:`None`)
        masks (Mapping[str, Tensor], optional): Per modality a boolean :obj:`[N]` availability
            mask. A modality without a mask gets one from :obj:`infer_masks`.
            (default: :obj:`None`)
        entity_names (Sequence[str], optional): Unique entity names. (default: :obj:`None`)
        relation_names (Sequence[str], optional): Unique relation names.
            (default: :obj:`None`)
        infer_masks (bool, optional): If :obj:`True`, a modality given without a mask is marked
            present exactly on its non-zero rows; if :obj:`False`, such a modality is an error.
            (default: :obj:`True`)

    Returns:
        HeteroData: the graph, already passed through :func:`validate_mmkg`.
    """
    features = dict(features or {})
    masks = dict(masks or {})
    unknown = set(triples) - set(SPLITS)
    if unknown:
        raise ValueError(f"Unknown split names {sorted(unknown)} (expected a subset of "
                         f"{list(SPLITS)})")
    extra = set(masks) - set(features)
    if extra:
        raise ValueError(f"Masks given for modalities without features: {sorted(extra)}")

    data = HeteroData()
    data[ENTITY].num_nodes = _count('num_entities', num_entities)
    data.num_relations = _count('num_relations', num_relations)
    if entity_names is not None:
        data[ENTITY].name = list(entity_names)
    if relation_names is not None:
        data.relation_names = list(relation_names)

    rows, split_ids = [], []
    for i, split in enumerate(SPLITS):
        t = _as_triple_tensor(triples.get(split, torch.empty(0, 3, dtype=torch.long)),
                              f"triples['{split}']")
        rows.append(t)
        split_ids.append(torch.full((t.size(0), ), i, dtype=torch.long))
    allt, split_id = torch.cat(rows, 0), torch.cat(split_ids, 0)
    store = data[REL]
    store.edge_index = torch.stack([allt[:, 0], allt[:, 2]], dim=0).contiguous()
    store.edge_type = allt[:, 1].contiguous()
    for i, split in enumerate(SPLITS):
        store[split_key(split)] = split_id == i

    modalities = []
    for m, x in features.items():
        disk = is_disk_features(x)  # a float32 file read row by row: masks from a streamed pass
        if not disk:
            x = torch.as_tensor(x)
            if x.is_complex():
                raise ValueError(f"Features of modality '{m}' are complex ({x.dtype}); store "
                                 f"the real and imaginary parts as separate columns")
            if not x.is_floating_point():
                x = x.float()
        data[ENTITY][feature_key(m)] = x
        if m in masks:
            data[ENTITY][mask_key(m)] = torch.as_tensor(masks[m])
        elif infer_masks:
            if x.dim() != 2:
                raise ValueError(f"Features of modality '{m}' must be a 2-d [num_entities, "
                                 f"num_features] {'matrix' if disk else 'tensor'}, got shape "
                                 f"{tuple(x.shape)}")
            data[ENTITY][mask_key(m)] = (x.nonzero_rows().clone() if disk else
                                         (x != 0).any(dim=1))
        else:
            raise ValueError(f"No mask given for modality '{m}' (and infer_masks=False)")
        modalities.append(m)
    data.modalities = modalities
    validate_mmkg(data)
    return data


def get_triples(data: HeteroData, split: Union[str, Sequence[str]] = 'train',
                ) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Returns the triples of one or several splits as ``(head, rel, tail)`` index tensors.

    Args:
        data (HeteroData): A graph in the :mod:`torch_mmkg` layout.
        split (str or Sequence[str], optional): :obj:`"train"`, :obj:`"val"`, :obj:`"test"`,
            :obj:`"val_clean"`, :obj:`"all"`, or a list of these. Rows are returned in the order
            of the edge list, published duplicates included. (default: :obj:`"train"`)
    """
    store = data[REL]
    if isinstance(split, str):
        split = list(SPLITS) if split == 'all' else [split]
    mask = torch.zeros(store.edge_type.numel(), dtype=torch.bool,
                       device=store.edge_type.device)
    for s in split:
        key = split_key(s)
        if key not in store:
            known = [k[:-5] for k in store.keys() if k.endswith('_mask')]
            raise ValueError(f"Split '{s}' not found in the graph (it has {known})")
        mask |= store[key]
    head, tail = store.edge_index[0, mask], store.edge_index[1, mask]
    return head, store.edge_type[mask], tail


def get_modalities(data: HeteroData) -> List[str]:
    r"""The feature modalities of :obj:`data`, in order."""
    return list(getattr(data, 'modalities', None) or [])


def modality_features(data: HeteroData) -> Dict[str, Tuple[Tensor, Tensor]]:
    r"""Returns ``{modality: (features [N, F_m], mask [N])}`` in modality order; disk-backed
    features (:class:`~torch_mmkg.data.feature_store.DiskFeatures`) are returned as they
    are, not read."""
    ent = data[ENTITY]
    return {m: (ent[feature_key(m)], ent[mask_key(m)]) for m in get_modalities(data)}


def _first_index(mask: Tensor) -> int:
    return int(mask.nonzero()[0, 0]) if mask.dim() == 1 else tuple(
        int(i) for i in mask.nonzero()[0])


def _check_bool_mask(m, size: int, what: str) -> Tensor:
    if not isinstance(m, Tensor) or m.dtype != torch.bool or m.shape != (size, ):
        raise ValueError(f"{what} must be a bool tensor of shape [{size}], got "
                         f"{getattr(m, 'dtype', type(m).__name__)} "
                         f"{tuple(getattr(m, 'shape', ()))}")
    return m


def _check_names(names, count: int, what: str):
    if not isinstance(names, (list, tuple)):
        raise ValueError(f"{what} must be a list of strings, got {type(names).__name__}")
    if len(names) != count:
        raise ValueError(f"{what} has {len(names)} entries but there are {count}")
    seen = {}
    for i, n in enumerate(names):
        if not isinstance(n, str):
            raise ValueError(f"{what}[{i}] is not a string: {n!r}")
        if n in seen:
            raise ValueError(f"{what}: duplicate name {n!r} at positions {seen[n]} and {i}")
        seen[n] = i


def _check_disk_features(x, fk: str, N: int) -> Tensor:
    r"""The checks of :func:`validate_mmkg` on disk-backed features, in one streamed pass
    (:meth:`~torch_mmkg.data.feature_store.DiskFeatures.scan`): never the whole file at
    once. Returns which rows are not all zeros."""
    if x.dim() != 2:
        raise ValueError(f"data['{ENTITY}'].{fk} must be a 2-d float tensor, got "
                         f"{x.dtype} {tuple(x.shape)} (in {x.path})")
    if x.size(0) != N:
        raise ValueError(f"data['{ENTITY}'].{fk} has {x.size(0)} rows but there are "
                         f"{N} entities (in {x.path})")
    scan = x.scan()
    if not scan.finite:
        (row, col), value = scan.nonfinite
        raise ValueError(f"data['{ENTITY}'].{fk} holds {value} at entity {row}, feature "
                         f"{col}: features must be finite (mark a missing row with the mask "
                         f"instead) (in {x.path})")
    return scan.nonzero


def _check_tensor_features(x, fk: str, N: int) -> Tensor:
    r"""The checks of :func:`validate_mmkg` on in-memory features; returns which rows are not
    all zeros."""
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"data['{ENTITY}'].{fk} must be a 2-d float tensor, got "
                         f"{getattr(x, 'dtype', type(x).__name__)} "
                         f"{tuple(getattr(x, 'shape', ()))}")
    if x.size(0) != N:
        raise ValueError(f"data['{ENTITY}'].{fk} has {x.size(0)} rows but there are "
                         f"{N} entities")
    if x.size(1) == 0:
        raise ValueError(f"data['{ENTITY}'].{fk} has no feature columns (shape "
                         f"{tuple(x.shape)}); leave the modality out instead")
    nonfinite = ~torch.isfinite(x)
    if nonfinite.any():
        row, col = _first_index(nonfinite)
        raise ValueError(f"data['{ENTITY}'].{fk} holds {x[row, col].item()} at entity "
                         f"{row}, feature {col}: features must be finite (mark a missing "
                         f"row with the mask instead)")
    return (x != 0).any(dim=1)


def validate_mmkg(data: HeteroData) -> HeteroData:
    r"""Checks that :obj:`data` follows the :mod:`torch_mmkg` layout and holds sane values.

    Every dataset of :mod:`torch_mmkg` and every graph built by :func:`build_mmkg` passes through
    this function. It raises a :class:`ValueError` naming the tensor and the first offending
    index for: a missing or non-positive entity count; an :obj:`edge_index`/:obj:`edge_type` of the
    wrong shape or dtype; entity or relation ids out of range; split masks of the wrong shape or
    dtype, a row in two splits or in none; a :obj:`val_clean_mask` outside the validation split;
    modality names that are not identifiers or repeat; features that are not 2-d floats, have a
    row count other than :math:`N`, or hold NaN/Inf; masks that are not boolean :obj:`[N]`; a mask
    that claims a modality on an all-zero row; entity or relation names of the wrong length or with
    duplicates.

    Disk-backed features (:class:`~torch_mmkg.data.feature_store.DiskFeatures`) get the same
    checks in one streamed pass over the file (block by block, cached on the object), never
    read whole.

    Returns:
        HeteroData: :obj:`data` itself, so that calls can be chained.
    """
    if not isinstance(data, HeteroData):
        raise ValueError(f"Expected a HeteroData object, got {type(data).__name__}")
    if ENTITY not in data.node_types:
        raise ValueError(f"The graph has no '{ENTITY}' node type (node types: "
                         f"{data.node_types})")
    ent = data[ENTITY]
    N = _count(f"data['{ENTITY}'].num_nodes", ent.num_nodes if 'num_nodes' in ent else None)
    R = _count('data.num_relations', getattr(data, 'num_relations', None))

    if REL not in data.edge_types:
        raise ValueError(f"The graph has no {REL} edge type (edge types: {data.edge_types})")
    store = data[REL]
    ei = store.get('edge_index')
    if not isinstance(ei, Tensor) or ei.dim() != 2 or ei.size(0) != 2:
        raise ValueError(f"edge_index must be a [2, E] tensor, got "
                         f"{tuple(ei.shape) if isinstance(ei, Tensor) else type(ei).__name__}")
    if ei.dtype != torch.long:
        raise ValueError(f"edge_index must have dtype torch.long, got {ei.dtype}")
    E = ei.size(1)
    bad = (ei < 0) | (ei >= N)
    if bad.any():
        side, col = _first_index(bad)
        raise ValueError(f"edge_index: {'head' if side == 0 else 'tail'} entity id "
                         f"{int(ei[side, col])} at triple {col} is out of range [0, {N})")
    et = store.get('edge_type')
    if not isinstance(et, Tensor) or et.dim() != 1 or et.numel() != E:
        raise ValueError(f"edge_type must be a 1-d tensor of length {E} (one per triple), got "
                         f"{tuple(et.shape) if isinstance(et, Tensor) else type(et).__name__}")
    if et.dtype != torch.long:
        raise ValueError(f"edge_type must have dtype torch.long, got {et.dtype}")
    bad = (et < 0) | (et >= R)
    if bad.any():
        i = _first_index(bad)
        raise ValueError(f"edge_type: relation id {int(et[i])} at triple {i} is out of range "
                         f"[0, {R})")

    count = torch.zeros(E, dtype=torch.long, device=ei.device)
    for split in SPLITS:
        key = split_key(split)
        if key not in store:
            raise ValueError(f"The edge store has no '{key}'")
        count += _check_bool_mask(store[key], E, key).long()
    if (count > 1).any():
        raise ValueError(f"Triple {_first_index(count > 1)} belongs to more than one split")
    if (count == 0).any():
        raise ValueError(f"Triple {_first_index(count == 0)} belongs to no split")
    if 'val_clean_mask' in store:
        m = _check_bool_mask(store.val_clean_mask, E, 'val_clean_mask')
        if (m & ~store.val_mask).any():
            raise ValueError(f"val_clean_mask marks triple {_first_index(m & ~store.val_mask)} "
                             f"which is not in the validation split")

    modalities = getattr(data, 'modalities', None)
    if modalities is None:
        modalities = []
    if not isinstance(modalities, (list, tuple)):
        raise ValueError(f"data.modalities must be a list of names, got "
                         f"{type(modalities).__name__}")
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"data.modalities has duplicates: {list(modalities)}")
    for m in modalities:
        if not isinstance(m, str) or not _MODALITY_RE.match(m):
            raise ValueError(f"Modality name {m!r} must be a lower-case identifier "
                             f"([a-z][a-z0-9_]*)")
        fk, mk = feature_key(m), mask_key(m)
        if fk not in ent:
            raise ValueError(f"Modality '{m}' is listed but data['{ENTITY}'].{fk} is missing")
        x = ent[fk]
        disk = is_disk_features(x)
        nonzero = (_check_disk_features if disk else _check_tensor_features)(x, fk, N)
        if mk not in ent:
            raise ValueError(f"Modality '{m}' has no availability mask data['{ENTITY}'].{mk}")
        mask = _check_bool_mask(ent[mk], N, f"data['{ENTITY}'].{mk}")
        empty = mask & ~nonzero.to(mask.device)
        if empty.any():
            raise ValueError(f"data['{ENTITY}'].{mk} marks entity {_first_index(empty)} as "
                             f"having modality '{m}' but its feature row is all zeros"
                             f"{f' (in {x.path})' if disk else ''}")
    stray = [k for k in ent.keys() if (k.startswith('x_') and k[2:] not in modalities)
             or (k.startswith('mask_') and k[5:] not in modalities)]
    if stray:
        warnings.warn(f"data['{ENTITY}'] holds {stray} for modalities not listed in "
                      f"data.modalities={list(modalities)}; models will ignore them")

    if 'name' in ent:
        _check_names(ent.name, N, f"data['{ENTITY}'].name")
    names = getattr(data, 'relation_names', None)
    if names is not None:
        _check_names(names, R, "data.relation_names")
    return data
