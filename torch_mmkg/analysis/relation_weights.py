r"""How relation guidance shifts NATIVE's modality weights (the paper's case study, §5.6)."""
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

Top = Dict[str, List[Tuple[str, float, int]]]


@dataclass
class RelationModalityWeights:
    r"""The per-relation modality weights returned by :func:`relation_modality_weights`.

    All tensors live on the CPU; rows are relations, columns the slots of
    :attr:`modalities` (structure first).

    Attributes:
        modalities (List[str]): :obj:`["structure", *model.modalities]`, the :math:`M + 1`
            columns.
        relation_names (List[str]): The :math:`R` relation names.
        temperature (Tensor): :math:`[R]`, the temperatures :math:`\sigma(\zeta_r)` (all ones
            without relation-wise temperatures).
        count (Tensor): :math:`[R]`, the number of analysed triples of each relation.
        weights (Tensor): :math:`[R, M + 1]`, the mean weights :math:`\bar\omega_m(r)` over the
            heads and tails of the relation's triples (NaN for relations without triples).
        neutral (Tensor): :math:`[R, M + 1]`, the same means at temperature :math:`1`.
        lift (Tensor): :math:`[R, M + 1]`, :obj:`weights - neutral`.
        top (Dict[str, List[Tuple[str, float, int]]]): Per modality, the
            :obj:`(relation name, lift, count)` of the relations that raise its weight most.
    """
    modalities: List[str]
    relation_names: List[str]
    temperature: Tensor
    count: Tensor
    weights: Tensor
    neutral: Tensor
    lift: Tensor
    top: Top

    def to_dict(self) -> Dict[str, Any]:
        r"""A JSON-serialisable summary (NaN becomes :obj:`None`, the top relations become
        :obj:`{"relation", "lift", "count"}` records)."""
        return {
            'modalities': list(self.modalities),
            'relation_names': list(self.relation_names),
            'temperature': _floats(self.temperature),
            'count': [int(c) for c in self.count.tolist()],
            'weights': [_floats(row) for row in self.weights],
            'neutral': [_floats(row) for row in self.neutral],
            'lift': [_floats(row) for row in self.lift],
            'top': {m: [{'relation': name, 'lift': float(lift), 'count': int(count)}
                        for name, lift, count in entries]
                    for m, entries in self.top.items()},
        }

    def plot(self, path: Optional[str] = None):
        r"""Draws the paper's Figure 6: (a) the histogram of :math:`\sigma(\zeta_r)` over the
        relations with triples and (b) the top lifts of each modality as horizontal bars.

        Needs :obj:`matplotlib` (an optional dependency); no global :obj:`pyplot` state is
        touched, so it works under any backend.

        Args:
            path (str, optional): If given, the figure is also saved there (the format follows
                the file extension). (default: :obj:`None`)

        Returns:
            matplotlib.figure.Figure: the figure.
        """
        try:
            from matplotlib.figure import Figure
            from matplotlib.patches import Patch
            from matplotlib.ticker import MaxNLocator
        except ImportError as e:  # pragma: no cover - exercised by monkeypatching
            raise ImportError("RelationModalityWeights.plot() requires matplotlib "
                              "(pip install matplotlib)") from e

        entries = [(m, name, lift) for m in self.modalities
                   for name, lift, _ in self.top.get(m, [])]
        fig = Figure(figsize=(11, max(3.5, 0.35 * len(entries) + 1.5)),
                     layout='constrained')
        ax_hist, ax_bar = fig.subplots(1, 2, width_ratios=[1, 1.4])

        temps = self.temperature[self.count > 0].tolist()
        if temps:
            ax_hist.hist(temps, bins=20, range=(0.0, 1.0), color='tab:blue',
                         edgecolor='white')
        else:
            ax_hist.text(0.5, 0.5, 'no triples', ha='center', va='center',
                         transform=ax_hist.transAxes)
        ax_hist.set_xlim(0.0, 1.0)
        ax_hist.set_xlabel(r'$\sigma(\zeta_r)$')
        ax_hist.set_ylabel('relations')
        ax_hist.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax_hist.set_title(r'(a) Relation-wise temperatures $\sigma(\zeta_r)$')

        if entries:
            colors = {m: f'C{i}' for i, m in enumerate(self.modalities)}
            ys = list(range(len(entries)))
            ax_bar.barh(ys, [lift for _, _, lift in entries],
                        color=[colors[m] for m, _, _ in entries])
            ax_bar.set_yticks(ys, [f'{m}: {_short(name)}' for m, name, _ in entries])
            ax_bar.invert_yaxis()
            seen = [m for m in self.modalities if any(e[0] == m for e in entries)]
            ax_bar.legend(handles=[Patch(color=colors[m], label=m) for m in seen],
                          loc='lower right', fontsize='small')
        else:
            ax_bar.text(0.5, 0.5, 'no relation raises any weight', ha='center',
                        va='center', transform=ax_bar.transAxes)
            ax_bar.set_yticks([])
        ax_bar.set_xlabel(r'lift of the mean weight $\bar\omega_m(r) - \bar\omega^0_m(r)$')
        ax_bar.set_title('(b) Relations raising a modality\'s weight')

        if path is not None:
            fig.savefig(path)
        return fig


