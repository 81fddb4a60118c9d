r"""Training regimes, outside the model: how a batch becomes a loss.

A regime owns the batches (:meth:`TrainingRegime.loader`) and the loss of a batch
(:meth:`TrainingRegime.loss`); models only score (:meth:`~torch_mmkg.nn.KGEModel.score_batch`
for sampled candidates, :meth:`~torch_mmkg.nn.KGEModel.score_queries` for 1-N), so every model
trains under every regime. Extra training signals (penalties, alignment, CLUB) travel in the
explicit return values, :class:`ScoredBatch`/:class:`QueryScores` and :class:`RegimeOutput`.

A regime may own trainable parts (KBGAN's generator, MMRNS's cross-modal attention): it is a
:class:`torch.nn.Module`, builds those parts for its model in :meth:`TrainingRegime.bind`,
hands them to the optimiser as parameter groups of their own (:meth:`TrainingRegime.
param_groups`, e.g. with their own learning rate) and keeps them, with any running statistic,
in its :meth:`~torch.nn.Module.state_dict`, which a checkpoint saves and restores with the
model's. One backward pass and one optimiser step serve the model and the regime's parts: a
part trained by its own objective (a REINFORCE generator) adds a surrogate term to the loss
whose gradient reaches that part only. :meth:`TrainingRegime.start_epoch` tells a regime with
a schedule where training stands. The regimes that need nothing of this (negative sampling,
1-N) hold no parameters and no state.
"""
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_mmkg.loader import NegativeSampler
from torch_mmkg.loader.negative_sampler import SIDE_PER
from torch_mmkg.nn.loss import ONE_TO_N_LOSSES, BCELoss, KGELoss, SoftplusLoss
from torch_mmkg.registry import Registry

__all__ = ['ScoredBatch', 'QueryScores', 'RegimeOutput', 'TrainingRegime', 'NegativeSampling',
           'OneToN', 'REGIMES']


class ScoredBatch(NamedTuple):
    r"""A negative-sampling batch scored by a model.

    Attributes:
        views: Per scorer (one for most models; one per view for an ensemble such as MoMoK),
            :obj:`(rows, positive, negative)`: the rows of the batch it judges
            (:obj:`None`: all), their positive scores :math:`[b]` and negative scores
            :math:`[b, K]`.
        terms: Extra loss terms, already weighted (e.g. :obj:`"regularization"`).
        context: What auxiliary objectives need of the batch (e.g. :obj:`"entity_index"`).
    """
    views: List[Tuple[Optional[Tensor], Tensor, Tensor]]
    terms: Dict[str, Tensor]
    context: Dict[str, Any]


class QueryScores(NamedTuple):
    r"""1-N queries scored by a model.

    Attributes:
        views: Per scorer, :obj:`(rows, logits, weight)`: the queries it judges
            (:obj:`None`: all), their logits :math:`[b, N]` and the candidate weights
            :math:`[1, N]` (:obj:`None`: every candidate).
        terms: Extra loss terms, already weighted.
        context: What auxiliary objectives need of the batch.
    """
    views: List[Tuple[Optional[Tensor], Tensor, Optional[Tensor]]]
    terms: Dict[str, Tensor]
    context: Dict[str, Any]


class RegimeOutput(NamedTuple):
    r"""The loss of a batch (:obj:`loss`, the scorers' losses plus every term), its extra
    :obj:`terms` and the :obj:`context` of the batch (for
    :meth:`~torch_mmkg.nn.KGEModel.auxiliary_loss`)."""
    loss: Tensor
    terms: Dict[str, Tensor]
    context: Dict[str, Any]


def _total(losses: Sequence[Tensor], terms: Dict[str, Tensor], like: Tensor) -> Tensor:
    out = None
    for x in losses:
        out = x if out is None else out + x
    if out is None:  # no scorer judged any row of the batch
        out = like.new_zeros(())
    for x in terms.values():
        out = out + x
    return out


