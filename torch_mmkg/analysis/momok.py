r"""What MoMoK's experts, joint fusion and scorers do per relation (the paper's case study,
§5.7: Figure 5's modality and expert weights, Table 4's best scorer per relation)."""
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .relation_weights import _device, _floats, _triples_and_names

Best = Dict[str, List[Tuple[str, float, int]]]


def _check_momok(model):
    from torch_mmkg.nn.models.momok import MoMoK
    if not isinstance(model, MoMoK):
        raise TypeError(f"expected a MoMoK model, got {type(model).__name__}")


@dataclass
class ExpertWeights:
    r"""MoMoK's per-relation weights returned by :func:`expert_weights`. Rows are the
    :math:`2R` query relations (the :math:`R` relations, whose query entity is the head,
    then their inverses, whose query entity is the tail), all on the CPU.

    Attributes:
        modalities (List[str]): The modality slots (structure first).
        relation_names (List[str]): :math:`2R` names, inverses suffixed :obj:`"^-1"`.
        temperature (Tensor): :math:`[2R]`, :math:`\sigma(\varepsilon_r)` (ones without
            relation temperatures).
        count (Tensor): :math:`[2R]`, the analysed queries per relation.
        joint (Tensor, optional): :math:`[2R, S]`, the mean attention weight of each
            modality in the joint embedding (averaged over heads and query entities; NaN for
            relations without queries; :obj:`None` without the joint modality).
        gates (Tensor): :math:`[2R, S, K]`, the mean expert gates :math:`G_i` per modality.
    """
    modalities: List[str]
    relation_names: List[str]
    temperature: Tensor
    count: Tensor
    joint: Optional[Tensor]
    gates: Tensor

    def dominant_expert(self) -> Tensor:
        r""":math:`[2R, S]`, the expert with the largest mean gate (-1 without queries)."""
        out = self.gates.argmax(dim=-1)
        return torch.where(self.count[:, None] > 0, out, torch.full_like(out, -1))

    def to_dict(self) -> Dict[str, Any]:
        r"""A JSON-serialisable summary (NaN becomes :obj:`None`)."""
        return {
            'modalities': list(self.modalities),
            'relation_names': list(self.relation_names),
            'temperature': _floats(self.temperature),
            'count': [int(c) for c in self.count.tolist()],
            'joint': None if self.joint is None else [_floats(r) for r in self.joint],
            'gates': [[_floats(g) for g in row] for row in self.gates],
        }

    def plot(self, path: Optional[str] = None,
             relations: Optional[Sequence[Union[int, str]]] = None, max_relations: int = 10):
        r"""Draws the paper's Figure 5: (a) the modality weights in the joint embedding and
        the expert gates of each modality, per query relation (see
        :func:`~torch_mmkg.analysis.plot_expert_weights`).

        Needs :obj:`matplotlib` (an optional dependency); no global :obj:`pyplot` state is
        touched, so it works under any backend.

        Args:
            path (str, optional): If given, the figure is also saved there (the format follows
                the file extension). (default: :obj:`None`)
            relations (Sequence[int or str], optional): The query relations shown.
                (default: the :obj:`max_relations` with the most queries)
            max_relations (int, optional): (default: :obj:`10`)

        Returns:
            matplotlib.figure.Figure: the figure.
        """
        from .plots import plot_expert_weights
        return plot_expert_weights(self, path, relations, max_relations)


def expert_weights(model, data=None, triples: Optional[Tuple[Tensor, Tensor, Tensor]] = None,
                   split: Union[str, Sequence[str]] = 'train',
                   relation_names: Optional[Sequence[str]] = None,
                   batch_size: int = 4096) -> ExpertWeights:
    r"""Per query relation, the mean expert gates :math:`G_i(\mathcal{V}_{m,i}, r)` of every
    modality and the mean weight of every modality in the joint embedding
    :math:`\hat{\mathbf{e}}_{J,r}` of a trained :class:`~torch_mmkg.nn.MoMoK` (the paper's
    Figure 5), over the queries :math:`(h, r, ?)` and :math:`(t, r^{-1}, ?)` of the
    analysed triples, in evaluation mode (no gate noise). Entities lacking a modality are
    left out of that modality's gate means (their joint weight for it is 0 and is counted).

    Args:
        model (MoMoK): The model.
        data (HeteroData, optional): A graph whose :obj:`split` triples and
            :obj:`relation_names` are used. (default: :obj:`None`)
        triples (Tuple[Tensor, Tensor, Tensor], optional): Analyse these instead.
        split (str or Sequence[str], optional): (default: :obj:`"train"`)
        relation_names (Sequence[str], optional): The :math:`R` names.
        batch_size (int, optional): Queries per forward pass. (default: :obj:`4096`)
    """
    _check_momok(model)
    R, N = model.num_relations, model.num_nodes
    (head, rel, tail), names = _triples_and_names(data, triples, split, relation_names, R, N)
    device = _device(model)
    entity = torch.cat([head, tail]).to(device)
    query_rel = torch.cat([rel, rel + R]).to(device)
    S, K = len(model.slots), model.num_experts
    gate_sum = torch.zeros(2 * R, S, K, dtype=torch.float64, device=device)
    gate_count = torch.zeros(2 * R, S, dtype=torch.float64, device=device)
    has_joint = 'joint' in model.scorers
    joint_sum = torch.zeros(2 * R, S, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, entity.numel(), batch_size):
                e, r = entity[i:i + batch_size], query_rel[i:i + batch_size]
                stack, _, gates, mask = model.modality_embeddings(e, r)
                m = mask.to(torch.float64)
                gate_sum.index_add_(0, r, gates.double() * m[..., None])
                gate_count.index_add_(0, r, m)
                if has_joint:
                    joint_sum.index_add_(0, r, model.joint(stack, mask)[1].mean(-2).double())
    finally:
        model.train(was_training)
    count = torch.bincount(query_rel, minlength=2 * R).cpu()
    nan = torch.tensor(float('nan'), dtype=torch.float64)
    gate_count = gate_count[..., None].cpu()
    gates = torch.where(gate_count > 0, gate_sum.cpu() / gate_count.clamp(min=1), nan)
    joint = None
    if has_joint:
        joint = torch.where(count[:, None] > 0,
                            joint_sum.cpu() / count[:, None].clamp(min=1).double(), nan).float()
    all_r = torch.arange(2 * R, device=device)
    with torch.no_grad():
        tau = model.relation_temperature(all_r)
    temperature = torch.ones(2 * R) if tau is None else tau.detach().float().cpu()
    return ExpertWeights(modalities=list(model.slots),
                         relation_names=names + [f'{n}^-1' for n in names],
                         temperature=temperature, count=count, joint=joint,
                         gates=gates.float())


