r"""What the adversarial trainings (:class:`~torch_mmkg.training.CoMAT`,
:class:`~torch_mmkg.training.MAT`, :class:`~torch_mmkg.training.MMKRLAdversary`) share: the
wrapped model's interface, the synthetic triples, and one critic step then one generator step
per batch."""
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.validation import choice, real

__all__ = ['ModalityAdversary']


class ModalityAdversary(torch.nn.Module):
    r"""The base of the training add-ons that synthesise modality representations with a
    generator and let the KGE model, the critic (discriminator), tell the real triples
    from the synthetic ones. A synthetic entity :math:`e^*` keeps the real structural
    embedding (slot 0) and replaces every modality slot by a generated one (all present);
    the synthetic set of a real triple is :math:`\mathcal{S}(h, r, t) = \{(h^*, r, t),
    (h, r, t^*), (h^*, r, t^*)\}`, scored through the model's fusion and score function.
    Per batch :meth:`train_step` takes one critic step, on
    :math:`\mathcal{L}_{kgc}` plus the subclass's :meth:`critic_terms`, then one generator
    step on its :meth:`generator_step`; the critic never moves in the generator step and
    the generator never in the critic step.

    The wrapped model must provide ``modality_stack(index) -> (stack [*, S, D], mask [*,
    S])`` (slot 0 the structural embedding) and ``score_stacks(head_stack, head_mask,
    rel_type, tail_stack, tail_mask) -> [*]`` (every :class:`~torch_mmkg.nn.KGEModel`
    does) and be trained by negative sampling. It is not a submodule: the trainer owns its
    parameters; this module holds the generator (:attr:`generator`) and any critic
    parameters of its own.

    Args:
        model (torch.nn.Module): The model to train.
        noise_channels (int): Width of the noise :math:`\mathbf{z}`.
        mask_missing (bool, optional): Treat the rows the model marks missing as missing
            (:obj:`None`: the model's :obj:`mask_missing`, :obj:`True` if it has none).
    """
    def __init__(self, model: torch.nn.Module, noise_channels: int,
                 mask_missing: Optional[bool] = None):
        super().__init__()
        name = type(self).__name__
        missing = [a for a in ('modality_stack', 'score_stacks') if not hasattr(model, a)]
        if missing:
            raise TypeError(f"{name} needs a model exposing its per-modality representations; "
                            f"{model.__class__.__name__} lacks {missing}")
        noise_channels = int(noise_channels)
        if noise_channels < 1:
            raise ValueError(f"{name}: noise_channels must be >= 1, got {noise_channels}")
        self.model = [model]  # not a submodule: the trainer owns the model's parameters
        with torch.no_grad():
            stack, _ = model.modality_stack(self._probe_index())
        self.num_slots, self.channels = stack.size(-2), stack.size(-1)
        if self.num_slots < 2:
            raise ValueError(f"{name} needs at least one modality besides the structure")
        self.noise_channels = noise_channels
        self.mask_missing = bool(getattr(model, 'mask_missing', True)
                                 if mask_missing is None else mask_missing)

    def _probe_index(self) -> Tensor:
        device = next(self.wrapped.parameters()).device
        return torch.zeros(1, dtype=torch.long, device=device)

    @property
    def wrapped(self) -> torch.nn.Module:
        return self.model[0]

    def generator_parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.generator.parameters()

    def critic_parameters(self) -> Iterator[torch.nn.Parameter]:
        r"""The discriminator's parameters beyond the model's own (none here)."""
        return iter(())

    def _generator_options(self, generator_lr: Optional[float], negative_slope: float,
                           critic_through_generator: bool, hidden_channels: int) -> int:
        r"""Checks and stores the options the generators of :class:`MAT` and
        :class:`MMKRLAdversary` share; returns the hidden width."""
        self.generator_lr = (None if generator_lr is None else
                             real(self, 'generator_lr', generator_lr, 0.0, low_open=True))
        self.negative_slope = real(self, 'negative_slope', negative_slope, 0.0)
        self.critic_through_generator = choice(self, 'critic_through_generator',
                                               critic_through_generator, (True, False))
        hidden = int(hidden_channels)
        if hidden < 1:
            raise ValueError(f"{type(self).__name__}: hidden_channels must be >= 1, got "
                             f"{hidden_channels}")
        return hidden

    def _mlp_generator(self, hidden: int) -> torch.nn.Module:
        r"""The two-layer generator of the authors' code, :math:`[\mathbf{z} \| \mathbf{e}_s]
        \mapsto \mathbf{W}_2\, \mathrm{LeakyReLU}(\mathbf{W}_1 [\mathbf{z} \|
        \mathbf{e}_s] + \mathbf{b}_1) + \mathbf{b}_2` (:math:`Z + D \to` :obj:`hidden`
        :math:`\to D`)."""
        Z, D = self.noise_channels, self.channels
        return torch.nn.Sequential(torch.nn.Linear(Z + D, hidden),
                                   torch.nn.LeakyReLU(self.negative_slope),
                                   torch.nn.Linear(hidden, D))

    def _weighted(self, adv: Tensor) -> Tuple[Optional[Tensor], Dict[str, Tensor]]:
        r""":math:`\mu` times the critic's adversarial term :obj:`adv` (:obj:`None` for
        :math:`\mu = 0`: it then enters the log only) and the term :obj:`"adv"`."""
        if self.adversarial_weight == 0:
            return None, {'adv': adv}
        return self.adversarial_weight * adv, {'adv': adv}

    # Pieces ###################################################################################

    def present(self, mask: Tensor) -> Tensor:
        r"""The availability the add-on goes by: :obj:`mask`, or all present where missing
        rows are not treated as missing (:obj:`mask_missing=False`)."""
        return mask if self.mask_missing else torch.ones_like(mask)

    def real_stacks(self, head_index: Tensor, tail_index: Tensor
                    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""The real :obj:`(head stack, head mask, tail stack, tail mask)`, the masks as
        :meth:`present` sees them."""
        model = self.wrapped
        hs, hm = model.modality_stack(head_index)
        ts, tm = model.modality_stack(tail_index)
        return hs, self.present(hm), ts, self.present(tm)

    def noise(self, like: Tensor, *shape: int) -> Tensor:
        r"""Standard normal noise of shape :obj:`[*like.shape[:-1], *shape]`, on the device
        and in the dtype of :obj:`like` (drawn from the global generator, as the authors')."""
        return torch.randn(*like.shape[:-1], *shape, device=like.device, dtype=like.dtype)

    def critic(self, head_stack: Tensor, head_mask: Tensor, rel_type: Tensor,
               tail_stack: Tensor, tail_mask: Tensor) -> Tensor:
        r"""The discriminator's score of triples given as stacks: the model's own."""
        return self.wrapped.score_stacks(head_stack, head_mask, rel_type, tail_stack,
                                         tail_mask)

    def synthetic_scores(self, real: Sequence[Tensor], fake: Sequence[Tensor],
                         rel_type: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The critic's scores of :math:`(h^*, r, t)`, :math:`(h, r, t^*)` and
        :math:`(h^*, r, t^*)` from the real and synthetic (stack, mask) of heads and tails
        (:obj:`real = (hs, hm, ts, tm)`, likewise :obj:`fake`)."""
        hs, hm, ts, tm = real
        fhs, fhm, fts, ftm = fake
        return (self.critic(fhs, fhm, rel_type, ts, tm), self.critic(hs, hm, rel_type, fts, ftm),
                self.critic(fhs, fhm, rel_type, fts, ftm))

    def _step_generator(self, loss: Tensor, optimizer: torch.optim.Optimizer,
                        grad_clip: Optional[float]):
        r"""Steps the generator on :obj:`loss`, gradients for the generator only."""
        params = list(self.generator_parameters())
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads):
            p.grad = g
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()

    # To implement #############################################################################

    def critic_terms(self, real: Sequence[Tensor], rel_type: Tensor
                     ) -> Tuple[Optional[Tensor], Dict[str, Tensor]]:
        r"""What the critic adds to :math:`\mathcal{L}_{kgc}` (:obj:`None` for nothing)
        and the terms to report, from the real stacks of the positives (with gradient)."""
        raise NotImplementedError

    def generator_step(self, real: Sequence[Tensor], rel_type: Tensor,
                       optimizer: torch.optim.Optimizer,
                       grad_clip: Optional[float] = None) -> Tensor:
        r"""The generator's loss on the (detached) real stacks, after stepping it."""
        raise NotImplementedError

    # The step #################################################################################

    def train_step(self, batch: Sequence, critic_optimizer: torch.optim.Optimizer,
                   generator_optimizer: torch.optim.Optimizer,
                   grad_clip: Optional[float] = None,
                   kgc_loss: Optional[Callable[[Sequence], Tensor]] = None
                   ) -> Dict[str, Tensor]:
        r"""One critic step, then one generator step, on a batch :obj:`(head, rel, tail,
        negatives)` from the model's :meth:`loader`; returns the (detached) loss terms,
        :obj:`"loss"` being the critic's total and :obj:`"generator"` the generator's.
        :obj:`kgc_loss` maps the batch to the completion loss :math:`\mathcal{L}_{kgc}`
        (default: the model's :meth:`~torch_mmkg.nn.KGEModel.loss`; the trainer passes its
        regime's)."""
        model = self.wrapped
        h, r, t, negatives = batch
        # critic (discriminator) step: the model, plus the add-on's own critic if any
        critic_optimizer.zero_grad(set_to_none=True)
        loss_kgc = (kgc_loss(batch) if kgc_loss is not None else
                    model.loss(h, r, t, negatives))
        extra, terms = self.critic_terms(self.real_stacks(h, t), r)
        loss = loss_kgc if extra is None else loss_kgc + extra
        out = {'loss': loss.detach(), 'kgc': loss_kgc.detach(),
               **{k: v.detach() for k, v in terms.items()}}
        if not torch.isfinite(loss):
            return {**out, 'generator': loss.new_full((), float('nan'))}
        params = [p for g in critic_optimizer.param_groups for p in g['params']
                  if p.requires_grad]
        loss.backward(inputs=params)  # nothing reaches the generator's parameters
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        critic_optimizer.step()

        # generator step: gradients for the generator only
        generator_optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            real = self.real_stacks(h, t)
        loss_g = self.generator_step(real, r, generator_optimizer, grad_clip)
        return {**out, 'generator': loss_g.detach()}