class TrainingRegime(torch.nn.Module):
    r"""The abstract base of training regimes.

    A regime is a :class:`torch.nn.Module` so that it may own trainable parts and running
    statistics (see the module's description): :meth:`bind` builds them for a model,
    :meth:`param_groups` hands them to the optimiser, :meth:`~torch.nn.Module.state_dict`
    checkpoints them, :meth:`start_epoch` follows the schedule. By default a regime has none.

    Args:
        loss (torch.nn.Module, optional): The loss (default: the model's own loss where it
            fits the regime, else the regime's default).
    """
    #: The canonical name (see :data:`REGIMES`).
    name: str = ''

    def __init__(self, loss: Optional[torch.nn.Module] = None):
        torch.nn.Module.__init__(self)
        if loss is not None and not self.accepts(loss):
            raise ValueError(f"{type(self).__name__} cannot train with "
                             f"{type(loss).__name__}")
        self.loss_fn = loss

    @staticmethod
    def accepts(loss: torch.nn.Module) -> bool:
        r"""Whether :obj:`loss` is a loss of this regime."""
        raise NotImplementedError

    def default_loss(self) -> torch.nn.Module:
        raise NotImplementedError

    def loss_for(self, model) -> torch.nn.Module:
        r"""The loss used for :obj:`model`: the regime's, the model's own if it fits, or
        the regime's default."""
        if self.loss_fn is not None:
            return self.loss_fn
        own = getattr(model, 'loss_fn', None)
        return own if own is not None and self.accepts(own) else self.default_loss()

    def bind(self, model, data=None) -> 'TrainingRegime':
        r"""Builds what the regime trains for :obj:`model` (and the graph :obj:`data` it is
        trained on, where a part needs its features), on the model's device and dtype, once,
        before the optimiser is made; returns the regime. Nothing by default."""
        return self

    def param_groups(self) -> List[Dict[str, Any]]:
        r"""The regime's own trainable parameters as optimiser parameter groups (dicts with
        :obj:`"params"` and, where they differ from the run's, :obj:`"lr"` or
        :obj:`"weight_decay"`), stepped with the model's by one optimiser. None by
        default."""
        return []

    def start_epoch(self, epoch: int, num_epochs: Optional[int] = None):
        r"""Called before training epoch :obj:`epoch` (from 1) of :obj:`num_epochs`, for
        regimes with a schedule. Nothing by default."""

    def loader(self, model, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
               **kwargs):
        r"""A loader of training batches over the given triples."""
        raise NotImplementedError

    def loss(self, model, batch: Sequence) -> RegimeOutput:
        r"""The loss of one batch from :meth:`loader`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f'{type(self).__name__}(loss={self.loss_fn!r})'


class NegativeSampling(TrainingRegime):
    r"""Negative sampling: :math:`K` corrupted triples per positive (uniform or Bernoulli,
    optionally filtered, optionally twins) scored by
    :meth:`~torch_mmkg.nn.KGEModel.score_batch`, and a
    :class:`~torch_mmkg.nn.loss.KGELoss` of the positive and negative scores (summed over
    the scorers of an ensemble), plus the model's terms.

    Args:
        loss (KGELoss, optional): (default: the model's own, else
            :class:`~torch_mmkg.nn.loss.SoftplusLoss`, the logistic loss, natural for
            models whose scores are logits)
        num_negatives (int, optional): :math:`K` per positive. (default: :obj:`1`)
        strategy (str, optional): :obj:`"uniform"` or :obj:`"bernoulli"`.
            (default: :obj:`"uniform"`)
        twins (bool, optional): Twins negatives. (default: :obj:`False`)
        side_per (str, optional): Draw the corrupted side once per :obj:`"positive"` or
            once per :obj:`"negative"` (OpenKE's sampler, see
            :class:`~torch_mmkg.loader.NegativeSampler`). (default: :obj:`"positive"`)
    """
    name = 'negative_sampling'

    def __init__(self, loss: Optional[torch.nn.Module] = None, num_negatives: int = 1,
                 strategy: str = 'uniform', twins: bool = False, side_per: str = 'positive'):
        super().__init__(loss)
        if side_per not in SIDE_PER:
            raise ValueError(f"side_per must be 'positive' or 'negative', got {side_per!r}")
        self.num_negatives, self.strategy, self.twins = num_negatives, strategy, twins
        self.side_per = side_per

    @staticmethod
    def accepts(loss: torch.nn.Module) -> bool:
        return isinstance(loss, KGELoss)

    def default_loss(self) -> torch.nn.Module:
        return SoftplusLoss()

    def loader(self, model, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
               known=None, generator: Optional[torch.Generator] = None, **kwargs):
        r"""The model's :meth:`~torch_mmkg.nn.KGEModel.loader` with :math:`K` negatives
        (filtered against :obj:`known` if given)."""
        return model.loader(head_index, rel_type, tail_index,
                            num_negatives=self.num_negatives, strategy=self.strategy,
                            known=known, generator=generator, twins=self.twins,
                            side_per=self.side_per, **kwargs)

    def loss(self, model, batch: Sequence) -> RegimeOutput:
        head_index, rel_type, tail_index = batch[:3]
        negatives = batch[3] if len(batch) > 3 else None
        head_index, rel_type, tail_index, negatives = model._check_negatives(
            'loss', head_index, rel_type, tail_index, negatives)
        if negatives is None:
            negatives = NegativeSampler(model.num_nodes)(head_index, rel_type, tail_index)
        scored = model.score_batch(head_index, rel_type, tail_index, negatives)
        loss_fn = self.loss_for(model)
        losses = [loss_fn(pos, neg) for _, pos, neg in scored.views if pos.numel()]
        return RegimeOutput(_total(losses, scored.terms, scored.views[0][1]), scored.terms,
                            scored.context)


class OneToN(TrainingRegime):
    r"""1-N scoring ("KvsAll"): every query of the training triples, both sides (tails
    :math:`(h, r, ?)`, and heads as :math:`(t, r + R, ?)`: the inverse relation of a model
    with inverse relations, else :math:`(?, r, t)` scored by
    :meth:`~torch_mmkg.nn.KGEModel.score_heads`) against all entities, by
    :meth:`~torch_mmkg.nn.KGEModel.score_queries`, with binary cross-entropy
    (label smoothing) or softmax cross-entropy, summed over the scorers of an ensemble, plus
    the model's terms.

    Args:
        loss (torch.nn.Module, optional): :class:`~torch_mmkg.nn.loss.BCELoss` or
            :class:`~torch_mmkg.nn.loss.SoftmaxCrossEntropyLoss`. (default: the model's own,
            else :obj:`BCELoss(0.0)`)
    """
    name = '1-n'

    @staticmethod
    def accepts(loss: torch.nn.Module) -> bool:
        return isinstance(loss, ONE_TO_N_LOSSES) or getattr(loss, 'one_to_n', False)

    def default_loss(self) -> torch.nn.Module:
        return BCELoss(0.0)

    def loader(self, model, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
               known=None, generator: Optional[torch.Generator] = None, **kwargs):
        r"""The model's :meth:`~torch_mmkg.nn.KGEModel.loader_1n` (:obj:`known` unused: the
        targets are the training triples)."""
        return model.loader_1n(head_index, rel_type, tail_index, generator=generator,
                               **kwargs)

    def loss(self, model, batch: Sequence) -> RegimeOutput:
        entity_index, rel_type, target = batch
        entity_index, rel_type = model._check(
            'loss_1n', model._entity_ids('entity_index', entity_index),
            model._query_relation_ids('rel_type', rel_type))
        if target.shape != (entity_index.numel(), model.num_nodes):
            raise ValueError(f"targets must be [{entity_index.numel()}, {model.num_nodes}], "
                             f"got {tuple(target.shape)}")
        scored = model.score_queries(entity_index, rel_type)
        loss_fn = self.loss_for(model)
        losses = [loss_fn(logits, target if rows is None else target[rows], weight)
                  for rows, logits, weight in scored.views if logits.size(0)]
        return RegimeOutput(_total(losses, scored.terms, scored.views[0][1]), scored.terms,
                            scored.context)


#: The training regimes by name (case-insensitive).
REGIMES = Registry('regime')
REGIMES.register('negative_sampling', NegativeSampling, aliases=('ns', 'negatives'))
REGIMES.register('1-n', OneToN, aliases=('one_to_n', 'kvsall'))
