import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from torch_mmkg.data.indices import IndexSpec, check_indices
from torch_mmkg.data.known_triples import KnownTriples
from torch_mmkg.ops import compile_notice
from .categories import CATEGORIES
from .ranking import RANK_TYPES, filtered_ranks, rank_metrics, realistic

SIDES = ('head', 'tail')
#: Modality-completeness groups of a test triple (NATIVE, Fig. 3).
COMPLETENESS = ['both_complete', 'one_missing', 'both_missing']
#: What the progress bar says while a scoring kernel is compiled for the first time.
COMPILING_MESSAGE = 'compiling the scoring kernel (once, ~3 s)'


def _trusted(model):
    r"""The model's :meth:`~torch_mmkg.nn.KGEModel.trusted_indices` block (a no-op for
    models without one)."""
    trusted = getattr(model, 'trusted_indices', None)
    return trusted() if trusted is not None else contextlib.nullcontext()


@dataclass
class RankingResult:
    r"""The per-query ranks of one evaluation, with summaries and breakdowns.

    Every query is one side of one test triple: :obj:`side[q] == 0` predicts the head
    :math:`(?, r, t)`, :obj:`side[q] == 1` the tail :math:`(h, r, ?)`. :obj:`protocol`
    describes how the ranks were computed (filter, candidates, ties); :meth:`to_dict`
    reports it.
    """
    head: Tensor
    rel: Tensor
    tail: Tensor
    side: Tensor
    optimistic: Tensor
    pessimistic: Tensor
    ks: Sequence[int] = (1, 3, 10)
    seconds: float = 0.0
    peak_memory: Optional[int] = None
    extra: Dict = field(default_factory=dict)
    protocol: Dict = field(default_factory=dict)

    def ranks(self, rank: str = 'realistic') -> Tensor:
        r"""The 1-based ranks of type :obj:`rank` (:obj:`"realistic"`, :obj:`"optimistic"`
        or :obj:`"pessimistic"`)."""
        if rank == 'realistic':
            return realistic(self.optimistic, self.pessimistic)
        if rank == 'optimistic':
            return self.optimistic
        if rank == 'pessimistic':
            return self.pessimistic
        raise ValueError(f"rank must be one of {RANK_TYPES}, got {rank!r}")

    def _select(self, side: str) -> Tensor:
        if side == 'both':
            return torch.ones_like(self.side, dtype=torch.bool)
        if side not in SIDES:
            raise ValueError(f"side must be 'head', 'tail' or 'both', got {side!r}")
        return self.side == SIDES.index(side)

    def metrics(self, rank: str = 'realistic', side: str = 'both',
                where: Optional[Tensor] = None) -> Dict[str, float]:
        r"""MR, MRR and Hits@k over the queries of :obj:`side` (and the optional per-query
        bool mask :obj:`where`)."""
        sel = self._select(side)
        if where is not None:
            sel = sel & where
        return rank_metrics(self.ranks(rank)[sel], self.ks)

    def summary(self, rank: str = 'realistic') -> Dict[str, Dict[str, float]]:
        r"""Metrics per side and for both sides."""
        return {s: self.metrics(rank, s) for s in ('both', 'head', 'tail')}

    def by_relation(self, rank: str = 'realistic', side: str = 'both') -> Dict[int, Dict]:
        r"""Metrics per relation id (relations with test triples only)."""
        return {int(r): self.metrics(rank, side, self.rel == r)
                for r in torch.unique(self.rel).tolist()}

    def by_category(self, categories: Tensor, rank: str = 'realistic') -> Dict[str, Dict]:
        r"""Metrics per relation category (see
        :func:`~torch_mmkg.evaluation.relation_categories`), for head and tail prediction
        separately and both, in the layout of the TransE paper's Table 4."""
        cat = categories.to(self.rel.device)[self.rel]
        return {name: {s: self.metrics(rank, s, cat == i) for s in ('both', 'head', 'tail')}
                for i, name in enumerate(CATEGORIES) if bool((cat == i).any())}

    def completeness(self, entity_complete: Tensor) -> Tensor:
        r"""The completeness group of each query's triple: 0 if head and tail have all
        modalities, 1 if one of them lacks some, 2 if both do."""
        c = entity_complete.to(self.head.device).bool()
        return (~c[self.head]).long() + (~c[self.tail]).long()

    def by_completeness(self, entity_complete: Tensor,
                        rank: str = 'realistic') -> Dict[str, Dict]:
        r"""Metrics per modality-completeness group of the test triple (NATIVE, Fig. 3);
        :obj:`entity_complete` is a :obj:`[N]` bool tensor, True where an entity has every
        modality (see :func:`entity_completeness`)."""
        group = self.completeness(entity_complete)
        return {name: self.metrics(rank, 'both', group == i)
                for i, name in enumerate(COMPLETENESS) if bool((group == i).any())}

    def to_dict(self, categories: Optional[Tensor] = None,
                entity_complete: Optional[Tensor] = None,
                per_relation: bool = False) -> Dict:
        r"""A JSON-serialisable report: all rank types per side, and the breakdowns whose
        inputs are given."""
        out = {'num_queries': int(self.side.numel()), 'seconds': self.seconds,
               'peak_memory': self.peak_memory,
               **{rank: self.summary(rank) for rank in RANK_TYPES}}
        if self.protocol:
            out['protocol'] = dict(self.protocol)
        if categories is not None:
            out['by_category'] = self.by_category(categories)
        if entity_complete is not None:
            out['by_completeness'] = self.by_completeness(entity_complete)
        if per_relation:
            out['by_relation'] = {str(k): v for k, v in self.by_relation().items()}
        return out