def relation_modality_weights(
    model: Any,
    data: Any = None,
    triples: Optional[Tuple[Tensor, Tensor, Tensor]] = None,
    split: Union[str, Sequence[str]] = 'train',
    top_k: int = 4,
    *,
    relation_names: Optional[Sequence[str]] = None,
    batch_size: int = 16384,
) -> RelationModalityWeights:
    r"""Per relation, the mean modality weights of the relation-guided adaptive fusion of
    the `"NATIVE: Multi-modal Knowledge Graph Completion in the Wild"
    <https://arxiv.org/abs/2406.17605>`_ paper, and how much the relation raises each
    modality's weight (its case study, §5.6 and Figure 6).

    For an entity :math:`e` with representations :math:`\mathbf{e}_m` (structure and every
    modality) the fusion weights in the context of relation :math:`r` are

    .. math::
        \omega_m(e, r) = \mathrm{softmax}_m\big(\mathbf{v}^{\top}\tanh(\mathbf{e}_m) /
        \sigma(\zeta_r)\big),

    over the modalities the entity has (when the fusion masks missing ones). Averaging over
    the heads and tails :math:`\mathcal{E}_r` of relation :math:`r`'s triples (every
    occurrence counts) gives :math:`\bar\omega_m(r)`; the same average at temperature
    :math:`1` gives the neutral :math:`\bar\omega^0_m(r)`, the weights of the same entities
    without relation guidance, and the lift

    .. math::
        \Delta_m(r) = \frac{1}{|\mathcal{E}_r|} \sum_{e \in \mathcal{E}_r}
        \omega_m(e, r) - \frac{1}{|\mathcal{E}_r|} \sum_{e \in \mathcal{E}_r}
        \omega_m(e, r)\big|_{\sigma(\zeta_r) = 1}

    says how much relation :math:`r` raises modality :math:`m`'s weight (a temperature
    below :math:`1` sharpens the weights toward each entity's dominant modality).

    The weights are computed without gradients, in evaluation mode (restored afterwards), in
    batches of distinct (relation, entity) pairs on the model's device.

    Works with any model that has :obj:`modalities`, :obj:`modality_stack(index)` and a
    :obj:`fusion` with :obj:`weights(stack, mask, rel)` and :obj:`temperature(rel)` (such
    as :class:`~torch_mmkg.nn.NATIVE`); a fusion with temperatures must give its
    temperature-1 weights through :obj:`weights(stack, mask, rel, neutral=True)`.

    Args:
        model: The model, e.g. a :class:`~torch_mmkg.nn.NATIVE`.
        data (HeteroData, optional): A graph in the :mod:`torch_mmkg` layout; its triples of
            :obj:`split` are analysed unless :obj:`triples` is given, and its
            :obj:`relation_names` name the relations. (default: :obj:`None`)
        triples (Tuple[Tensor, Tensor, Tensor], optional): The :obj:`(head, rel, tail)`
            index tensors to analyse. (default: :obj:`None`)
        split (str or Sequence[str], optional): The split(s) of :obj:`data` (see
            :func:`~torch_mmkg.data.get_triples`). (default: :obj:`"train"`)
        top_k (int, optional): The number of relations listed per modality in :obj:`top`.
            (default: :obj:`4`)
        relation_names (Sequence[str], optional): Names of the :math:`R` relations (default:
            :obj:`data.relation_names` if present, else :obj:`"r0"`, :obj:`"r1"`, ...).
        batch_size (int, optional): The number of (relation, entity) pairs per batch.
            (default: :obj:`16384`)

    Returns:
        RelationModalityWeights: :obj:`temperature` :math:`[R]`, :obj:`count` :math:`[R]`,
        :obj:`weights`, :obj:`neutral` and :obj:`lift` :math:`[R, M + 1]` (NaN rows for
        relations without triples), and :obj:`top`, per modality the :obj:`top_k`
        :obj:`(relation name, lift, count)` with the largest positive lift among relations
        with triples.
    """
    fusion = _check_model(model)
    slots = ['structure', *list(model.modalities)]
    R = _num_relations(model, fusion, data)
    N = getattr(model, 'num_nodes', None)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be a non-negative integer, got {top_k!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

    (head, rel, tail), relation_names = _triples_and_names(data, triples, split,
                                                           relation_names, R, N)

    device = _device(model)
    modes = [(m, m.training) for m in model.modules()] if isinstance(
        model, torch.nn.Module) else []
    try:
        if modes:
            model.eval()
        with torch.no_grad():
            temperature, sums, sums0 = _accumulate(model, fusion, head, rel, tail, R,
                                                   len(slots), device, batch_size)
    finally:
        for m, training in modes:
            m.training = training

    count = torch.bincount(rel.cpu(), minlength=R)
    occurrences = (2 * count).to(torch.float64)[:, None]
    nan = torch.tensor(float('nan'), dtype=torch.float64)
    weights = torch.where(occurrences > 0, sums / occurrences.clamp(min=1), nan)
    neutral = torch.where(occurrences > 0, sums0 / occurrences.clamp(min=1), nan)
    lift = weights - neutral

    top: Top = {}
    for j, m in enumerate(slots):
        col = lift[:, j]
        cand = ((count > 0) & (col > 0)).nonzero().view(-1)
        order = cand[torch.argsort(col[cand], descending=True, stable=True)][:top_k]
        top[m] = [(relation_names[i], float(col[i]), int(count[i])) for i in order.tolist()]

    return RelationModalityWeights(
        modalities=slots, relation_names=relation_names, temperature=temperature,
        count=count, weights=weights.float(), neutral=neutral.float(), lift=lift.float(),
        top=top)


def _accumulate(model, fusion, head: Tensor, rel: Tensor, tail: Tensor, R: int,
                num_slots: int, device: torch.device,
                batch_size: int) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Temperatures and the occurrence-weighted sums of the relation-guided and neutral
    weights per relation, one fusion call per batch of distinct (relation, entity) pairs."""
    temperature = fusion.temperature(torch.arange(R, device=device))
    guided = temperature is not None
    if guided:
        temperature = temperature.detach().float().cpu().view(-1)
        if temperature.numel() != R:
            raise ValueError(f"fusion.temperature gave {temperature.numel()} temperatures "
                             f"for {R} relations")
    else:
        temperature = torch.ones(R)

    sums = torch.zeros(R, num_slots, dtype=torch.float64)
    sums0 = torch.zeros(R, num_slots, dtype=torch.float64)
    if head.numel() == 0:
        return temperature, sums, sums0

    # every (relation, entity) occurrence, deduplicated with its multiplicity
    ent = torch.cat([head, tail]).cpu()
    rels = torch.cat([rel, rel]).cpu()
    n = int(ent.max()) + 1
    pairs, mult = torch.unique(rels * n + ent, return_counts=True)
    pair_rel, pair_ent = pairs // n, pairs % n
    mult = mult.to(torch.float64)[:, None]

    for start in range(0, pairs.numel(), batch_size):
        r_b = pair_rel[start:start + batch_size]
        e_b = pair_ent[start:start + batch_size]
        stack, mask = model.modality_stack(e_b.to(device))
        r_dev = r_b.to(device)
        w = fusion.weights(stack, mask, r_dev)
        w0 = fusion.weights(stack, mask, r_dev, neutral=True) if guided else w
        if w.shape != (e_b.numel(), num_slots):
            raise ValueError(f"fusion.weights returned shape {tuple(w.shape)}, expected "
                             f"({e_b.numel()}, {num_slots}) for {num_slots - 1} modalities "
                             f"plus structure")
        m_b = mult[start:start + batch_size]
        sums.index_add_(0, r_b, w.detach().cpu().double() * m_b)
        sums0.index_add_(0, r_b, w0.detach().cpu().double() * m_b)
    return temperature, sums, sums0


def _check_model(model) -> Any:
    missing = [a for a in ('modalities', 'modality_stack', 'fusion') if not hasattr(model, a)]
    if not missing and not callable(model.modality_stack):
        missing.append('modality_stack()')
    fusion = getattr(model, 'fusion', None)
    if not missing:
        missing = [f'fusion.{a}()' for a in ('weights', 'temperature')
                   if not callable(getattr(fusion, a, None))]
    if missing:
        raise TypeError(f"relation_modality_weights needs a model with modalities, "
                        f"modality_stack() and a fusion with weights() and temperature() "
                        f"(such as NATIVE with the adaptive fusion); "
                        f"{type(model).__name__} lacks {', '.join(missing)}")
    return fusion


def _num_relations(model, fusion, data) -> int:
    R = getattr(model, 'num_relations', None)
    if R is None and isinstance(getattr(fusion, 'zeta', None), Tensor):
        R = fusion.zeta.numel()
    if R is None and data is not None:
        R = getattr(data, 'num_relations', None)
    if R is None:
        raise TypeError(f"cannot tell the number of relations of {type(model).__name__}: "
                        f"give it a num_relations attribute")
    R = int(R)
    data_R = getattr(data, 'num_relations', None) if data is not None else None
    if data_R is not None and int(data_R) != R:
        raise ValueError(f"the model has {R} relations but the graph has {int(data_R)}")
    return R


def _triples_and_names(data, triples, split, relation_names, R: int, N: Optional[int]
                       ) -> Tuple[Tuple[Tensor, Tensor, Tensor], List[str]]:
    r"""The analysed triples (given, or :obj:`data`'s of :obj:`split`) checked against
    :math:`R` relations and :math:`N` entities, and the :math:`R` relation names."""
    if triples is None:
        if data is None:
            raise ValueError("pass either data (with split) or triples=(head, rel, tail)")
        from torch_mmkg.data.mmkg import get_triples
        triples = get_triples(data, split)
    triples = _check_triples(triples, R, N)
    if relation_names is None:
        relation_names = getattr(data, 'relation_names', None) if data is not None else None
    if relation_names is None:
        relation_names = [f'r{i}' for i in range(R)]
    relation_names = [str(name) for name in relation_names]
    if len(relation_names) != R:
        raise ValueError(f"got {len(relation_names)} relation names for {R} relations")
    return triples, relation_names


def _check_triples(triples, R: int, N: Optional[int]) -> Tuple[Tensor, Tensor, Tensor]:
    if not isinstance(triples, (tuple, list)) or len(triples) != 3:
        raise ValueError("triples must be a tuple (head, rel, tail) of three index tensors")
    out = []
    for what, t in zip(('head', 'rel', 'tail'), triples):
        t = torch.as_tensor(t)
        if t.dim() != 1:
            raise ValueError(f"triples: {what} must be a 1-d index tensor, got shape "
                             f"{tuple(t.shape)}")
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"triples: {what} ids must be integers, got {t.dtype}")
        out.append(t.long())
    head, rel, tail = out
    if not head.numel() == rel.numel() == tail.numel():
        raise ValueError(f"triples: head, rel and tail must have the same length, got "
                         f"{head.numel()}, {rel.numel()} and {tail.numel()}")
    if rel.numel() and (int(rel.min()) < 0 or int(rel.max()) >= R):
        raise ValueError(f"triples: relation ids must lie in [0, {R}), got "
                         f"[{int(rel.min())}, {int(rel.max())}]")
    for what, t in (('head', head), ('tail', tail)):
        if t.numel() and int(t.min()) < 0:
            raise ValueError(f"triples: {what} ids must be non-negative, got {int(t.min())}")
        if t.numel() and N is not None and int(t.max()) >= int(N):
            raise ValueError(f"triples: {what} ids must lie in [0, {int(N)}), got "
                             f"{int(t.max())}")
    return head, rel, tail


def _device(model) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return torch.device('cpu')


def _short(name: str) -> str:
    r"""A readable label for a relation name: the last segment of a URI."""
    name = name.strip('<>')
    for sep in ('#', '/'):
        if sep in name.rstrip(sep):
            name = name.rstrip(sep).rsplit(sep, 1)[-1]
    return name


def _floats(t: Tensor) -> List[Optional[float]]:
    return [None if math.isnan(x) else float(x) for x in t.tolist()]
