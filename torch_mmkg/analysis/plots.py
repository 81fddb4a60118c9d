r"""Figures of trained models and runs (the :obj:`plot` extra, :obj:`pip install
torch_mmkg[plot]`): MoMoK's modality and expert weights (its Figure 5), LBMKGC's per-entity
modality weights (its Figure 4), robustness curves (a metric against the rate of dropped
modality information) and training curves of a run.

Every figure is a :class:`matplotlib.figure.Figure` built without the global :obj:`pyplot`
state (so it works under any backend, also in threads and notebooks); the numbers behind each
figure come from a small result class with :meth:`to_dict` that needs no :obj:`matplotlib`.
"""
import copy
import json
import math
import os.path as osp
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from .relation_weights import _device, _short

__all__ = [
    'plot_expert_weights',
    'EntityModalityWeights',
    'entity_modality_weights',
    'RobustnessCurve',
    'robustness_curve',
    'plot_robustness_curves',
    'TrainingCurves',
    'training_curves',
    'plot_training_curves',
]

#: Metrics where smaller is better.
_MINIMIZED = ('mr', )


def _matplotlib(what: str):
    r"""The :class:`~matplotlib.figure.Figure` class, or a clear :class:`ImportError`."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # exercised by monkeypatching
        raise ImportError(f"{what} requires matplotlib, an optional dependency "
                          f"(pip install matplotlib, or pip install torch_mmkg[plot])") from e
    return Figure


def _save(fig, path: Optional[str]):
    if path is not None:
        fig.savefig(path)
    return fig


# MoMoK: modality and expert weights per relation (Figure 5) ###################################

def plot_expert_weights(weights: Any, path: Optional[str] = None,
                        relations: Optional[Sequence[Union[int, str]]] = None,
                        max_relations: int = 10):
    r"""Draws MoMoK's modality and expert weights per relation (the `"Mixture of Modality
    Knowledge Experts for Robust Multi-modal Knowledge Graph Completion"
    <https://arxiv.org/abs/2405.16869>`_ paper's Figure 5) from
    :func:`~torch_mmkg.analysis.expert_weights`.

    Panel (a), when the model scores the joint modality: per query relation, a stacked bar
    of the mean attention weight of each modality in the joint embedding
    :math:`\hat{\mathbf{e}}_{J,r}` (each bar sums to 1). Then one panel per modality
    :math:`m`: per relation, a stacked bar of the mean gates :math:`G_i` of its :math:`K`
    experts (ReMoKEs), the same colour for expert :math:`i` in every panel. Segments of
    15% or more are labelled with their share. A modality no query entity of a relation has
    gets no bar there (its gates are NaN).

    Args:
        weights (ExpertWeights or dict): The weights, or their :meth:`to_dict`.
        path (str, optional): If given, the figure is also saved there (the format follows
            the extension). (default: :obj:`None`)
        relations (Sequence[int or str], optional): The query relations to show, top to
            bottom, by id in :math:`[0, 2R)` or name (inverses are :obj:`"<name>^-1"`).
            (default: the :obj:`max_relations` with the most queries)
        max_relations (int, optional): (default: :obj:`10`)

    Returns:
        matplotlib.figure.Figure: the figure.
    """
    Figure = _matplotlib('plot_expert_weights()')
    w = _as_expert_weights(weights)
    rows = _select_relations(w, relations, max_relations)
    names = [_relation_label(w.relation_names[i]) for i in rows]
    slots = list(w.modalities)
    K = int(w.gates.size(-1))
    panels = ([('joint', None)] if w.joint is not None else []) + [
        ('gates', s) for s in range(len(slots))]
    fig = Figure(figsize=(2.9 * len(panels) + 1.6, 0.42 * max(len(rows), 2) + 2.0),
                 layout='constrained')
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    ys = list(range(len(rows)))
    expert_colors = [_expert_color(k, K) for k in range(K)]
    for p, (ax, (kind, s)) in enumerate(zip(axes, panels)):
        letter = chr(ord('a') + p)
        if kind == 'joint':
            parts = w.joint[rows].tolist()
            _stacked_barh(ax, ys, parts, [f'C{i}' for i in range(len(slots))], slots)
            ax.set_title(f'({letter}) Modalities in the joint embedding', fontsize='medium')
            ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.16), ncols=len(slots),
                      fontsize='small', frameon=False)
        else:
            parts = w.gates[rows, s].tolist()
            _stacked_barh(ax, ys, parts, expert_colors,
                          [f'expert {k + 1}' for k in range(K)])
            ax.set_title(f'({letter}) Expert gates $G_i$: {slots[s]}', fontsize='medium')
            if s == 0:
                handles, labels = ax.get_legend_handles_labels()
                ax.legend(handles, labels, loc='upper center', bbox_to_anchor=(0.5, -0.16),
                          ncols=min(K, 4), fontsize='small', frameon=False)
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel('mean weight')
    axes[0].set_yticks(ys, names)
    axes[0].invert_yaxis()
    axes[0].set_ylabel('query relation')
    return _save(fig, path)


def _as_expert_weights(weights):
    from .momok import ExpertWeights
    if isinstance(weights, ExpertWeights):
        return weights
    if isinstance(weights, Mapping):
        def nan(v):  # None (JSON's NaN) back to NaN, at any depth
            return [nan(x) for x in v] if isinstance(v, list) else (
                math.nan if v is None else v)
        return ExpertWeights(
            modalities=list(weights['modalities']),
            relation_names=list(weights['relation_names']),
            temperature=torch.tensor(nan(weights['temperature']), dtype=torch.float),
            count=torch.tensor(weights['count']),
            joint=(None if weights.get('joint') is None
                   else torch.tensor(nan(weights['joint']), dtype=torch.float)),
            gates=torch.tensor(nan(weights['gates']), dtype=torch.float))
    raise TypeError(f"expected ExpertWeights (from torch_mmkg.analysis.expert_weights) or its "
                    f"to_dict(), got {type(weights).__name__}")


def _select_relations(w, relations, max_relations: int) -> List[int]:
    n = len(w.relation_names)
    if relations is None:
        if isinstance(max_relations, bool) or not isinstance(max_relations, int) \
                or max_relations < 1:
            raise ValueError(f"max_relations must be a positive integer, got "
                             f"{max_relations!r}")
        count = w.count.tolist()
        order = sorted((i for i in range(n) if count[i] > 0), key=lambda i: (-count[i], i))
        return order[:max_relations]
    return _rows(relations, w.relation_names, 'relations', 'relation',
                 " (inverses are named '<name>^-1')")


def _rows(items, names: List[str], plural: str, what: str, hint: str = '') -> List[int]:
    # the row ids of items given by name or id
    rows = []
    for item in items:
        if isinstance(item, str):
            if item not in names:
                raise ValueError(f"unknown {what} {item!r}{hint}")
            rows.append(names.index(item))
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(names):
            rows.append(item)
        else:
            raise ValueError(f"{plural} must be names or ids in [0, {len(names)}), got "
                             f"{item!r}")
    return rows


def _relation_label(name: str) -> str:
    r"""A short relation name; MoMoK's inverse relations (:obj:`"<name>^-1"`) get a
    superscript :math:`-1`."""
    if name.endswith('^-1'):
        return _short(name[:-3]) + '\u207b\u00b9'
    return _short(name)


def _expert_color(k: int, K: int):
    from matplotlib import colormaps
    cmap = colormaps['Set2' if K <= 8 else 'tab20']
    return cmap(k % cmap.N)


def _stacked_barh(ax, ys, parts: List[List[float]], colors, labels, label_min: float = 0.15):
    r"""Horizontal bars stacked from the columns of :obj:`parts` (NaN rows are left out),
    segments of at least :obj:`label_min` labelled with their share."""
    left = [0.0] * len(ys)
    for j, (color, label) in enumerate(zip(colors, labels)):
        widths = [row[j] for row in parts]
        ok = [not math.isnan(x) for x in widths]
        bars = ax.barh([y for y, o in zip(ys, ok) if o], [x for x, o in zip(widths, ok) if o],
                       left=[x for x, o in zip(left, ok) if o], color=color, label=label,
                       edgecolor='white', linewidth=0.5, height=0.7)
        texts = [f'{x:.0%}' if x >= label_min else '' for x, o in zip(widths, ok) if o]
        ax.bar_label(bars, labels=texts, label_type='center', fontsize='x-small')
        left = [a + (x if o else 0.0) for a, x, o in zip(left, widths, ok)]
    for y, row in zip(ys, parts):
        if all(math.isnan(x) for x in row):
            ax.text(0.5, y, 'no queries with it', ha='center', va='center',
                    fontsize='x-small', color='0.4')


# LBMKGC: per-entity modality weights (Figure 4) ###############################################

@dataclass
class EntityModalityWeights:
    r"""Per-entity modality weights :math:`\omega_m(e)` of a trained model, returned by
    :func:`entity_modality_weights`, all on the CPU.

    Attributes:
        modalities (List[str]): The :math:`M` modalities (columns; no structure).
        entity_names (List[str]): The :math:`N` entity names.
        weights (Tensor): :math:`[N, M]`, :math:`\omega_m(e)` as the model computes it.
        mask (Tensor): :math:`[N, M]` bool, whether entity :math:`e` has modality :math:`m`.
            Statistics and plots use only the weights where it is :obj:`True`.
    """
    modalities: List[str]
    entity_names: List[str]
    weights: Tensor
    mask: Tensor

    def present(self, modality: str) -> Tensor:
        r"""The weights :math:`\omega_m(e)` of the entities that have :obj:`modality`."""
        j = self.modalities.index(modality)
        return self.weights[self.mask[:, j], j]

    def summary(self) -> Dict[str, Dict[str, Optional[float]]]:
        r"""Per modality, over the entities that have it: :obj:`count`, :obj:`mean`,
        :obj:`std` (biased), :obj:`min`, :obj:`median`, :obj:`max` (:obj:`None` without
        entities)."""
        out = {}
        for m in self.modalities:
            x = self.present(m).double()
            if x.numel() == 0:
                out[m] = {'count': 0, 'mean': None, 'std': None, 'min': None,
                          'median': None, 'max': None}
                continue
            out[m] = {'count': int(x.numel()), 'mean': float(x.mean()),
                      'std': float(x.std(unbiased=False)), 'min': float(x.min()),
                      'median': float(x.quantile(0.5)), 'max': float(x.max())}
        return out

    def histogram(self, bins: int = 20) -> Dict[str, List[int]]:
        r"""Per modality, the counts of its present weights in :obj:`bins` equal bins of
        :math:`[0, 1]` (the bars of the figure's panel (a))."""
        return {m: torch.histc(self.present(m).double(), bins, 0.0, 1.0).long().tolist()
                for m in self.modalities}

    def to_dict(self) -> Dict[str, Any]:
        r"""A JSON-serialisable summary: the modalities, :meth:`summary`, :meth:`histogram`
        (20 bins) and per entity its weights (:obj:`None` where the modality is missing)."""
        return {
            'modalities': list(self.modalities),
            'summary': self.summary(),
            'histogram': {'bins': 20, 'counts': self.histogram(20)},
            'entities': {name: [float(w) if k else None for w, k in zip(row, keep)]
                         for name, row, keep in zip(self.entity_names, self.weights.tolist(),
                                                    self.mask.tolist())},
        }

    def select(self, num_entities: int = 6) -> List[int]:
        r"""The ids of :obj:`num_entities` entities with every modality, spread over the
        range of the first modality's weight (at evenly spaced quantiles), for panel (b)."""
        full = self.mask.all(dim=1).nonzero().view(-1)
        if full.numel() == 0 or num_entities < 1:
            return []
        order = full[torch.argsort(self.weights[full, 0], stable=True)]
        n = min(num_entities, order.numel())
        if n == 1:
            return [int(order[order.numel() // 2])]
        pos = [round(i * (order.numel() - 1) / (n - 1)) for i in range(n)]
        return [int(order[p]) for p in pos]

    def plot(self, path: Optional[str] = None,
             entities: Optional[Sequence[Union[int, str]]] = None, num_entities: int = 6,
             bins: int = 20):
        r"""Draws the paper's Figure 4: (a) the histogram of each modality's weight over the
        entities that have it (side by side per bin; an entity with a single modality gives
        it weight 1), (b) the weights of some entities as stacked bars.

        Args:
            path (str, optional): If given, the figure is also saved there.
                (default: :obj:`None`)
            entities (Sequence[int or str], optional): The entities of panel (b), by id or
                name. (default: :meth:`select` of :obj:`num_entities`)
            num_entities (int, optional): (default: :obj:`6`)
            bins (int, optional): Histogram bins over :math:`[0, 1]`. (default: :obj:`20`)

        Returns:
            matplotlib.figure.Figure: the figure.
        """
        Figure = _matplotlib('EntityModalityWeights.plot()')
        from matplotlib.ticker import MaxNLocator, PercentFormatter
        if entities is None:
            rows = self.select(num_entities)
        else:
            rows = _rows(entities, self.entity_names, 'entities', 'entity')
        fig = Figure(figsize=(11, max(3.6, 0.45 * len(rows) + 2.0)), layout='constrained')
        ax_hist, ax_bar = fig.subplots(1, 2, width_ratios=[1, 1.2])

        shown = [(j, m, self.present(m).tolist()) for j, m in enumerate(self.modalities)]
        shown = [(j, m, x) for j, m, x in shown if x]
        if shown:  # side by side per bin, one colour per modality
            _, _, groups = ax_hist.hist([x for _, _, x in shown], bins=bins, range=(0.0, 1.0),
                                        color=[f'C{j}' for j, _, _ in shown],
                                        label=[f'{m} ({len(x)} entities)' for _, m, x in shown],
                                        edgecolor='white', linewidth=0.5)
            top = max(p.get_height() for g in (groups if len(shown) > 1 else [groups])
                      for p in g)
            ax_hist.set_ylim(0, 1.3 * top + 0.5)  # room for the legend above the bars
            ax_hist.legend(loc='upper center', ncols=len(shown), fontsize='small')
        else:
            ax_hist.text(0.5, 0.5, 'no entity has a modality', ha='center', va='center',
                         transform=ax_hist.transAxes)
        ax_hist.set_xlim(0.0, 1.0)
        ax_hist.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax_hist.set_xlabel(r'modality weight $\omega_m(e)$')
        ax_hist.set_ylabel('entities')
        ax_hist.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax_hist.set_title('(a) Weights over the entities having the modality',
                          fontsize='medium')

        if rows:
            ys = list(range(len(rows)))
            parts = [[w if k else math.nan for w, k in zip(self.weights[i].tolist(),
                                                           self.mask[i].tolist())]
                     for i in rows]
            parts = [[0.0 if math.isnan(x) and not all(math.isnan(y) for y in row) else x
                      for x in row] for row in parts]
            _stacked_barh(ax_bar, ys, parts, [f'C{j}' for j in range(len(self.modalities))],
                          self.modalities)
            ax_bar.set_yticks(ys, [_short(self.entity_names[i]) for i in rows])
            ax_bar.invert_yaxis()
            ax_bar.legend(loc='upper center', bbox_to_anchor=(0.5, -0.14),
                          ncols=len(self.modalities), fontsize='small', frameon=False)
        else:
            ax_bar.text(0.5, 0.5, 'no entity with every modality', ha='center', va='center',
                        transform=ax_bar.transAxes)
            ax_bar.set_yticks([])
        ax_bar.set_xlim(0.0, 1.0)
        ax_bar.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax_bar.set_xlabel('share of the fused multi-modal embedding')
        ax_bar.set_title('(b) Modality weights of single entities', fontsize='medium')
        return _save(fig, path)


def entity_modality_weights(model, data=None, entity_names: Optional[Sequence[str]] = None,
                            batch_size: int = 4096) -> EntityModalityWeights:
    r"""The modality weights :math:`\omega_m(e)` of every entity of a trained
    :class:`~torch_mmkg.nn.LBMKGC` (CGuAF's first stage, Eq. 9 of the `"Large Model-Driven
    Balanced Multimodal Knowledge Graph Completion" <https://github.com/guoynow/LBMKGC>`_
    paper, its Figure 4),

    .. math::
        \omega_m(e) = \frac{\exp\big(\mathbf{v}^{\top}\tanh(\mathbf{e}_m)\big)}
        {\sum_{n \in M_e} \exp\big(\mathbf{v}^{\top}\tanh(\mathbf{e}_n)\big)},

    over the modalities :math:`M_e` entity :math:`e` has (all of them with
    :obj:`mask_missing=False`), from :obj:`model.modality_stack` and
    :obj:`model.modality_weights`, in evaluation mode without gradients, in batches of
    entities. Works with any model that has :obj:`modalities`, :obj:`modality_stack(index)`
    and :obj:`modality_weights(stack, mask)` returning :math:`[*, M]`.

    **Missing modalities are excluded** from the statistics and the figure: the result keeps
    the availability mask, and :meth:`EntityModalityWeights.summary`,
    :meth:`~EntityModalityWeights.histogram` and :meth:`~EntityModalityWeights.plot` count
    :math:`\omega_m(e)` only for the entities that have :math:`m` (a masked modality's
    weight is 0 with :obj:`mask_missing=True`, and the weight of a zero or random stand-in
    row with :obj:`mask_missing=False`).

    Args:
        model (LBMKGC): The trained model.
        data (HeteroData, optional): Its graph, for the entity names
            (:obj:`data["entity"].name`). (default: :obj:`None`)
        entity_names (Sequence[str], optional): The :math:`N` names (default: the graph's,
            else :obj:`"e0"`, :obj:`"e1"`, ...).
        batch_size (int, optional): Entities per forward pass. (default: :obj:`4096`)
    """
    missing = [a for a in ('modalities', 'modality_stack', 'modality_weights')
               if not hasattr(model, a)]
    if missing:
        raise TypeError(f"entity_modality_weights needs a model with modalities, "
                        f"modality_stack() and modality_weights() (such as LBMKGC); "
                        f"{type(model).__name__} lacks {', '.join(missing)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    N, M = int(model.num_nodes), len(model.modalities)
    names = _entity_names(data, entity_names, N)
    device = _device(model)
    weights, masks = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, N, batch_size):
                index = torch.arange(start, min(start + batch_size, N), device=device)
                stack, mask = model.modality_stack(index)
                w = model.modality_weights(stack, mask)
                if w.shape != (index.numel(), M):
                    raise ValueError(f"modality_weights returned shape {tuple(w.shape)}, "
                                     f"expected ({index.numel()}, {M})")
                weights.append(w.float().cpu())
                masks.append(mask[:, -M:].bool().cpu())
    finally:
        model.train(was_training)
    return EntityModalityWeights(modalities=list(model.modalities), entity_names=names,
                                 weights=torch.cat(weights), mask=torch.cat(masks))


def _entity_names(data, names, N: int) -> List[str]:
    if names is None and data is not None:
        from torch_mmkg.data.mmkg import ENTITY
        names = getattr(data[ENTITY], 'name', None) if 'name' in data[ENTITY] else None
    if names is None:
        return [f'e{i}' for i in range(N)]
    names = [str(n) for n in names]
    if len(names) != N:
        raise ValueError(f"got {len(names)} entity names for {N} entities")
    return names


# Robustness curves ###########################################################################

@dataclass
class RobustnessCurve:
    r"""A model's link prediction against the rate of dropped modality information,
    returned by :func:`robustness_curve`.

    Attributes:
        label (str): The curve's name in plots (e.g. the method).
        rates (List[float]): The rates, in the order evaluated.
        metrics (List[Dict[str, float]]): Per rate, MRR, MR, Hits@k and the query count
            (filtered, both sides, realistic ranks, as :class:`~torch_mmkg.training.Trainer`
            reports them).
        modalities (List[str], optional): The dropped modalities (:obj:`None`: all, or a
            custom transform).
        settings (Dict[str, Any]): The split and the drop's level, fill, relative_to, seed.
    """
    label: str
    rates: List[float]
    metrics: List[Dict[str, float]]
    modalities: Optional[List[str]] = None
    settings: Dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str = 'mrr') -> List[float]:
        r"""The values of one metric, one per rate."""
        if self.metrics and name not in self.metrics[0]:
            raise ValueError(f"unknown metric {name!r}, have {sorted(self.metrics[0])}")
        return [m[name] for m in self.metrics]

    @property
    def mrr(self) -> List[float]:
        return self.metric('mrr')

    def to_dict(self) -> Dict[str, Any]:
        return {'label': self.label, 'rates': list(self.rates),
                'metrics': [dict(m) for m in self.metrics],
                'modalities': None if self.modalities is None else list(self.modalities),
                'settings': dict(self.settings)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> 'RobustnessCurve':
        return cls(label=d['label'], rates=list(d['rates']), metrics=list(d['metrics']),
                   modalities=d.get('modalities'), settings=dict(d.get('settings', {})))

    def plot(self, path: Optional[str] = None, metric: str = 'mrr',
             others: Sequence['RobustnessCurve'] = ()):
        r"""Draws this curve (and :obj:`others`, e.g. other methods); see
        :func:`plot_robustness_curves`."""
        return plot_robustness_curves([self, *others], path, metric)


def robustness_curve(model: Any, data, rates: Sequence[float],
                     modality: Union[None, str, Sequence[str]] = None, *,
                     build: Optional[Callable] = None,
                     state_dict: Optional[Mapping[str, Tensor]] = None,
                     split: str = 'test', level: str = 'entity', fill: str = 'zeros',
                     relative_to: str = 'present', seed: int = 0,
                     transform: Optional[Callable[[float], Callable]] = None,
                     known=None, batch_size: Optional[int] = None,
                     label: Optional[str] = None) -> RobustnessCurve:
    r"""Evaluates a trained model on :obj:`split` after dropping modality information at
    each rate in :obj:`rates` with :class:`~torch_mmkg.transforms.DropModality` (the
    missing-modality robustness studies of NATIVE's Figure 4 and LBMKGC's Figure 3, with
    evaluation-time drops).

    Multi-modal models copy the entity features into buffers when they are built
    (:meth:`from_data`), and some derive more from them (normalised rows, literal
    statistics): dropping from the graph after training cannot reach them. So at every
    rate the model is **rebuilt on the transformed graph** and the trained weights are
    loaded into it (features are not in the state dict, except trainable feature tables):

    * :obj:`model` a trained module and no :obj:`build`:
      :obj:`type(model).from_data(graph, model.hidden_channels,
      modalities=model.modalities)`, checked to reproduce the model's hyper-parameters
      (else a :class:`ValueError` asks for :obj:`build`);
    * :obj:`build(graph) -> model`, a callable building the same architecture (e.g.
      :obj:`lambda g: MoMoK.from_data(g, 256, num_experts=3)`), with the weights of
      :obj:`model` or :obj:`state_dict`;
    * :obj:`model` itself a callable that is not a module: the builder; with
      :obj:`state_dict` the weights loaded into each built model, without it the built
      model is used as it is (e.g. a function that trains on the transformed graph, for
      the train-time robustness protocol).

    Trainable feature tables (e.g. MoMoK's fine-tuned features) are in the state dict:
    after loading, the rows of the dropped (entity, modality) pairs are set back to the
    rebuilt model's (filled) rows, so that the trained values of dropped information do not
    leak back. Rate :math:`0` evaluates the untouched graph (no transform); with one seed
    for all rates the drops are nested (a higher rate drops a superset), so the curve
    compares like with like. The filter (:obj:`known`) is the graph's train + valid + test
    triples, which no drop changes. At rate :math:`0` a
    :class:`~torch_mmkg.nn.FeatureMismatchWarning` says that :obj:`data` is not the graph
    the weights were trained on; at other rates it is expected and silenced.

    Args:
        model (torch.nn.Module or Callable): The trained model, or a builder (see above).
        data (HeteroData): The graph the model was trained on.
        rates (Sequence[float]): The rates in :math:`[0, 1]`.
        modality (str or Sequence[str], optional): The modalities to drop from
            (:obj:`None`: all of them). (default: :obj:`None`)
        build (Callable, optional): :obj:`build(graph) -> model` (see above).
        state_dict (Mapping, optional): The trained weights (default: :obj:`model`'s).
        split (str, optional): The evaluated split. (default: :obj:`"test"`)
        level (str, optional): :obj:`"entity"` or :obj:`"modality"` (see
            :class:`~torch_mmkg.transforms.DropModality`). (default: :obj:`"entity"`)
        fill (str, optional): :obj:`"zeros"` or :obj:`"random"`. (default: :obj:`"zeros"`)
        relative_to (str, optional): :obj:`"present"` (a rate is the share of the present
            information dropped, defined whatever is missing already) or :obj:`"all"` (the
            share missing afterwards, NATIVE's :math:`\eta`, which must be at least what is
            missing already). (default: :obj:`"present"`)
        seed (int, optional): The seed of every drop. (default: :obj:`0`)
        transform (Callable, optional): :obj:`transform(rate)` returning the graph
            transform to apply instead of :class:`~torch_mmkg.transforms.DropModality`
            (e.g. :class:`~torch_mmkg.transforms.AddModalityNoise`); the drop arguments
            are then unused. (default: :obj:`None`)
        known (KnownTriples, optional): The filter. (default: train + valid + test)
        batch_size (int, optional): Evaluation batch size. (default: :obj:`None`)
        label (str, optional): The curve's label (default: the model's class name).
    """
    from torch_mmkg.data import KnownTriples, get_triples
    from torch_mmkg.data.mmkg import ENTITY, get_modalities, mask_key
    from torch_mmkg.evaluation import RankingEvaluator
    from torch_mmkg.transforms import DropModality

    rates = [float(r) for r in rates]
    if not rates:
        raise ValueError("rates must hold at least one rate")
    bad = [r for r in rates if not 0.0 <= r <= 1.0]
    if bad:
        raise ValueError(f"rates must lie in [0, 1], got {bad}")
    modalities = [modality] if isinstance(modality, str) else (
        None if modality is None else list(modality))
    available = get_modalities(data)
    if modalities is not None:
        unknown = [m for m in modalities if m not in available]
        if unknown:
            raise ValueError(f"modality {unknown} is not in the graph (it has {available})")

    trained = model if isinstance(model, torch.nn.Module) else None
    if trained is None:
        if not callable(model):
            raise TypeError(f"model must be a trained torch.nn.Module or a callable "
                            f"build(graph) -> model, got {type(model).__name__}")
        if build is not None:
            raise ValueError("pass the builder either as model or as build, not both")
        build = model
    if state_dict is None and trained is not None:
        state_dict = trained.state_dict()
    if build is None:
        build = _default_build(trained, data)
    if label is None:
        label = type(trained).__name__ if trained is not None else getattr(
            build, '__name__', 'model')
    device = _device(trained) if trained is not None else None

    triples = get_triples(data, split)
    known = KnownTriples.from_data(data, 'all') if known is None else known
    evaluator = RankingEvaluator(known, batch_size)
    results = []
    for rate in rates:
        if rate == 0.0:
            graph = data
        elif transform is not None:
            graph = transform(rate)(copy.copy(data))
        else:
            graph = DropModality(rate, level=level, modalities=modalities, fill=fill,
                                 relative_to=relative_to, seed=seed)(data)
        dropped = {m: data[ENTITY][mask_key(m)] & ~graph[ENTITY][mask_key(m)]
                   for m in get_modalities(graph) if m in available}
        with warnings.catch_warnings():
            if graph is not data:  # the features differ from the trained model's on purpose
                from torch_mmkg.nn.kge.base import FeatureMismatchWarning
                warnings.simplefilter('ignore', FeatureMismatchWarning)
            net = _rebuild(build, graph, state_dict, dropped, device)
        res = evaluator.evaluate(net, *triples)
        results.append(res.metrics('realistic', 'both'))
    settings = {'split': split}
    if transform is None:
        settings.update(level=level, fill=fill, relative_to=relative_to, seed=seed)
    else:
        settings['transform'] = getattr(transform, '__name__', type(transform).__name__)
    return RobustnessCurve(label=str(label), rates=rates, metrics=results,
                           modalities=modalities, settings=settings)


def _default_build(model, data) -> Callable:
    cls = type(model)
    if not callable(getattr(cls, 'from_data', None)) or not hasattr(model, 'hidden_channels'):
        raise TypeError(f"{cls.__name__} cannot be rebuilt on a transformed graph "
                        f"automatically (no from_data/hidden_channels): pass "
                        f"build=lambda graph: <the model built on graph>")
    kwargs = {}
    if getattr(model, 'modalities', None) is not None:
        kwargs['modalities'] = list(model.modalities)

    def build(graph):
        return cls.from_data(graph, model.hidden_channels, **kwargs)

    from torch_mmkg.training.trainer import model_signature
    try:
        probe = build(data)
    except Exception as e:
        raise ValueError(f"could not rebuild {cls.__name__} with from_data(graph, "
                         f"{model.hidden_channels}, **{kwargs}) ({e}): pass build=lambda "
                         f"graph: <the model built on graph>") from e
    want, got = model_signature(model), model_signature(probe)
    diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    if diff:
        raise ValueError(f"{cls.__name__}.from_data with default arguments does not rebuild "
                         f"this model (differs in {', '.join(diff[:5])}"
                         f"{', ...' if len(diff) > 5 else ''}): pass build=lambda graph: "
                         f"{cls.__name__}.from_data(graph, ...) with its arguments")
    build.__name__ = cls.__name__
    return build


def _rebuild(build, graph, state_dict, dropped: Dict[str, Tensor], device):
    net = build(graph)
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"build(graph) must return a model, got {type(net).__name__}")
    if device is not None:
        net = net.to(device)
    if state_dict is None:
        return net
    keys = {f'x_{m}': rows for m, rows in dropped.items() if bool(rows.any())}
    fresh = {name: p.detach().clone() for name, p in net.named_parameters()
             if name.rsplit('.', 1)[-1] in keys}
    net.load_state_dict(state_dict)
    with torch.no_grad():
        for name, init in fresh.items():
            rows = keys[name.rsplit('.', 1)[-1]]
            p = net.get_parameter(name)
            if p.dim() >= 1 and p.size(0) == rows.numel():
                rows = rows.to(p.device)
                p[rows] = init[rows]
    return net


def plot_robustness_curves(curves: Sequence[RobustnessCurve], path: Optional[str] = None,
                           metric: str = 'mrr'):
    r"""Draws one or more :class:`RobustnessCurve` (e.g. one per method): :obj:`metric`
    against the rate, one line with markers per curve.

    Args:
        curves (Sequence[RobustnessCurve]): The curves (or their :meth:`to_dict`).
        path (str, optional): If given, the figure is also saved there.
        metric (str, optional): :obj:`"mrr"`, :obj:`"mr"`, :obj:`"hits@1"`, ...
            (default: :obj:`"mrr"`)

    Returns:
        matplotlib.figure.Figure: the figure.
    """
    Figure = _matplotlib('plot_robustness_curves()')
    from matplotlib.ticker import PercentFormatter
    curves = [c if isinstance(c, RobustnessCurve) else RobustnessCurve.from_dict(c)
              for c in ([curves] if isinstance(curves, RobustnessCurve) else curves)]
    if not curves:
        raise ValueError("no curves to plot")
    fig = Figure(figsize=(6.4, 4.4), layout='constrained')
    ax = fig.subplots()
    markers = 'osD^vP*X'
    for i, c in enumerate(curves):
        ax.plot(c.rates, c.metric(metric), marker=markers[i % len(markers)], label=c.label)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    mods = {tuple(c.modalities) if c.modalities else None for c in curves}
    what = 'modality' if len(mods) != 1 or None in mods else '/'.join(next(iter(mods)))
    rel = {c.settings.get('relative_to') for c in curves}
    if rel == {'all'}:
        ax.set_xlabel(f'missing rate $\\eta$ ({what} information missing)')
    elif rel == {'present'}:
        ax.set_xlabel(f'drop rate (share of present {what} information dropped)')
    else:
        ax.set_xlabel('rate')
    name = {'mrr': 'MRR', 'mr': 'MR'}.get(metric, metric.replace('hits@', 'Hits@'))
    split = {c.settings.get('split', 'test') for c in curves}
    ax.set_ylabel(f'{name} ({"/".join(sorted(split))}, filtered)')
    ax.set_title(f'Link prediction with {what} information dropped', fontsize='medium')
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small')
    return _save(fig, path)


# Training curves #############################################################################

@dataclass
class TrainingCurves:
    r"""The per-epoch history of a run, returned by :func:`training_curves`.

    Attributes:
        epochs (List[int]): The epochs, ascending.
        loss (List[float]): The mean training loss of each epoch.
        val_epochs (List[int]): The validation epochs.
        val (Dict[str, List[float]]): Per metric, its value at each validation epoch.
        records (List[Dict]): The records, one per epoch.
    """
    epochs: List[int]
    loss: List[float]
    val_epochs: List[int]
    val: Dict[str, List[float]]
    records: List[Dict[str, Any]]

    def best(self, metric: str = 'mrr'):
        r"""The :obj:`(epoch, value)` of the best validation value (smallest for MR, else
        largest; the first on ties), or :obj:`None` without validation."""
        values = self.val.get(metric)
        if not values:
            return None
        pick = min if metric in _MINIMIZED else max
        i = values.index(pick(values))
        return self.val_epochs[i], values[i]

    def to_dict(self) -> Dict[str, Any]:
        return {'epochs': list(self.epochs), 'loss': list(self.loss),
                'val_epochs': list(self.val_epochs),
                'val': {k: list(v) for k, v in self.val.items()}}

    def plot(self, path: Optional[str] = None, metric: str = 'mrr'):
        r"""Draws (a) the training loss per epoch and (b) the validation :obj:`metric` per
        validation epoch with its best epoch marked.

        Returns:
            matplotlib.figure.Figure: the figure.
        """
        Figure = _matplotlib('TrainingCurves.plot()')
        from matplotlib.ticker import MaxNLocator
        fig = Figure(figsize=(10, 3.8), layout='constrained')
        ax_loss, ax_val = fig.subplots(1, 2)
        if self.epochs:
            ax_loss.plot(self.epochs, self.loss, color='C0',
                         marker='o' if len(self.epochs) <= 30 else None, markersize=3)
        else:
            ax_loss.text(0.5, 0.5, 'no epochs', ha='center', va='center',
                         transform=ax_loss.transAxes)
        ax_loss.set_xlabel('epoch')
        ax_loss.set_ylabel('training loss')
        ax_loss.set_title('(a) Training loss', fontsize='medium')
        name = {'mrr': 'MRR', 'mr': 'MR'}.get(metric, metric.replace('hits@', 'Hits@'))
        values = self.val.get(metric, [])
        if values:
            ax_val.plot(self.val_epochs, values, color='C1', marker='o', markersize=3,
                        label=f'validation {name}')
            epoch, value = self.best(metric)
            ax_val.plot([epoch], [value], linestyle='none', marker='*', markersize=13,
                        color='C3', label=f'best: {value:.4g} (epoch {epoch})')
            ax_val.legend(fontsize='small')
            ax_val.margins(y=0.12)  # the best marker clear of the frame
        else:
            ax_val.text(0.5, 0.5, f'no validation {name}', ha='center', va='center',
                        transform=ax_val.transAxes)
        ax_val.set_xlabel('epoch')
        ax_val.set_ylabel(f'validation {name}')
        ax_val.set_title(f'(b) Validation {name}', fontsize='medium')
        for ax in (ax_loss, ax_val):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if self.epochs:
                ax.set_xlim(min(self.epochs) - 0.5, max(self.epochs) + 0.5)
        return _save(fig, path)


def training_curves(source: Union[str, Sequence[Mapping[str, Any]]]) -> TrainingCurves:
    r"""The training loss and validation metrics per epoch of a run.

    Args:
        source (str or Sequence[dict]): A run directory (its :obj:`history.jsonl`, one JSON
            record per line, if present, else :obj:`results.json`'s :obj:`"history"`), one
            of those files, or the records themselves: :obj:`{"epoch": int, "loss": float,
            "val": {"mrr": ..., ...}}` with :obj:`"val"` on validation epochs only. When an
            epoch appears more than once (a resumed run appends again), its last record
            counts; an unreadable last line of :obj:`history.jsonl` (a run killed while
            writing) is skipped with a warning.
    """
    records = _history(source)
    by_epoch: Dict[int, Dict[str, Any]] = {}
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping) or 'epoch' not in rec:
            raise ValueError(f"history record {i} has no 'epoch': {rec!r}")
        by_epoch[int(rec['epoch'])] = dict(rec)
    records = [by_epoch[e] for e in sorted(by_epoch)]
    epochs = [int(r['epoch']) for r in records if r.get('loss') is not None]
    loss = [float(r['loss']) for r in records if r.get('loss') is not None]
    val_records = [r for r in records if isinstance(r.get('val'), Mapping)]
    keys = []
    for r in val_records:
        keys += [k for k in r['val'] if k not in keys]
    val = {k: [float(r['val'][k]) for r in val_records if k in r['val']] for k in keys}
    val_epochs = [int(r['epoch']) for r in val_records]
    ragged = [k for k, v in val.items() if len(v) != len(val_epochs)]
    for k in ragged:  # a metric only some validations report
        val[k] = [float(r['val'].get(k, math.nan)) for r in val_records]
    return TrainingCurves(epochs=epochs, loss=loss, val_epochs=val_epochs, val=val,
                          records=records)


def plot_training_curves(run_dir_or_history: Union[str, Sequence[Mapping[str, Any]]],
                         path: Optional[str] = None, metric: str = 'mrr'):
    r"""Draws the training loss and the validation :obj:`metric` per epoch of a run (see
    :func:`training_curves` for the sources and :meth:`TrainingCurves.plot`).

    Returns:
        matplotlib.figure.Figure: the figure.
    """
    _matplotlib('plot_training_curves()')
    return training_curves(run_dir_or_history).plot(path, metric)


def _history(source) -> List[Any]:
    if not isinstance(source, (str, bytes)) and hasattr(source, '__fspath__'):
        source = str(source)
    if not isinstance(source, str):
        if isinstance(source, Mapping) and 'history' in source:  # a results dict
            return list(source['history'])
        return list(source)
    if osp.isdir(source):
        jsonl = osp.join(source, 'history.jsonl')
        results = osp.join(source, 'results.json')
        if osp.exists(jsonl):
            return _read_jsonl(jsonl)
        if osp.exists(results):
            return _read_results(results)
        raise FileNotFoundError(f"{source} holds neither history.jsonl nor results.json")
    if not osp.exists(source):
        raise FileNotFoundError(f"no run directory or history file {source}")
    if source.endswith('.jsonl'):
        return _read_jsonl(source)
    return _read_results(source)


def _read_jsonl(path: str) -> List[Any]:
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                warnings.warn(f"{path}: skipping its unreadable last line (a run stopped while "
                              f"writing it?)")
                break
            raise ValueError(f"{path}, line {i + 1}: not JSON ({e})") from e
    return out


def _read_results(path: str) -> List[Any]:
    with open(path) as f:
        results = json.load(f)
    if not isinstance(results, Mapping) or 'history' not in results:
        raise ValueError(f"{path} has no 'history' list")
    return list(results['history'])