@dataclass
class ScorerComparison:
    r"""Per-relation link prediction of each MoMoK scorer alone and of the ensemble,
    returned by :func:`scorer_comparison` (the paper's Table 4).

    Attributes:
        scorers (List[str]): The single scorers, then :obj:`"ensemble"` (the columns).
        relation_names (List[str]): The :math:`R` relation names.
        count (Tensor): :math:`[R]`, evaluated triples per relation (each is two queries).
        mrr (Tensor): :math:`[R, C]`, the filtered both-sided MRR (NaN without triples).
        overall (Dict[str, Dict[str, float]]): Per column, MRR / MR / Hits@k over all.
        best (Dict[str, List[Tuple[str, float, int]]]): Per single scorer, the relations
            where it ranks best among the single scorers, as :obj:`(name, margin over the
            runner-up, count)`, largest margin first (ties give no winner).
    """
    scorers: List[str]
    relation_names: List[str]
    count: Tensor
    mrr: Tensor
    overall: Dict[str, Dict[str, float]]
    best: Best

    def to_dict(self) -> Dict[str, Any]:
        return {
            'scorers': list(self.scorers), 'relation_names': list(self.relation_names),
            'count': [int(c) for c in self.count.tolist()],
            'mrr': [_floats(row) for row in self.mrr], 'overall': self.overall,
            'best': {s: [{'relation': n, 'margin': float(m), 'count': int(c)}
                         for n, m, c in rows] for s, rows in self.best.items()},
        }


def scorer_comparison(model, data, split: str = 'test', known=None,
                      relation_names: Optional[Sequence[str]] = None, top_k: int = 7,
                      min_count: int = 1, batch_size: Optional[int] = None,
                      progress: bool = False) -> ScorerComparison:
    r"""Evaluates a trained :class:`~torch_mmkg.nn.MoMoK` on :obj:`split` once per single
    scorer (:meth:`~torch_mmkg.nn.MoMoK.use_scorers`) and once as the ensemble, filtered and
    both-sided (realistic ranks), and lists per scorer the relations it predicts best (the
    paper's Table 4).

    Args:
        model (MoMoK): The model.
        data (HeteroData): The graph.
        split (str, optional): (default: :obj:`"test"`)
        known (KnownTriples, optional): The filter. (default: train + valid + test)
        relation_names (Sequence[str], optional): The :math:`R` names.
        top_k (int, optional): Relations listed per scorer. (default: :obj:`7`)
        min_count (int, optional): Only relations with at least this many triples can be
            listed. (default: :obj:`1`)
        batch_size (int, optional): Evaluation batch size.
        progress (bool, optional): Progress bars. (default: :obj:`False`)
    """
    _check_momok(model)
    from torch_mmkg.data import KnownTriples
    from torch_mmkg.evaluation import RankingEvaluator
    R, N = model.num_relations, model.num_nodes
    (h, r, t), names = _triples_and_names(data, None, split, relation_names, R, N)
    known = KnownTriples.from_data(data, 'all') if known is None else known
    evaluator = RankingEvaluator(known, batch_size, progress=progress)
    singles = list(model.scorers) if len(model.scorers) > 1 else []
    columns = singles + ['ensemble']
    mrr = torch.full((R, len(columns)), float('nan'), dtype=torch.float64)
    overall = {}
    for c, name in enumerate(columns):
        scope = model.use_scorers(model.scorers if name == 'ensemble' else [name])
        with scope:
            res = evaluator.evaluate(model, h, r, t)
        overall[name] = res.metrics('realistic', 'both')
        for rel_id, met in res.by_relation('realistic', 'both').items():
            mrr[rel_id, c] = met['mrr']
    count = torch.bincount(r.cpu(), minlength=R)
    best: Best = {s: [] for s in singles}
    if len(singles) > 1:
        single = mrr[:, :len(singles)]
        top2 = single.nan_to_num(-math.inf).topk(2, dim=1)
        for rel_id in range(R):
            if count[rel_id] < min_count or math.isnan(float(single[rel_id, 0])):
                continue
            margin = float(top2.values[rel_id, 0] - top2.values[rel_id, 1])
            if margin > 0:
                best[singles[int(top2.indices[rel_id, 0])]].append(
                    (names[rel_id], margin, int(count[rel_id])))
        for s in singles:
            best[s] = sorted(best[s], key=lambda x: -x[1])[:top_k]
    return ScorerComparison(scorers=columns, relation_names=names, count=count,
                            mrr=mrr.float(), overall=overall, best=best)
