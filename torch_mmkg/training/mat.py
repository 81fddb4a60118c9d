from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_mmkg.nn.validation import choice, real

from .adversarial import ModalityAdversary

__all__ = ['MAT']

#: How the critic weighs the synthetic triples of a batch (see :class:`MAT`).
SYNTHETIC_WEIGHTINGS = ('batch', 'uniform')


class MAT(ModalityAdversary):
    r"""Modality-adversarial training from the `"Unleashing the Power of Imbalanced Modality
    Information for Multi-modal Knowledge Graph Completion"
    <https://arxiv.org/abs/2402.15444>`_ paper (AdaMF-MAT), as a training add-on that wraps
    any model exposing its per-modality representations (the sibling of
    :class:`~torch_mmkg.training.CoMAT`).

    One generator per modality :math:`m` maps noise and the entity's structural embedding
    to a synthetic representation of that modality,

    .. math::
        \mathbf{e}^*_m = G_m(\mathbf{z}_m \,\|\, \mathbf{e}_s) = \mathbf{W}_{m,2}\,
        \mathrm{LeakyReLU}(\mathbf{W}_{m,1} [\mathbf{z}_m \,\|\, \mathbf{e}_s] +
        \mathbf{b}_{m,1}) + \mathbf{b}_{m,2}, \qquad \mathbf{z}_m \sim \mathcal{N}(0, I),

    and the synthetic entity :math:`e^* = (\mathbf{e}_s, \mathbf{e}^*_1, \ldots,
    \mathbf{e}^*_M)` is fused and scored by the model like a real one. With the synthetic
    set :math:`\mathcal{S} = \{(h^*, r, t), (h, r, t^*), (h^*, r, t^*)\}` of scores
    :math:`s_H, s_T, s_{HT}` and the real scores :math:`s^+`, per batch the model (the
    discriminator) takes one step on

    .. math::
        \mathcal{L}_D = \mathcal{L}_{kge} + \mu \sum_{j \in \{H, T, HT\}}
        \ell(s^+, s_j), \qquad
        \ell(s^+, s_j) = -\frac{1}{2}\Big(\overline{\log\sigma(s^+)} +
        \sum_b w_b \log\sigma(-s_{j,b})\Big), \quad
        w = \mathrm{softmax}_b(\alpha\, s_{j,b}),

    the self-adversarial sigmoid loss with the synthetic triples as negatives (:math:`w`
    constant), then the generators take one step on

    .. math::
        \mathcal{L}_G = \sum_{j \in \{H, T, HT\}} -\frac{1}{2}\Big(
        \overline{\log\sigma(s_j)} + \overline{\log\sigma(-s^+)}\Big),

    the same loss with the roles swapped (the synthetic triples as positives, the real ones
    as negatives; the second term does not depend on the generators). Bars are batch means.

    Where the paper is silent the defaults follow the authors' code (``AdvMixTrainer``,
    ``MultiGenerator``, ``SigmoidLoss``):

    * :obj:`synthetic_weighting="batch"`: the code passes the :math:`B` synthetic scores of
      a batch as one row of negatives, so the self-adversarial softmax :math:`w` runs over
      the batch (it weighs the hardest synthetic triples most); :obj:`"uniform"` treats
      each synthetic triple as the single negative of its positive (:math:`w_b = 1/B`, the
      plain sigmoid loss). In :math:`\mathcal{L}_G` the code's weights are 1 (a softmax
      over one real score per row), whichever is chosen.
    * :obj:`critic_through_generator=True`: the critic step generates from the structural
      embeddings without detaching them, so :math:`\mu \sum_j \ell` also reaches
      :math:`\mathbf{e}_s` through the generators' input (the generators never move in that
      step).
    * the model's own :math:`\alpha` (its :class:`~torch_mmkg.nn.SelfAdversarialLoss`
      temperature; 2 for models without one), :math:`\mathbf{z} \in \mathbb{R}^{64}`,
      hidden width 512, LeakyReLU slope 0.01 (PyTorch's default), the generators'
      learning rate 1e-4 (:obj:`args.py`).

    The authors' published scripts run with :math:`\mu = 0`: the model's parameters then
    evolve exactly as without MAT (the adversarial term is computed for the log only and
    never enters :math:`\mathcal{L}_D`), while the generators still train; the rows of the
    comparison tables labelled AdaMF-MAT are therefore AdaMF. Pass
    :obj:`adversarial_weight=0.0` for the scripts, the default :math:`10^{-4}` for MAT
    switched on.

    The generators read only the structural embedding, so missing modalities never reach
    them; the real triples are scored with the model's masks, or as if every modality were
    present where the model was built with :obj:`mask_missing=False`.

    Args:
        model (torch.nn.Module): The model to train (e.g. :class:`~torch_mmkg.nn.AdaMF`;
            any model with ``modality_stack`` and ``score_stacks``).
        noise_channels (int, optional): Width of :math:`\mathbf{z}_m`. (default: :obj:`64`)
        hidden_channels (int, optional): The generators' hidden width.
            (default: :obj:`512`)
        adversarial_weight (float, optional): :math:`\mu \geq 0`. (default: :obj:`1e-4`)
        adversarial_temperature (float, optional): :math:`\alpha \geq 0` (:obj:`None`: the
            model's loss temperature, else :obj:`2.0`). (default: :obj:`None`)
        synthetic_weighting (str, optional): :obj:`"batch"` or :obj:`"uniform"` (see
            above). (default: :obj:`"batch"`)
        generator_lr (float, optional): The generators' learning rate (:obj:`None`: the
            trainer's). (default: :obj:`1e-4`)
        negative_slope (float, optional): Of the generators' LeakyReLU.
            (default: :obj:`0.01`)
        critic_through_generator (bool, optional): Let the critic's loss reach the
            structural embeddings through the generators' input. (default: :obj:`True`)
        mask_missing (bool, optional): Treat the rows the model marks missing as missing
            (:obj:`None`: the model's :obj:`mask_missing`). (default: :obj:`None`)

    Shapes:
        - :meth:`generate`: stack :math:`[*, S, D]`, mask :math:`[*, S]`, noise
          :math:`[*, S - 1, Z]` :math:`\to` stack :math:`[*, S, D]`, mask :math:`[*, S]`
        - :meth:`discriminator_loss`, :meth:`generator_loss`: scores :math:`[B]`
          :math:`\to` a scalar
    """
    def __init__(self, model: torch.nn.Module, noise_channels: int = 64,
                 hidden_channels: int = 512, adversarial_weight: float = 1e-4,
                 adversarial_temperature: Optional[float] = None,
                 synthetic_weighting: str = 'batch', generator_lr: Optional[float] = 1e-4,
                 negative_slope: float = 0.01, critic_through_generator: bool = True,
                 mask_missing: Optional[bool] = None):
        super().__init__(model, noise_channels, mask_missing)
        self.adversarial_weight = real(self, 'adversarial_weight', adversarial_weight, 0.0)
        if adversarial_temperature is None:
            adversarial_temperature = getattr(getattr(model, 'loss_fn', None), 'temperature',
                                              2.0)
        self.adversarial_temperature = real(self, 'adversarial_temperature',
                                            adversarial_temperature, 0.0)
        self.synthetic_weighting = choice(self, 'synthetic_weighting', synthetic_weighting,
                                          SYNTHETIC_WEIGHTINGS)
        hidden = self._generator_options(generator_lr, negative_slope, critic_through_generator,
                                         hidden_channels)
        # one generator per modality slot, in slot order
        self.generator = torch.nn.ModuleList([self._mlp_generator(hidden)
                                              for _ in range(self.num_slots - 1)])
        self.to(next(model.parameters()).device)

    # Pieces ###################################################################################

    def generate(self, stack: Tensor, mask: Tensor, noise: Optional[Tensor] = None,
                 detach_input: bool = True) -> Tuple[Tensor, Tensor]:
        r"""A synthetic entity per row: the real structural slot (as given, it belongs to
        the critic) and one generated slot per modality, all present, from
        :math:`[\mathbf{z}_m \| \mathbf{e}_s]` (:obj:`noise` :math:`[*, S - 1, Z]`, drawn
        unless given; :math:`\mathbf{e}_s` detached from the critic if
        :obj:`detach_input`)."""
        e_s = stack[..., 0, :]
        if detach_input:
            e_s = e_s.detach()
        if noise is None:
            noise = self.noise(e_s, self.num_slots - 1, self.noise_channels)
        fake = [g(torch.cat([noise[..., m, :], e_s], dim=-1))
                for m, g in enumerate(self.generator)]
        return torch.cat([stack[..., :1, :], torch.stack(fake, dim=-2)], dim=-2), \
            torch.ones_like(mask)

    def discriminator_loss(self, real_score: Tensor, fake_score: Tensor) -> Tensor:
        r""":math:`\ell(s^+, s_j)`: the self-adversarial sigmoid loss with the synthetic
        scores as the negatives (weighted over the batch, or uniformly)."""
        fake = fake_score.reshape(-1)
        if self.synthetic_weighting == 'batch':
            w = torch.softmax(self.adversarial_temperature * fake.detach(), dim=0)
        else:
            w = torch.full_like(fake, 1.0 / fake.numel())
        return -0.5 * (F.logsigmoid(real_score).mean() + (w * F.logsigmoid(-fake)).sum())

    def generator_loss(self, fake_score: Tensor, real_score: Tensor) -> Tensor:
        r"""One term of :math:`\mathcal{L}_G`: the sigmoid loss with the synthetic scores as
        positives and the real ones as negatives."""
        return -0.5 * (F.logsigmoid(fake_score).mean() + F.logsigmoid(-real_score).mean())

    # The step (ModalityAdversary.train_step) ################################################

    def critic_terms(self, real: Sequence[Tensor], rel_type: Tensor
                     ) -> Tuple[Optional[Tensor], Dict[str, Tensor]]:
        r""":math:`\mu \sum_j \ell(s^+, s_j)` (:obj:`None` for :math:`\mu = 0`: the term is
        then computed without gradient, for the log) and the term :obj:`"adv"`,
        :math:`\sum_j \ell(s^+, s_j)`."""
        hs, hm, ts, tm = real
        through = self.critic_through_generator and self.adversarial_weight > 0
        with torch.enable_grad() if self.adversarial_weight > 0 else torch.no_grad():
            # the critic's backward is taken for its own parameters only: the generators'
            # outputs need no detaching
            fake = (*self.generate(hs, hm, detach_input=not through),
                    *self.generate(ts, tm, detach_input=not through))
            real_score = self.critic(hs, hm, rel_type, ts, tm)
            adv = sum(self.discriminator_loss(real_score, s)
                      for s in self.synthetic_scores(real, fake, rel_type))
        return self._weighted(adv)

    def generator_step(self, real: Sequence[Tensor], rel_type: Tensor,
                       optimizer: torch.optim.Optimizer,
                       grad_clip: Optional[float] = None) -> Tensor:
        r""":math:`\mathcal{L}_G` after one step of the generators (on fresh noise; the
        real scores :math:`s^+` recomputed with the stepped model)."""
        hs, hm, ts, tm = real
        with torch.no_grad():
            real_score = self.critic(hs, hm, rel_type, ts, tm)
        fake = (*self.generate(hs, hm), *self.generate(ts, tm))
        loss_g = sum(self.generator_loss(s, real_score)
                     for s in self.synthetic_scores(real, fake, rel_type))
        self._step_generator(loss_g, optimizer, grad_clip)
        return loss_g

    def extra_repr(self) -> str:
        return (f'slots={self.num_slots}, channels={self.channels}, '
                f'adversarial_weight={self.adversarial_weight}, '
                f'adversarial_temperature={self.adversarial_temperature}, '
                f'synthetic_weighting={self.synthetic_weighting!r}, '
                f'critic_through_generator={self.critic_through_generator}, '
                f'mask_missing={self.mask_missing}')
