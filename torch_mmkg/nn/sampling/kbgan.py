from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_mmkg.loader import NegativeSampler, Negatives
from torch_mmkg.nn.loss import MarginRankingLoss
from torch_mmkg.nn.regimes import NegativeSampling, RegimeOutput
from torch_mmkg.nn.validation import choice, positive_int, real
from ._common import build_model, model_device_dtype, single_view

__all__ = ['KBGAN', 'KBGAN_BASELINES']

#: The REINFORCE baselines of :class:`KBGAN`.
KBGAN_BASELINES = ('epoch', 'running', 'none')


class KBGAN(NegativeSampling):
    r"""The adversarial negative sampling from the `"KBGAN: Adversarial Learning for Knowledge
    Graph Embeddings" <https://arxiv.org/abs/1711.04071>`_ paper, as a training regime of any
    model (the *discriminator* :math:`D`, the model being trained) with any
    :mod:`torch_mmkg` model as the *generator* :math:`G` (DistMult by default).

    For each positive :math:`(h, r, t)`, :math:`C` candidates :math:`e_1, \ldots, e_C` corrupt
    one side (uniform or Bernoulli, as the sampler of the run draws it; :math:`C = 20`). The
    generator's scores :math:`f_G` define a softmax policy over them,

    .. math::
        p_G(e_c \mid h, r, t) = \frac{\exp(f_G(h, r, e_c) / T)}{\sum_{c'}
        \exp(f_G(h, r, e_{c'}) / T)},

    from which :math:`n` negatives are drawn (with replacement; :math:`n = 1` in the paper,
    :obj:`num_negatives` of the run). The discriminator takes a step of its loss (a margin
    loss :math:`\max(0, \gamma - f_D(h, r, t) + f_D(h', r, t'))` in the paper) against
    them. The generator is rewarded by the discriminator's score of its negative,
    :math:`R = f_D(h', r, t')` (:math:`-d` for a distance model, the paper's
    :math:`-f_D` of a distance), minus a baseline :math:`b`, and trained by REINFORCE,

    .. math::
        \nabla_G J = \sum_{(h, r, t)} \big(R - b\big)\, \nabla_G \log p_G(h', r, t').

    Both updates take one backward pass and one optimiser step: the regime adds the surrogate
    :math:`-\sum (R - b)(\log p_G - \mathrm{sg}(\log p_G))` to the discriminator's loss, a
    term whose value is zero (the loss reported is the discriminator's) and whose gradient
    is the REINFORCE gradient, reaching the generator only (the reward is detached, and the
    discriminator does not read :math:`p_G`). The generator's parameters are a group of
    their own in the optimiser (:obj:`generator_lr`, :obj:`generator_weight_decay`).

    Where the sources leave a choice, a switch picks one:

    * :obj:`baseline`: :obj:`"epoch"`, the authors' code (``gan_train.py``): the mean reward
      of the previous epoch (0 in the first); :obj:`"running"`: the mean of every reward so
      far, updated after each batch; :obj:`"none"`: :math:`b = 0`. The statistics update
      when the loss is computed with gradients (training), are part of the regime's state
      dict and so of the checkpoints.
    * :obj:`generator_reduction`: :obj:`"sum"` over the batch, as the code sums its REINFORCE
      loss (with Adam, the scale matters against the generator's weight decay only); or
      :obj:`"mean"`.

    Not reproduced from the code: its candidates may contain the positive's own entity (here
    never, as :class:`~torch_mmkg.loader.NegativeSampler` draws) and are drawn once per
    epoch (here per batch); it renormalises TransE's embeddings into the unit ball after
    each step.

    *Pretraining*: the paper pretrains :math:`G` and :math:`D` separately (1,000 epochs each,
    under negative sampling) before adversarial training. Train each alone with the
    command line (e.g. ``--model distmult --out runs/g`` and ``--model transe --out
    runs/d``) and pass their :obj:`best_model.pt` as :obj:`generator_checkpoint` and
    :obj:`discriminator_checkpoint` (loaded once, in :meth:`bind`), or load the
    discriminator's into the model yourself before building the
    :class:`~torch_mmkg.training.Trainer`.

    Args:
        loss (KGELoss, optional): The discriminator's loss. (default: :obj:`margin` if given,
            else the model's own, else :class:`~torch_mmkg.nn.loss.MarginRankingLoss`)
        num_negatives (int, optional): Negatives :math:`n` drawn from :math:`p_G` per
            positive. (default: :obj:`1`)
        strategy (str, optional): How the candidates' side is drawn, :obj:`"uniform"` or
            :obj:`"bernoulli"` (the paper's). (default: :obj:`"uniform"`)
        twins (bool, optional): Not supported. (default: :obj:`False`)
        side_per (str, optional): The candidates' side drawn per :obj:`"positive"` (the
            paper's) or per :obj:`"negative"`. (default: :obj:`"positive"`)
        generator (str or KGEModel, optional): The generator: a registered model name
            (built in :meth:`bind` for the model's entities and relations, from the graph
            for a multi-modal one) or a model. (default: :obj:`"distmult"`)
        generator_args (dict, optional): Constructor keywords of a generator given by name,
            :obj:`hidden_channels` included (default: the model's). (default: :obj:`None`)
        num_candidates (int, optional): :math:`C`. (default: :obj:`20`)
        temperature (float, optional): :math:`T > 0`. (default: :obj:`1.0`)
        baseline (str, optional): :obj:`"epoch"`, :obj:`"running"` or :obj:`"none"`.
            (default: :obj:`"epoch"`)
        generator_reduction (str, optional): :obj:`"sum"` or :obj:`"mean"`.
            (default: :obj:`"sum"`)
        generator_lr (float, optional): The generator's learning rate (:obj:`None`: the
            run's). (default: :obj:`None`)
        generator_weight_decay (float, optional): The generator's weight decay (the code's
            DistMult and ComplEx use :math:`\lambda / n_{batch} = 0.01`).
            (default: :obj:`0.0`)
        margin (float, optional): A margin loss with this :math:`\gamma` (the paper's 3)
            when :obj:`loss` is not given. (default: :obj:`None`)
        generator_checkpoint (str, optional): A state dict (e.g. a run's
            :obj:`best_model.pt`) loaded into the generator. (default: :obj:`None`)
        discriminator_checkpoint (str, optional): A state dict loaded into the model in
            :meth:`bind`. (default: :obj:`None`)

    Shapes:
        - **batch:** :obj:`(head, rel, tail, candidates)`, :math:`[B]` and
          :class:`~torch_mmkg.loader.Negatives` of :math:`[B, C]`
        - **output:** :class:`~torch_mmkg.nn.regimes.RegimeOutput`; its :obj:`context` also
          holds :obj:`"reward"` (:math:`[B, n]`), the :obj:`"baseline"` it was compared
          with, the drawn :obj:`"negatives"` and their positions :obj:`"choice"` among the
          candidates
    """
    name = 'kbgan'

    def __init__(self, loss: Optional[torch.nn.Module] = None, num_negatives: int = 1,
                 strategy: str = 'uniform', twins: bool = False, side_per: str = 'positive',
                 generator: Union[str, torch.nn.Module] = 'distmult',
                 generator_args: Optional[Mapping[str, Any]] = None,
                 num_candidates: int = 20, temperature: float = 1.0,
                 baseline: str = 'epoch', generator_reduction: str = 'sum',
                 generator_lr: Optional[float] = None, generator_weight_decay: float = 0.0,
                 margin: Optional[float] = None, generator_checkpoint: Optional[str] = None,
                 discriminator_checkpoint: Optional[str] = None):
        if loss is None and margin is not None:
            loss = MarginRankingLoss(real(self, 'margin', margin))
        super().__init__(loss, num_negatives, strategy, twins, side_per)
        if twins:
            raise ValueError("KBGAN: twins negatives are not supported (the generator picks "
                             "the negatives)")
        self.num_negatives = positive_int(self, 'num_negatives', num_negatives)
        self.num_candidates = positive_int(self, 'num_candidates', num_candidates)
        if self.num_candidates < 2:
            raise ValueError(f"KBGAN: num_candidates must be >= 2 (the generator chooses among "
                             f"them), got {num_candidates}")
        self.temperature = real(self, 'temperature', temperature, 0.0, low_open=True)
        self.baseline = choice(self, 'baseline', baseline, KBGAN_BASELINES)
        self.generator_reduction = choice(self, 'generator_reduction', generator_reduction,
                                          ('sum', 'mean'))
        self.generator_lr = (None if generator_lr is None else
                             real(self, 'generator_lr', generator_lr, 0.0, low_open=True))
        self.generator_weight_decay = real(self, 'generator_weight_decay',
                                           generator_weight_decay, 0.0)
        if not isinstance(generator, (str, torch.nn.Module)):
            raise ValueError(f"KBGAN: generator must be a registered model name or a model, "
                             f"got {type(generator).__name__}")
        if isinstance(generator, str):
            from torch_mmkg.nn import MODELS
            self._generator_name = MODELS.canonical(generator)  # unknown: a clear error
            self.generator = None
        else:
            self._generator_name = None
            self.generator = generator
        self.generator_args = dict(generator_args or {})
        self.generator_checkpoint = generator_checkpoint
        self.discriminator_checkpoint = discriminator_checkpoint
        # The baseline and its statistics (of the current epoch for "epoch", of the whole run
        # for "running"), as persistent buffers: a checkpoint resumes them exactly.
        self.register_buffer('baseline_value', torch.zeros((), dtype=torch.float64))
        self.register_buffer('reward_sum', torch.zeros((), dtype=torch.float64))
        self.register_buffer('reward_count', torch.zeros((), dtype=torch.float64))
        self._rng: Optional[torch.Generator] = None
        self._bound = False

    # Trainable parts ##########################################################################

    def bind(self, model, data=None) -> 'KBGAN':
        r"""Builds the generator for :obj:`model`'s entities and relations (on its device and
        dtype) and loads the pretrained states, once."""
        if self._bound:
            return self
        from torch_mmkg.data.serialization import safe_load
        device, dtype = model_device_dtype(model)
        if self.discriminator_checkpoint is not None:
            model.load_state_dict(safe_load(self.discriminator_checkpoint,
                                            'discriminator checkpoint', map_location=device))
        if self.generator is None:
            args = dict(self.generator_args)
            hidden = args.pop('hidden_channels', model.hidden_channels)
            self.generator = build_model(self._generator_name, model.num_nodes,
                                         model.num_relations, hidden, args, data)
        G = self.generator
        if (getattr(G, 'num_nodes', None) != model.num_nodes
                or getattr(G, 'num_relations', None) != model.num_relations):
            raise ValueError(f"KBGAN: the generator has {getattr(G, 'num_nodes', None)} "
                             f"entities and {getattr(G, 'num_relations', None)} relations, "
                             f"the model {model.num_nodes} and {model.num_relations}")
        if self.generator_checkpoint is not None:
            G.load_state_dict(safe_load(self.generator_checkpoint, 'generator checkpoint',
                                        map_location=device))
        G.to(device=device, dtype=dtype)
        self.to(device)  # the buffers
        self._bound = True
        return self

    def param_groups(self) -> List[Dict[str, Any]]:
        if self.generator is None:
            return []
        group = {'params': [p for p in self.generator.parameters() if p.requires_grad],
                 'weight_decay': self.generator_weight_decay}
        if self.generator_lr is not None:
            group['lr'] = self.generator_lr
        return [group]

    def start_epoch(self, epoch: int, num_epochs: Optional[int] = None):
        r"""With :obj:`baseline="epoch"`, the baseline becomes the mean reward of the epoch
        that ended (if it drew any)."""
        if self.baseline == 'epoch' and float(self.reward_count) > 0:
            self.baseline_value.copy_(self.reward_sum / self.reward_count)
            self.reward_sum.zero_()
            self.reward_count.zero_()

    # Batches ##################################################################################

    def loader(self, model, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
               known=None, generator: Optional[torch.Generator] = None, **kwargs):
        r"""The model's loader with :math:`C` candidates per positive (filtered against
        :obj:`known` if given); the regime draws from :obj:`generator` too."""
        self.bind(model)
        self._rng = generator
        return model.loader(head_index, rel_type, tail_index,
                            num_negatives=self.num_candidates, strategy=self.strategy,
                            known=known, generator=generator, side_per=self.side_per,
                            **kwargs)

    def policy(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
               candidates: Negatives) -> Tensor:
        r"""The generator's log-probabilities :math:`\log p_G` :math:`[B, C]` of the
        candidates."""
        _, scores = self.generator.score_negatives(head_index, rel_type, tail_index,
                                                   candidates)
        return F.log_softmax(scores / self.temperature, dim=-1)

    def _update_baseline(self, reward: Tensor):
        if self.baseline == 'none':
            return
        self.reward_sum += reward.detach().double().sum()
        self.reward_count += reward.numel()
        if self.baseline == 'running':
            self.baseline_value.copy_(self.reward_sum / self.reward_count)

    def loss(self, model, batch: Sequence) -> RegimeOutput:
        head_index, rel_type, tail_index = batch[:3]
        candidates = batch[3] if len(batch) > 3 else None
        head_index, rel_type, tail_index, candidates = model._check_negatives(
            'loss', head_index, rel_type, tail_index, candidates)
        self.bind(model)
        if candidates is None:
            candidates = NegativeSampler(model.num_nodes, self.num_candidates,
                                         generator=self._rng)(head_index, rel_type, tail_index)
        if candidates.index.size(1) < 2:
            raise ValueError(f"KBGAN: the generator chooses among C >= 2 candidates per "
                             f"positive, got {candidates.index.size(1)}")
        log_p = self.policy(head_index, rel_type, tail_index, candidates)
        with torch.no_grad():
            choice_ = torch.multinomial(log_p.exp(), self.num_negatives, replacement=True,
                                        generator=self._rng)  # [B, n]
        side = candidates.corrupt_head
        if side.dim() == 2:
            side = side.gather(1, choice_)
        negatives = Negatives(candidates.index.gather(1, choice_), side)
        scored = model.score_batch(head_index, rel_type, tail_index, negatives)
        pos, neg = single_view('KBGAN', model, scored)
        loss = self.loss_for(model)(pos, neg)
        for term in scored.terms.values():
            loss = loss + term
        reward = neg.detach()
        baseline = self.baseline_value.clone()
        advantage = reward - baseline.to(reward.dtype)
        chosen = log_p.gather(1, choice_)
        surrogate = -(advantage * (chosen - chosen.detach()))
        surrogate = surrogate.sum() if self.generator_reduction == 'sum' else surrogate.mean()
        if torch.is_grad_enabled():
            self._update_baseline(reward)
        context = dict(scored.context, reward=reward, baseline=baseline,
                       negatives=negatives, choice=choice_)
        return RegimeOutput(loss + surrogate, scored.terms, context)

    def __repr__(self) -> str:
        G = self._generator_name or type(self.generator).__name__
        return (f'{type(self).__name__}(generator={G}, num_candidates={self.num_candidates}, '
                f'num_negatives={self.num_negatives}, baseline={self.baseline!r}, '
                f'loss={self.loss_fn!r})')
