r"""Ranked completions of one query, with entity names and scores."""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

import torch

from torch_mmkg.data.known_triples import KnownTriples
from torch_mmkg.data.mmkg import ENTITY, REL, SPLITS, split_key

__all__ = ['predict_target', 'Prediction', 'lookup']


def _names(data, what: str) -> Optional[List[str]]:
    if what == 'entity':
        names = data[ENTITY].get('name')
    else:
        names = getattr(data, 'relation_names', None)
    return list(names) if names is not None else None


def lookup(data, value: Union[int, str], what: str = 'entity') -> int:
    r"""The id of an entity or relation given by name or id (an :obj:`int`, or a string of
    digits when no entity has that name).

    Raises:
        ValueError: naming the value and suggesting close names when there is none.
    """
    count = int(data[ENTITY].num_nodes) if what == 'entity' else int(data.num_relations)
    names = _names(data, what)
    if isinstance(value, str) and names is not None and value in names:
        return names.index(value)
    if isinstance(value, str) and value.strip().lstrip('-').isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < count:
            raise ValueError(f"{what} id {value} is out of range [0, {count})")
        return value
    if names is None:
        raise ValueError(f"the graph has no {what} names; give the {what} as an id in "
                         f"[0, {count})")
    import difflib
    close = difflib.get_close_matches(str(value), names, n=3, cutoff=0.5)
    sub = [n for n in names if str(value).lower() in n.lower()][:3]
    hint = close or sub
    raise ValueError(f"no {what} named {value!r}" +
                     (f"; did you mean {', '.join(map(repr, hint))}?" if hint else ''))


@dataclass
class Prediction:
    r"""The ranked candidates of a query.

    Attributes:
        query (dict): :obj:`head`, :obj:`relation`, :obj:`tail` (the unknown side is
            :obj:`None`), as ids, and :obj:`target` (:obj:`"head"` or :obj:`"tail"`).
        ids (List[int]): Candidate entity ids, best first.
        names (List[str] or None): Their names, if the graph has names.
        scores (List[float]): Their scores (higher is more plausible).
        known (List[str or None]): The split ('train', 'val', 'test') holding the completed
            triple, or :obj:`None` for a new triple.
        filtered (bool): Whether known triples were removed.
    """
    query: Dict[str, Any]
    ids: List[int]
    names: Optional[List[str]]
    scores: List[float]
    known: List[Optional[str]]
    filtered: bool

    def to_dict(self) -> Dict[str, Any]:
        return {'query': self.query, 'filtered': self.filtered, 'predictions': [
            {'rank': i + 1, 'id': e, 'name': None if self.names is None else self.names[i],
             'score': s, 'known': k}
            for i, (e, s, k) in enumerate(zip(self.ids, self.scores, self.known))]}

    def to_table(self) -> str:
        r"""A plain-text table: rank, id, name, score, known split."""
        rows = [('rank', 'id', 'name', 'score', 'known')]
        for row in self.to_dict()['predictions']:
            rows.append((str(row['rank']), str(row['id']), row['name'] or '',
                         f"{row['score']:.4f}", row['known'] or ''))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        return '\n'.join('  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                         for r in rows)

    def __len__(self) -> int:
        return len(self.ids)


def _split_of(data, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    r"""Per triple, the index in :data:`SPLITS` of the first split that holds it (-1: none)."""
    store = data[REL]
    out = torch.full((h.numel(), ), -1)
    for i, split in enumerate(SPLITS):
        key = split_key(split)
        if key not in store:
            continue
        sel = store[key]
        known = KnownTriples(store.edge_index[0][sel], store.edge_type[sel],
                             store.edge_index[1][sel], int(data[ENTITY].num_nodes),
                             int(data.num_relations))
        out[(out < 0) & known.contains(h, r, t)] = i
    return out


@torch.no_grad()
def predict_target(model, data, head: Union[int, str, None] = None,
                   relation: Union[int, str, None] = None,
                   tail: Union[int, str, None] = None, k: int = 10,
                   filtered: bool = False) -> Prediction:
    r"""The :obj:`k` most plausible tails of :math:`(h, r, ?)` (give :obj:`head` and
    :obj:`relation`) or heads of :math:`(?, r, t)` (give :obj:`relation` and :obj:`tail`),
    scored by :obj:`model` against every entity, like PyKEEN's :obj:`predict_target`.

    Args:
        model (KGEModel): A trained model.
        data (HeteroData): Its graph (for the names and the known triples).
        head (int or str, optional): The head, by name or id. (default: :obj:`None`)
        relation (int or str): The relation, by name or id.
        tail (int or str, optional): The tail, by name or id. (default: :obj:`None`)
        k (int, optional): How many candidates (:obj:`0`: all). (default: :obj:`10`)
        filtered (bool, optional): Leave out candidates that complete a triple known in any
            split (train, validation, test); otherwise they are kept and marked.
            (default: :obj:`False`)

    Raises:
        ValueError: unless exactly one of :obj:`head` and :obj:`tail` is given with
            :obj:`relation`, for an unknown name or id, or :obj:`k < 0`.
    """
    if relation is None or (head is None) == (tail is None):
        raise ValueError("give the relation and exactly one of head and tail (the other side "
                         "is predicted)")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"k must be an integer >= 0, got {k!r}")
    r_id = lookup(data, relation, 'relation')
    device = next(model.parameters()).device
    r = torch.tensor([r_id], device=device)
    was_training = model.training
    model.eval()
    try:
        if tail is None:
            h_id = lookup(data, head, 'entity')
            scores = model.score_tails(torch.tensor([h_id], device=device), r)[0]
            query = {'head': h_id, 'relation': r_id, 'tail': None, 'target': 'tail'}
        else:
            t_id = lookup(data, tail, 'entity')
            scores = model.score_heads(r, torch.tensor([t_id], device=device))[0]
            query = {'head': None, 'relation': r_id, 'tail': t_id, 'target': 'head'}
    finally:
        model.train(was_training)
    scores = scores.float().cpu()
    N = scores.numel()
    cand = torch.arange(N)
    fixed = torch.full((N, ), query['head'] if tail is None else query['tail'])
    rr = torch.full((N, ), r_id)
    h, t = (fixed, cand) if tail is None else (cand, fixed)
    split = _split_of(data, h, rr, t)  # every candidate once: marks and filter
    known = split >= 0
    if filtered:
        scores = scores.masked_fill(known, float('-inf'))
    n = N - int(known.sum()) if filtered else N
    top = torch.topk(scores, min(k or N, n), sorted=True)  # ties: topk's order
    ids = top.indices
    names = _names(data, 'entity')
    return Prediction(query=query, ids=ids.tolist(),
                      names=None if names is None else [names[i] for i in ids.tolist()],
                      scores=top.values.tolist(),
                      known=[SPLITS[i] if i >= 0 else None for i in split[ids].tolist()],
                      filtered=filtered)
