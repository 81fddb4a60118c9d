r"""Split hygiene: facts about published train/valid/test splits, and a cleaned validation
split."""
import warnings
from typing import Any, Dict, List

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from torch_mmkg.data.mmkg import ENTITY, REL, SPLITS, get_triples, split_key


def _keys(data: HeteroData, split: str) -> Tensor:
    h, r, t = get_triples(data, split)
    N, R = data[ENTITY].num_nodes, data.num_relations
    return (h * R + r) * N + t


def _first_occurrence(keys: Tensor) -> Tensor:
    r"""Bool mask of the first occurrence of every distinct value (file order kept)."""
    if keys.numel() == 0:
        return torch.zeros(0, dtype=torch.bool)
    order = torch.sort(keys, stable=True).indices
    sk = keys[order]
    first_sorted = torch.ones_like(sk, dtype=torch.bool)
    first_sorted[1:] = sk[1:] != sk[:-1]
    out = torch.zeros_like(first_sorted)
    out[order] = first_sorted
    return out


def _isin(a: Tensor, b: Tensor) -> Tensor:
    return torch.isin(a, b) if b.numel() else torch.zeros_like(a, dtype=torch.bool)


def clean_val_mask(data: HeteroData) -> Tensor:
    r"""The cleaned validation split: the first occurrence of every distinct validation triple
    that is not also a training triple. Returned as a row mask over the edge list (a subset of
    :obj:`val_mask`)."""
    store = data[REL]
    val_rows = store.val_mask.nonzero().view(-1)
    vk = _keys(data, 'val')
    keep = _first_occurrence(vk) & ~_isin(vk, _keys(data, 'train'))
    out = torch.zeros_like(store.val_mask)
    out[val_rows[keep]] = True
    return out


def split_report(data: HeteroData) -> Dict[str, Any]:
    r"""Counts what is unclean in the splits of :obj:`data`.

    Returns a dictionary with, per split, its number of rows (:obj:`"rows"`), of distinct triples
    (:obj:`"distinct"`) and of surplus duplicate rows (:obj:`"duplicates"`); the number of
    distinct triples shared by each pair of splits (:obj:`"overlap"`, e.g.
    :obj:`{"val&train": 6584}`); the entities that occur in a split but never in training
    (:obj:`"unseen_entities"`) with the number of triples touching them
    (:obj:`"triples_with_unseen_entities"`), the number of entities that occur in no training
    triple at all (:obj:`"entities_absent_from_train"`); relations absent from training
    (:obj:`"unseen_relations"`); and the number of rows of the cleaned validation split
    (:obj:`"val_clean"`, see :func:`clean_val_mask`).
    """
    keys = {s: _keys(data, s) for s in SPLITS}
    uniq = {s: torch.unique(k) for s, k in keys.items()}
    report: Dict[str, Any] = {'rows': {}, 'distinct': {}, 'duplicates': {}, 'overlap': {},
                              'unseen_entities': {}, 'triples_with_unseen_entities': {},
                              'unseen_relations': {}}
    for s in SPLITS:
        report['rows'][s] = keys[s].numel()
        report['distinct'][s] = uniq[s].numel()
        report['duplicates'][s] = keys[s].numel() - uniq[s].numel()
    for a, b in (('val', 'train'), ('test', 'train'), ('test', 'val')):
        report['overlap'][f'{a}&{b}'] = int(_isin(uniq[a], uniq[b]).sum())
    h, r, t = get_triples(data, 'train')
    seen_ent = torch.zeros(data[ENTITY].num_nodes, dtype=torch.bool)
    seen_ent[h] = True
    seen_ent[t] = True
    seen_rel = torch.zeros(data.num_relations, dtype=torch.bool)
    seen_rel[r] = True
    report['entities_absent_from_train'] = int((~seen_ent).sum())
    for s in ('val', 'test'):
        h, r, t = get_triples(data, s)
        touch = ~seen_ent[h] | ~seen_ent[t]
        ents = torch.unique(torch.cat([h[~seen_ent[h]], t[~seen_ent[t]]]))
        report['unseen_entities'][s] = ents.numel()
        report['triples_with_unseen_entities'][s] = int(touch.sum())
        report['unseen_relations'][s] = int(torch.unique(r[~seen_rel[r]]).numel())
    report['val_clean'] = int(clean_val_mask(data).sum())
    return report


def split_issues(report: Dict[str, Any]) -> List[str]:
    r"""Human-readable sentences for the unclean facts in a :func:`split_report`."""
    out = []
    for s in SPLITS:
        if report['duplicates'][s]:
            out.append(f"{s}: {report['rows'][s]} rows but {report['distinct'][s]} distinct "
                       f"triples ({report['duplicates'][s]} duplicate rows)")
    for pair, n in report['overlap'].items():
        if n:
            a, b = pair.split('&')
            out.append(f"{n} distinct {a} triples also appear in {b}")
    for s in ('val', 'test'):
        if report['unseen_entities'][s]:
            out.append(f"{report['triples_with_unseen_entities'][s]} of {report['rows'][s]} {s} "
                       f"triples touch one of {report['unseen_entities'][s]} entities absent "
                       f"from training")
        if report['unseen_relations'][s]:
            out.append(f"{report['unseen_relations'][s]} relations of {s} never occur in "
                       f"training")
    return out


def warn_split_issues(report: Dict[str, Any], name: str = 'dataset',
                      stacklevel: int = 2) -> List[str]:
    r"""Raises a :class:`UserWarning` listing what is unclean in a :func:`split_report` (and
    nothing if it is clean). Returns the sentences of :func:`split_issues`."""
    issues = split_issues(report)
    if issues:
        warnings.warn(f"{name}: the published split is not clean: " + '; '.join(issues) +
                      f". The published split is kept as released; for model selection use "
                      f"split 'val_clean' ({report['val_clean']} triples: duplicates and "
                      f"training triples removed).", stacklevel=stacklevel + 1)
    return issues


def add_clean_val_split(data: HeteroData, warn: bool = True,
                        name: str = 'dataset') -> Dict[str, Any]:
    r"""Adds :obj:`val_clean_mask` to :obj:`data` (in place), and returns the
    :func:`split_report`. With :obj:`warn=True`, an unclean split raises a
    :class:`UserWarning` that lists what is unclean (:func:`warn_split_issues`). The published
    split masks are not changed."""
    data[REL][split_key('val_clean')] = clean_val_mask(data)
    report = split_report(data)
    if warn:
        warn_split_issues(report, name, stacklevel=2)
    return report