def entity_completeness(data) -> Tensor:
    r"""A :obj:`[N]` bool tensor telling which entities of a :mod:`torch_mmkg` graph have
    every one of its modalities (all True when it has none). Rows filled by modality
    completion (:class:`~torch_mmkg.transforms.CompleteModality`) do not count: the groups
    are those of the source data."""
    from torch_mmkg.completion.base import original_mask
    from torch_mmkg.data.mmkg import ENTITY, get_modalities
    out = torch.ones(data[ENTITY].num_nodes, dtype=torch.bool)
    for m in get_modalities(data):
        out &= original_mask(data, m).bool().cpu()
    return out


class RankingEvaluator:
    r"""Filtered link-prediction evaluation over all entities, both sides.

    For every test triple :math:`(h, r, t)` the model scores :math:`(h, r, e)` and
    :math:`(e, r, t)` for all entities :math:`e` in batches of :obj:`batch_size` queries
    (:obj:`[B, N]` score matrices from
    :meth:`~torch_mmkg.nn.KGEModel.score_tails` / :meth:`~torch_mmkg.nn.KGEModel.score_heads`,
    with the entity-side representation computed once per evaluation by
    :meth:`~torch_mmkg.nn.KGEModel.prepare_scoring`), removes the other known answers listed
    in :obj:`known` (train + valid + test for the standard filtered setting), and ranks the
    true entity; see :func:`~torch_mmkg.evaluation.filtered_ranks` for the tie rules. Memory
    is :math:`O(B \cdot N)`. With :obj:`exclude_query_entity` the query entity is no
    candidate of its own query (:math:`h` of :math:`(h, r, ?)`, :math:`t` of
    :math:`(?, r, t)`), unless it is the true answer (:math:`h = t`): it is filtered like a
    known answer. The result's :obj:`protocol` states the filter, the candidates, the tie
    policy and this choice.

    Args:
        known (KnownTriples, optional): The filter; :obj:`None` gives raw ranks.
            (default: :obj:`None`)
        batch_size (int, optional): Queries per batch; :obj:`None` picks the largest with at
            most :math:`2^{23}` scores per batch (559 for 15,000 entities).
            (default: :obj:`None`)
        sides (Sequence[str], optional): Which sides to predict. (default:
            :obj:`("head", "tail")`)
        ks (Sequence[int], optional): The :math:`k` of Hits@k. (default: :obj:`(1, 3, 10)`)
        progress (bool, optional): Show a progress bar; it says so while a scoring kernel
            is compiled, the first time in the process (see
            :func:`~torch_mmkg.ops.compile_notice`). (default: :obj:`False`)
        exclude_query_entity (bool, optional): Leave the query entity out of its own
            query's candidates (unless it is the answer). (default: :obj:`False`)
    """
    def __init__(self, known: Optional[KnownTriples] = None, batch_size: Optional[int] = None,
                 sides: Sequence[str] = SIDES, ks: Sequence[int] = (1, 3, 10),
                 progress: bool = False, exclude_query_entity: bool = False):
        for s in sides:
            if s not in SIDES:
                raise ValueError(f"sides must be among {SIDES}, got {s!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.known, self.batch_size = known, batch_size
        self.sides, self.ks, self.progress = tuple(sides), tuple(ks), progress
        self.exclude_query_entity = bool(exclude_query_entity)

    @property
    def protocol(self) -> Dict:
        r"""How this evaluator ranks, as reported with its results."""
        return {'filtered': self.known is not None, 'sides': list(self.sides),
                'candidates': 'all entities',
                'query_entity_candidate': not self.exclude_query_entity,
                'ties': 'realistic (mean of optimistic and pessimistic) by default; '
                        'optimistic (OpenKE) and pessimistic also reported'}

    @torch.no_grad()
    def evaluate(self, model, head_index: Tensor, rel_type: Tensor,
                 tail_index: Tensor) -> RankingResult:
        r"""Ranks every test triple on each side and returns the :class:`RankingResult`."""
        N, R = model.num_nodes, model.num_relations
        head_index, rel_type, tail_index = check_indices(
            'RankingEvaluator.evaluate', IndexSpec('head_index', head_index, N),
            IndexSpec('rel_type', rel_type, R, 'relation'), IndexSpec('tail_index', tail_index, N))
        if self.known is not None and (self.known.num_entities != N
                                       or self.known.num_relations != R):
            raise ValueError(f"the filter indexes {self.known.num_entities} entities and "
                             f"{self.known.num_relations} relations, the model has {N} and {R}")
        device = next(itertools.chain(model.parameters(), model.buffers())).device
        known = None if self.known is None else self.known.to(device)
        h, r, t = (x.to(device).long() for x in (head_index, rel_type, tail_index))
        bs = self.batch_size or max(1, min(4096, 2**23 // N))
        was_training = model.training
        model.eval()
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        cache = model.prepare_scoring()
        out: Dict[str, List[Tensor]] = {'side': [], 'opt': [], 'pess': []}
        total = len(self.sides) * ((h.numel() + bs - 1) // bs)
        bar = tqdm(total=total, desc='Evaluating', disable=not self.progress, leave=False)
        compiling = []  # the first call of a kernel in this process compiles it: say so

        def notice(name: str):
            compiling.append(name)
            bar.set_postfix_str(COMPILING_MESSAGE)
        # Queries go through the model grouped by relation (models whose entity side depends
        # on the relation fuse once per relation of a batch), results in the input order.
        order = torch.argsort(r, stable=True)
        # The ids were checked above: the model does not check each batch again.
        with _trusted(model), (compile_notice(notice) if self.progress
                               else contextlib.nullcontext()):
            for s, side in enumerate(SIDES):
                if side not in self.sides:
                    continue
                opt_side = torch.empty_like(h)
                pess_side = torch.empty_like(h)
                for i in range(0, h.numel(), bs):
                    sel = order[i:i + bs]
                    hb, rb, tb = h[sel], r[sel], t[sel]
                    if side == 'tail':
                        scores = model.score_tails(hb, rb, cache=cache)
                        target, query = tb, hb
                        fq, fe = (None, None) if known is None else known.tails(hb, rb)
                    else:
                        scores = model.score_heads(rb, tb, cache=cache)
                        target, query = hb, tb
                        fq, fe = (None, None) if known is None else known.heads(rb, tb)
                    if self.exclude_query_entity:  # filtered, but kept where the answer
                        rows = torch.arange(query.numel(), device=query.device)
                        fq = rows if fq is None else torch.cat([fq, rows])
                        fe = query if fe is None else torch.cat([fe, query])
                    opt_side[sel], pess_side[sel] = filtered_ranks(scores, target, fq, fe)
                    if compiling:
                        compiling.clear()
                        bar.set_postfix_str('', refresh=False)
                    bar.update(1)
                out['opt'].append(opt_side)
                out['pess'].append(pess_side)
                out['side'].append(torch.full_like(opt_side, s))
        bar.close()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(device) if device.type == 'cuda' else None
        model.train(was_training)
        n = len(out['side'])  # one block per side, each in the input order
        return RankingResult(head=h.cpu().repeat(n), rel=r.cpu().repeat(n),
                             tail=t.cpu().repeat(n), side=torch.cat(out['side']).cpu(),
                             optimistic=torch.cat(out['opt']).cpu(),
                             pessimistic=torch.cat(out['pess']).cpu(), ks=self.ks,
                             seconds=seconds, peak_memory=peak, protocol=self.protocol)
